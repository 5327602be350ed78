"""Sample from an export with onnxruntime, NumPy and onnx only (no TensorFlow).

    python examples/sample_onnx.py runs/mine/export/onnx/sampler.onnx
    python examples/sample_onnx.py runs/poem_quick/export/onnx/sampler.onnx --prefix 明月

The export folder is checked as untrusted input (docs/reliability.md): side
files only inside it, sizes and the manifest's digests checked, every
request's rows and lengths limited.
"""

import argparse

from tfseqgan.export.onnx_sample import OnnxSampler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the export's onnx/sampler.onnx")
    parser.add_argument("--prefix", default="", help="text to continue")
    args = parser.parse_args()

    sampler = OnnxSampler(args.model)
    for temperature in (0.7, 1.0):
        for line in sampler.sample(3, temperature=temperature, seed=0)["text"]:
            print(f"T={temperature}: {line}")
    if args.prefix:
        ids = sampler.encode(args.prefix)
        completed = sampler.complete([ids] * 3, [len(ids)] * 3, temperature=0.8, seed=1)
        for line in completed["text"]:
            print("completed:", line)
    print("greedy:", sampler.greedy([[0]], [0])["text"][0])
    scores = sampler.score(sampler.sample(2, seed=3)["ids"])
    print("log p of two samples:", [round(float(total), 2) for total in scores["total"]])


if __name__ == "__main__":
    main()
