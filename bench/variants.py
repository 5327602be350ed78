"""Runs each training variant (--d_loss, --teacher_forcing_steps,
--reward_baseline, --entropy_bonus) on a quick setting with several seeds
and writes a table of NLL-oracle, NLL-test, BLEU-2 and Self-BLEU-2 (mean and
spread over the seeds).

For each seed, one run does the pre-training (MLE and D, the paper's losses)
and stops before the adversarial phase; every variant then resumes a copy
of that run, so within a seed all variants start from the same generator,
discriminator and random state and differ only in what they change in the
adversarial phase. (The relativistic D losses therefore start from a D
pre-trained with the standard loss: its log-odds are the critic they
continue to train.)

    python bench/variants.py --setting=synthetic --oracle_weights=../shared/data/oracle/target_lstm.npz
    python bench/variants.py --setting=poem --data_dir=../shared/data

Runs go to --work_dir (kept, each with its metrics.jsonl and log); the
results to --out (JSON, every seed's figures) and beside it a Markdown table
(.md). --parallel N runs N trainings at once, each pinned to its own core
(Linux), which on a 2-core host finishes sooner than one run using both.
--reuse_finished keeps variant runs that already finished (an interrupted
experiment continues where it stopped). --old_code=DIR adds the variant
`paper_old_code`: the paper's setting run by DIR/main.py (a checkout of an
earlier commit) from the same pre-trained run, to measure what a change of
the adversarial phase does (e.g. `git worktree add DIR COMMIT`).
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from experiments import ROOT, Runner, host, records, summary  # noqa: E402

SETTINGS = {"synthetic": "flags/synthetic_quick.cfg", "poem": "flags/poem_quick.cfg"}
VARIANTS = {  # name: flags added to the adversarial phase
    "paper": [],
    "relativistic": ["--d_loss=relativistic"],
    "relativistic_average": ["--d_loss=relativistic_average"],
    "teacher_forcing": ["--teacher_forcing_steps=1"],
    "batch_mean_baseline": ["--reward_baseline=batch_mean"],
    "moving_average_baseline": ["--reward_baseline=moving_average"],
    "entropy_bonus": ["--entropy_bonus=0.01"],
}
METRICS = (
    ("nll_oracle", "NLL-oracle"),
    ("nll_test", "NLL-test"),
    ("bleu_2", "BLEU-2"),
    ("bleu_3", "BLEU-3"),
    ("self_bleu_2", "Self-BLEU-2"),
)
OLD_CODE = "paper_old_code"  # --old_code: the paper's setting run by another checkout


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--oracle_weights", default="", help="synthetic: the oracle .npz (empty: a random oracle)")
    parser.add_argument("--data_dir", default="data", help="poem: the folder holding poems/")
    parser.add_argument("--work_dir", default="", help="where the runs go (default /tmp/tfseqgan_variants/SETTING)")
    parser.add_argument("--out", default="", help="JSON results (default bench/results/variants_SETTING.json)")
    parser.add_argument("--parallel", type=int, default=1, help="trainings at once, each pinned to one core")
    parser.add_argument("--extra", default="", help="more flags for every run, space-separated")
    parser.add_argument(
        "--reuse_finished",
        action="store_true",
        help="keep variant runs that already finished (report.txt written), e.g. after an interrupted experiment",
    )
    parser.add_argument("--old_code", default="", help=f"a checkout whose main.py runs the extra variant {OLD_CODE}")
    args = parser.parse_args(argv)
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    args.variants = args.variants.split(",")
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.parallel < 1:
        parser.error("--parallel must be >= 1")
    if args.old_code:
        if not os.path.isfile(os.path.join(args.old_code, "main.py")):
            parser.error(f"--old_code={args.old_code}: no main.py there")
        args.old_code = os.path.abspath(args.old_code)
        args.variants.append(OLD_CODE)
    args.work_dir = args.work_dir or os.path.join("/tmp/tfseqgan_variants", args.setting)
    args.out = args.out or os.path.join(ROOT, "bench", "results", f"variants_{args.setting}.json")
    return args


def base_flags(args, seed, run_dir):
    flags = [f"--flagfile={os.path.join(ROOT, SETTINGS[args.setting])}", f"--seed={seed}", f"--run_dir={run_dir}"]
    flags += ["--noprogress", "--noplot", "--noexport"]
    if args.setting == "synthetic" and args.oracle_weights:
        flags.append(f"--oracle_weights={os.path.abspath(args.oracle_weights)}")
    if args.setting == "poem":
        flags.append(f"--data_dir={os.path.abspath(args.data_dir)}")
    return flags + args.extra.split()


def final_figures(run_dir):
    """The last adversarial evaluation and the one before the phase (step 0)."""
    adversarial = [r for r in records(run_dir) if r["phase"] == "adversarial"]
    pick = lambda record: {key: record.get(key) for key, _ in METRICS}  # noqa: E731
    return pick(adversarial[-1]), pick(adversarial[0])


def table(results, setting):
    keys = [(key, name) for key, name in METRICS if any(r["summary"][key] for r in results.values())]
    header = "| variant | " + " | ".join(name for _, name in keys) + " |"
    lines = [header, "|---" * (len(keys) + 1) + "|"]
    for name, result in results.items():
        cells = []
        for key, _ in keys:
            stats = result["summary"][key]
            cells.append("–" if stats is None else f"{stats['mean']:.4f} ± {stats['std']:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return f"{setting} (mean ± sample std over seeds)\n\n" + "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.work_dir, exist_ok=True)
    runner = Runner(args.parallel)
    began = time.perf_counter()

    def variant_runs(seed):
        """Copies the seed's pre-trained run once per variant and queues them."""
        source = os.path.join(args.work_dir, f"seed{seed}", "pretrained")
        queued = {}
        for name in args.variants:
            run_dir = os.path.join(args.work_dir, f"seed{seed}", name)
            if args.reuse_finished and os.path.isfile(os.path.join(run_dir, "report.txt")):
                print(f"{name} seed {seed}: reusing the finished {run_dir}", flush=True)
                finished = concurrent.futures.Future()
                finished.set_result(records(run_dir)[-1].get("elapsed_seconds", 0.0))
                queued[(name, seed)] = finished
                continue
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.copytree(source, run_dir)
            for stale in ("report.txt", ".lock"):
                if os.path.exists(os.path.join(run_dir, stale)):
                    os.remove(os.path.join(run_dir, stale))
            flags = base_flags(args, seed, run_dir) + ["--resume"] + VARIANTS.get(name, [])
            other_code = [args.old_code] if name == OLD_CODE else []
            queued[(name, seed)] = runner.submit(flags, run_dir + ".log", *other_code)
        return queued

    # Pre-training first; each seed's variants are queued as soon as its pre-training ends.
    futures, pending = {}, {}
    for seed in args.seeds:
        run_dir = os.path.join(args.work_dir, f"seed{seed}", "pretrained")
        if os.path.isfile(os.path.join(run_dir, "report.txt")):
            print(f"seed {seed}: reusing {run_dir}", flush=True)
            futures.update(variant_runs(seed))
            continue
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        flags = base_flags(args, seed, run_dir) + ["--adversarial_iterations=0"]
        pending[runner.submit(flags, run_dir + ".log")] = seed
    for future in concurrent.futures.as_completed(list(pending)):
        seed = pending[future]
        print(f"seed {seed}: pre-trained in {future.result():.0f} s", flush=True)
        futures.update(variant_runs(seed))

    runs = {}
    for (name, seed), future in futures.items():
        seconds = future.result()
        final, start = final_figures(os.path.join(args.work_dir, f"seed{seed}", name))
        runs.setdefault(name, {})[seed] = {"final": final, "seconds": round(seconds, 1)}
        runs.setdefault("pre-trained (adversarial step 0)", {})[seed] = {"final": start, "seconds": 0.0}
        print(f"{name} seed {seed}: {json.dumps(final)} ({seconds:.0f} s)", flush=True)

    order = ["pre-trained (adversarial step 0)"] + args.variants
    results = {}
    for name in order:
        per_seed = runs[name]
        results[name] = {
            "flags": VARIANTS.get(name, []),
            "per_seed": per_seed,
            "summary": {key: summary([r["final"].get(key) for r in per_seed.values()]) for key, _ in METRICS},
        }
    markdown = table(results, f"{args.setting} ({SETTINGS[args.setting]}, seeds {args.seeds})")
    document = {
        "setting": args.setting,
        "flagfile": SETTINGS[args.setting],
        "seeds": args.seeds,
        "extra_flags": args.extra,
        "old_code": args.old_code or None,
        "host": host(),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=2)
    with open(os.path.splitext(args.out)[0] + ".md", "w", encoding="utf-8") as stream:
        stream.write(markdown)
    print("\n" + markdown)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
