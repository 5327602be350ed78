"""Times sampling of an exported run three ways, and the export itself:

- in-memory: the restored generator's sampler (`sampler.sample_free` in a
  compiled tf.function, ids padded after the end token, as the trainer samples);
- SavedModel: its `sample` signature (ids, lengths and decoded text);
- onnxruntime: `OnnxSampler.sample` (the ONNX step driven by NumPy; ids,
  lengths and decoded text), with one decoding thread per core (the default)
  and with one thread.

Each repeat runs the three in turn (interleaved, so a busy host slows them
alike); medians of the repeats are reported as sequences per second. The
export (write + verification) is timed into a temporary folder.

    python bench/bench_export.py --run_dir=runs/synthetic_quick --out bench/results/export.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from tfseqgan import sampler  # noqa: E402
from tfseqgan.export import graph, pipeline  # noqa: E402
from tfseqgan.export.onnx_sample import OnnxSampler  # noqa: E402
from tfseqgan.export.restore import load_run  # noqa: E402


def summary(times, count):
    median = statistics.median(times)
    return {
        "median_s": round(median, 4),
        "sequences_per_s": round(count / median, 1),
        "runs_s": [round(t, 4) for t in times],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", default="runs/synthetic_quick", help="a trained run (its export is redone)")
    parser.add_argument("--num", type=int, default=10000, help="sequences per sampling call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each sampler")
    parser.add_argument("--export_repeats", type=int, default=3, help="timed exports")
    parser.add_argument("--out", default="bench/results/export.json")
    args = parser.parse_args()

    run_model = load_run(args.run_dir)
    generator, end_token = run_model.generator, run_model.end_token

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)])
    def in_memory(num_samples, seed):
        return graph.finish(sampler.sample_free(generator, num_samples, seed), end_token)

    export_times = []
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = os.path.join(scratch, "export")
        for _ in range(args.export_repeats):
            began = time.perf_counter()
            manifest = pipeline.export_run(args.run_dir, out_dir)
            export_times.append(time.perf_counter() - began)
        saved = tf.saved_model.load(os.path.join(out_dir, "saved_model")).signatures["sample"]
        onnx_model = OnnxSampler(os.path.join(out_dir, "onnx", "sampler.onnx"))
        onnx_one_thread = OnnxSampler(os.path.join(out_dir, "onnx", "sampler.onnx"), threads=1)

        samplers = {
            "in_memory": lambda seed: in_memory(tf.constant(args.num), tf.constant([seed, 0], tf.int64)).numpy(),
            "saved_model": lambda seed: saved(
                num_samples=tf.constant(args.num), temperature=tf.constant(1.0), seed=tf.constant(seed, tf.int64)
            )["text"].numpy(),
            "onnxruntime": lambda seed: onnx_model.sample(args.num, 1.0, seed)["text"],
            "onnxruntime_1_thread": lambda seed: onnx_one_thread.sample(args.num, 1.0, seed)["text"],
        }
        times = {name: [] for name in samplers}
        for sample in samplers.values():
            sample(0)  # warm-up: tracing, session start
        for repeat in range(args.repeats):
            for name, sample in samplers.items():
                began = time.perf_counter()
                sample(repeat + 1)
                times[name].append(time.perf_counter() - began)

    result = {
        "run_dir": os.path.abspath(args.run_dir),
        "checkpoint": run_model.checkpoint,
        "num_sequences": args.num,
        "vocabulary_size": run_model.vocabulary_size,
        "sequence_length": run_model.sequence_length,
        "sampling": {name: summary(values, args.num) for name, values in times.items()},
        "export": {
            "median_s": round(statistics.median(export_times), 2),
            "runs_s": [round(t, 2) for t in export_times],
            "write_s": manifest["seconds"]["write"],
            "verify_s": manifest["seconds"]["verify"],
        },
        "verification": manifest["verification"],
        "versions": manifest["versions"],
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count()},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as stream:
        json.dump(result, stream, indent=2)
        stream.write("\n")
    for name, figures in result["sampling"].items():
        print(f"{name:20s} {figures['sequences_per_s']:>10.1f} sequences/s (median {figures['median_s']:.3f} s)")
    export_s = result["export"]["median_s"]
    print(f"{'export':20s} {export_s:.1f} s (median of {args.export_repeats}); wrote {args.out}")


if __name__ == "__main__":
    main()
