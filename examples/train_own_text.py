"""Train a text GAN on your own sentences from Python, then sample and export.

    python examples/train_own_text.py my_sentences.txt --run_dir=runs/mine
    python examples/train_own_text.py poems.txt --tokenizer=char --objective=gumbel --run_dir=runs/poems
    python examples/train_own_text.py my.txt --run_dir=runs/tiny --option mle_epochs=1 --option sequence_length=12

One sentence a line (UTF-8). A tenth is held out as the test split (BLEU
references, NLL-test). The model and schedule are the coco_quick preset's;
`--option NAME=VALUE` overrides any flag of tfseqgan-train.
"""

import argparse
import ast

import tfseqgan


def option(text):
    name, _, value = text.partition("=")
    try:
        value = ast.literal_eval(value)  # numbers, lists, True/False
    except (ValueError, SyntaxError):
        pass  # a plain string
    return name, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text_file", help="one sentence a line, UTF-8")
    parser.add_argument("--run_dir", required=True)
    parser.add_argument("--tokenizer", default="word", choices=["word", "char"])
    parser.add_argument("--objective", default="seqgan", choices=["seqgan", "gumbel", "wgan_gp"])
    parser.add_argument("--option", type=option, action="append", default=[], help="NAME=VALUE, a tfseqgan-train flag")
    args = parser.parse_args()

    with open(args.text_file, encoding="utf-8") as stream:
        lines = [line.strip() for line in stream if line.strip()]
    data = tfseqgan.TextData.from_lines(lines, test_fraction=0.1, seed=0)
    run = tfseqgan.train(
        data,
        run_dir=args.run_dir,
        preset="coco_quick",
        tokenizer=args.tokenizer,
        objective=args.objective,
        progress=False,
        **dict(args.option),
    )
    nll, bleu, self_bleu = (run.metrics[name] for name in ("nll_test", "bleu_2", "self_bleu_2"))
    print(f"NLL-test {nll:.3f}  BLEU-2 {bleu:.3f}  Self-BLEU-2 {self_bleu:.3f}")
    for line in run.sample(5, temperature=0.8, seed=0):
        print("sample:", line)
    manifest = run.export()
    print("export:", manifest["out_dir"])


if __name__ == "__main__":
    main()
