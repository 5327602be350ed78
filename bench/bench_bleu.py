"""Times tfseqgan.bleu (BLEU-2..max_order, Self-BLEU) and, for comparison, NLTK on a few hypotheses.

Synthetic corpora (seeded numpy RNG, Zipf-like vocabulary of ~5000, lengths 10-24) unless --data
names a text file (one sentence per line, space-separated tokens: the first --references lines are
the references, the next --hypotheses lines the hypotheses; Self-BLEU uses the hypotheses).

    python bench/bench_bleu.py --out bench/results/bleu.json
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from tfseqgan.bleu import bleu, self_bleu  # noqa: E402


def synthetic_corpus(rng, count, vocabulary, min_len=10, max_len=24):
    """`count` sentences of Zipf-like (rank^-1.1) token ids, lengths uniform in [min_len, max_len]."""
    ranks = np.arange(1, vocabulary + 1, dtype=np.float64)
    probabilities = ranks**-1.1
    probabilities /= probabilities.sum()
    lengths = rng.integers(min_len, max_len + 1, count)
    tokens = rng.choice(vocabulary, size=int(lengths.sum()), p=probabilities).tolist()
    sentences, start = [], 0
    for length in lengths.tolist():
        sentences.append(tokens[start : start + length])
        start += length
    return sentences


def read_corpus(path, num_references, num_hypotheses):
    with open(path, encoding="utf-8") as handle:
        lines = [line.split() for line in handle if line.strip()]
    if len(lines) < num_references + num_hypotheses:
        sys.exit(f"{path} has {len(lines)} non-empty lines; need {num_references} + {num_hypotheses}")
    return lines[num_references : num_references + num_hypotheses], lines[:num_references]


def timed(function, repeats):
    runs, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        runs.append(time.perf_counter() - start)
    return result, runs


def nltk_timing(hypotheses, references, max_order):
    """Seconds per hypothesis of NLTK sentence_bleu (method1) for BLEU-2..max_order, and its mean scores."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smoothing = SmoothingFunction().method1
    scores = {n: [] for n in range(2, max_order + 1)}
    start = time.perf_counter()
    for hypothesis in hypotheses:
        for n in scores:
            scores[n].append(sentence_bleu(references, hypothesis, (1 / n,) * n, smoothing_function=smoothing))
    seconds = time.perf_counter() - start
    return seconds, {n: math.fsum(v) / len(v) for n, v in scores.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hypotheses", type=int, default=2000)
    parser.add_argument("--references", type=int, default=10000)
    parser.add_argument("--max_order", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocabulary", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="text file, one space-tokenized sentence per line")
    parser.add_argument("--nltk_hypotheses", type=int, default=100, help="0 skips the NLTK comparison")
    parser.add_argument("--out", default="bench/results/bleu.json")
    args = parser.parse_args()

    if args.data:
        hypotheses, references = read_corpus(args.data, args.references, args.hypotheses)
        source = args.data
    else:
        rng = np.random.default_rng(args.seed)
        references = synthetic_corpus(rng, args.references, args.vocabulary)
        hypotheses = synthetic_corpus(rng, args.hypotheses, args.vocabulary)
        source = f"synthetic: Zipf(1.1) over {args.vocabulary} tokens, lengths 10-24, seed {args.seed}"

    bleu_scores, bleu_runs = timed(lambda: bleu(hypotheses, references, args.max_order), args.repeats)
    self_scores, self_runs = timed(lambda: self_bleu(hypotheses, args.max_order), args.repeats)
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "data": source,
        "hypotheses": len(hypotheses),
        "references": len(references),
        "max_order": args.max_order,
        "repeats": args.repeats,
        "bleu": {
            "median_s": statistics.median(bleu_runs),
            "runs_s": [round(r, 4) for r in bleu_runs],
            "scores": {str(n): s for n, s in bleu_scores.items()},
        },
        "self_bleu": {
            "samples": len(hypotheses),
            "median_s": statistics.median(self_runs),
            "runs_s": [round(r, 4) for r in self_runs],
            "scores": {str(n): s for n, s in self_scores.items()},
        },
    }

    if args.nltk_hypotheses > 0:
        import nltk

        subset = hypotheses[: args.nltk_hypotheses]
        seconds, nltk_scores = nltk_timing(subset, references, args.max_order)
        ours_subset = bleu(subset, references, args.max_order)
        per_hypothesis = seconds / len(subset)
        extrapolated = per_hypothesis * len(hypotheses)
        report["nltk"] = {
            "version": nltk.__version__,
            "hypotheses_timed": len(subset),
            "seconds": seconds,
            "seconds_per_hypothesis": per_hypothesis,
            "extrapolated_bleu_s": extrapolated,
            "speedup_bleu": extrapolated / report["bleu"]["median_s"],
            "max_abs_diff_on_subset": max(abs(ours_subset[n] - nltk_scores[n]) for n in nltk_scores),
        }

    text = json.dumps(report, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
