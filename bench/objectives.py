"""Compares the adversarial objectives with MLE: MLE (the pre-trained
generator), SeqGAN, Gumbel-softmax and WGAN-GP, for several seeds, on a
quick schedule, each scored at one temperature (1) and over sampling
temperatures (the quality-diversity protocol of Caccia et al. 2020).

For each seed one run does the shared pre-training (MLE and D, with the
SeqGAN flagfile's settings, which every method's flagfile repeats) and stops
before the adversarial phase. Every method then resumes a copy of it with
its own flagfile (flags/SETTING_quick[_METHOD].cfg), so within a seed all
methods start from the same generator, discriminator and random state. The
MLE row is that pre-trained generator itself (no adversarial iteration).
Every run ends by scoring its final generator at each --temperatures value
(main.py --temperature_curve, RUN/temperatures.json).

    python bench/objectives.py --setting=synthetic --oracle_weights=../shared/data/oracle/target_lstm.npz
    python bench/objectives.py --setting=poem --data_dir=../shared/data
    python bench/objectives.py --setting=coco --data_dir=../shared/data

Writes --out (JSON: every run's figures and curve), beside it a Markdown
table (.md) and the curves (.png): NLL-oracle against NLL-test (synthetic)
and BLEU-n against Self-BLEU-n, one curve per method (seed means), with the
verdict of each method against MLE's curve. An interrupted experiment
continues: finished runs are kept, unfinished ones resume from their last
checkpoint (--restart: start every method run again from the pre-training).
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from experiments import ROOT, Runner, host, records, summary, write_json  # noqa: E402

SETTINGS = ("synthetic", "poem", "coco")
METHODS = ("mle", "seqgan", "gumbel", "wgan_gp")
TITLES = {"mle": "MLE", "seqgan": "SeqGAN", "gumbel": "Gumbel", "wgan_gp": "WGAN-GP"}
TEMPERATURES = "0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4"
TEMPERATURES_LIST = tuple(float(t) for t in TEMPERATURES.split(","))
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 10.0  # main.py --temperature_curve's limits
METRICS = (
    ("nll_oracle", "NLL-oracle"),
    ("nll_test", "NLL-test"),
    ("bleu_2", "BLEU-2"),
    ("bleu_3", "BLEU-3"),
    ("bleu_4", "BLEU-4"),
    ("bleu_5", "BLEU-5"),
    ("self_bleu_2", "Self-BLEU-2"),
    ("self_bleu_3", "Self-BLEU-3"),
    ("self_bleu_4", "Self-BLEU-4"),
    ("self_bleu_5", "Self-BLEU-5"),
    ("distinct_share", "distinct"),
    ("iterations", "iterations"),
    ("iteration_seconds", "s / iteration"),
)
# (quality, diversity, quality: higher is better): each pair is one panel of the curves.
# NLL-oracle: lower is better quality; NLL-test and Self-BLEU: lower is more diverse.
PAIRS = (("nll_oracle", "nll_test", False),) + tuple((f"bleu_{n}", f"self_bleu_{n}", True) for n in range(2, 6))


def flagfile(setting, method):
    """The method's quick flagfile; MLE and the pre-training use SeqGAN's."""
    suffix = "" if method in ("mle", "seqgan") else f"_{method}"
    return os.path.join(ROOT, "flags", f"{setting}_quick{suffix}.cfg")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=SETTINGS, required=True)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS))
    parser.add_argument("--temperatures", default=TEMPERATURES, help="sampling temperatures of the curves")
    parser.add_argument("--oracle_weights", default="", help="synthetic: the oracle .npz (empty: a random oracle)")
    parser.add_argument("--data_dir", default="data", help="poem, coco: the folder holding poems/ and coco/")
    parser.add_argument("--work_dir", default="", help="where the runs go (default /tmp/tfseqgan_objectives/SETTING)")
    parser.add_argument("--out", default="", help="JSON results (default bench/results/objectives_SETTING.json)")
    parser.add_argument("--parallel", type=int, default=1, help="trainings at once, each pinned to one core")
    parser.add_argument("--extra", default="", help="more flags for every run, space-separated")
    parser.add_argument("--restart", action="store_true", help="start every method run again from its pre-training")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(seed) for seed in args.seeds.split(",")]
        args.temperatures = sorted({float(value) for value in args.temperatures.split(",")} | {1.0})
    except ValueError as error:
        parser.error(f"--seeds and --temperatures take comma-separated numbers ({error})")
    if not all(MIN_TEMPERATURE <= t <= MAX_TEMPERATURE for t in args.temperatures):
        parser.error(f"--temperatures: each must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}] (main.py's limits)")
    args.seeds = sorted(set(args.seeds))
    args.methods = args.methods.split(",")
    unknown = [name for name in args.methods if name not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if "mle" not in args.methods:
        args.methods.insert(0, "mle")  # every verdict is against MLE's curve
    if args.parallel < 1:
        parser.error("--parallel must be >= 1")
    args.work_dir = args.work_dir or os.path.join("/tmp/tfseqgan_objectives", args.setting)
    args.out = args.out or os.path.join(ROOT, "bench", "results", f"objectives_{args.setting}.json")
    return args


def run_flags(args, method, seed, run_dir):
    flags = [f"--flagfile={flagfile(args.setting, method)}", f"--seed={seed}", f"--run_dir={run_dir}", "--resume"]
    flags += ["--noprogress", "--noplot", "--noexport"]
    if args.setting == "synthetic" and args.oracle_weights:
        flags.append(f"--oracle_weights={os.path.abspath(args.oracle_weights)}")
    if args.setting != "synthetic":
        flags.append(f"--data_dir={os.path.abspath(args.data_dir)}")
    return flags + args.extra.split()


def flag_value(path, name):
    """The last `--name=value` line of a flagfile, or None."""
    value = None
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if line.startswith(f"--{name}="):
                value = line.strip().split("=", 1)[1]
    return value


def expected_run(args, method):
    """(objective, adversarial iterations) a finished run of `method` must have."""
    if method == "mle":
        return "seqgan", 0
    path = flagfile(args.setting, method)
    extra = {item.split("=", 1)[0]: item.split("=", 1)[1] for item in args.extra.split() if "=" in item}
    iterations = extra.get("--adversarial_iterations", flag_value(path, "adversarial_iterations"))
    return flag_value(path, "objective") or "seqgan", int(iterations)


def finished(run_dir, curve=True):
    done = os.path.isfile(os.path.join(run_dir, "report.txt"))
    return done and (not curve or os.path.isfile(os.path.join(run_dir, "temperatures.json")))


def stale(args, method, run_dir):
    """Why a finished run does not answer this experiment (other temperatures, objective
    or schedule: an earlier experiment's run), or None."""
    with open(os.path.join(run_dir, "temperatures.json"), encoding="utf-8") as stream:
        document = json.load(stream)
    temperatures = [point["temperature"] for point in document["curve"]]
    objective, iterations = expected_run(args, method)
    if temperatures != args.temperatures:
        return f"its curve has temperatures {temperatures}, not {args.temperatures}"
    if (document["objective"], document["adversarial_iteration"]) != (objective, iterations):
        return (
            f"it ran --objective={document['objective']} for {document['adversarial_iteration']} adversarial "
            f"iterations, not {objective} for {iterations}"
        )
    return None


def method_figures(run_dir):
    """The figures at temperature 1, the curve, the adversarial iterations run, and the
    median over evaluation windows of the training seconds per adversarial iteration
    (a median: a process's first window includes its tracing)."""
    with open(os.path.join(run_dir, "temperatures.json"), encoding="utf-8") as stream:
        document = json.load(stream)
    curve = document["curve"]
    final = dict(next(point for point in curve if point["temperature"] == 1.0))
    final["iterations"] = document["adversarial_iteration"]
    windows = [
        r["iteration_seconds"] for r in records(run_dir) if r["phase"] == "adversarial" and "iteration_seconds" in r
    ]
    if windows:
        final["iteration_seconds"] = float(np.median(windows))
    return final, curve


def mean_curve(curves):
    """The seeds' curves averaged point by point (the same temperatures in each)."""
    points = []
    for same_temperature in zip(*curves):
        keys = [k for k in same_temperature[0] if isinstance(same_temperature[0][k], float)]
        points.append({k: float(np.mean([p[k] for p in same_temperature])) for k in keys})
    return points


def front(reference, quality, diversity, higher_is_better):
    """MLE's best trade-offs: its points that no other point beats on both quality and
    diversity, as (diversity, quality) sorted by diversity (lower: more diverse).
    Along it quality gets better as diversity gets worse, so it can be interpolated
    even where the temperature curve folds back on itself."""
    sign = 1.0 if higher_is_better else -1.0
    points = sorted((p[diversity], sign * p[quality]) for p in reference)
    kept = []
    for x, y in points:  # by diversity, best first: keep a point only if its quality beats every earlier one
        if kept and y <= kept[-1][1]:
            continue
        if kept and x == kept[-1][0]:
            kept.pop()
        kept.append((x, y))
    return [(x, sign * y) for x, y in kept]


def verdict(points, reference, quality, diversity, higher_is_better):
    """Where a method's curve lies against MLE's (`reference`) in one panel.

    Each of the method's points is compared with MLE's best trade-off at its
    diversity (`front`, linear between MLE's points): "beyond" when the point's
    quality is better there, "inside" when worse, "on" when equal. Past the ends
    of MLE's range only what dominates is judged: a point more diverse than
    every MLE point is beyond when it also beats MLE's most diverse quality, a
    point less diverse than every MLE point is inside when it does not beat MLE's
    least diverse quality; the rest cannot be compared (`outside_range`).
    Returns {beyond, inside, on, outside_range, text}.
    """
    best = front(reference, quality, diversity, higher_is_better)
    xs, ys = [x for x, _ in best], [y for _, y in best]
    counts = {"beyond": 0, "inside": 0, "on": 0, "outside_range": 0}
    for point in points:
        x = point[diversity]
        reached = float(np.interp(x, xs, ys))  # clamps to the ends' qualities outside [xs[0], xs[-1]]
        gain = point[quality] - reached if higher_is_better else reached - point[quality]
        if (x < xs[0] and gain <= 0) or (x > xs[-1] and gain > 0):
            counts["outside_range"] += 1
            continue
        if abs(gain) <= 1e-9 * max(1.0, abs(reached)):  # equal but for round-off
            gain = 0.0
        counts["beyond" if gain > 0 else "inside" if gain < 0 else "on"] += 1
    compared = counts["beyond"] + counts["inside"] + counts["on"]
    if not compared:
        text = "no point within MLE's range"
    elif counts["beyond"] == compared:
        text = f"beyond MLE's curve ({compared} of {compared} comparable points)"
    elif counts["inside"] == compared:
        text = f"inside MLE's curve ({compared} of {compared} comparable points)"
    elif counts["on"] == compared:
        text = f"on MLE's curve ({compared} of {compared} comparable points)"
    else:
        text = f"crosses MLE's curve ({counts['beyond']} of {compared} comparable points beyond)"
    return {**counts, "text": text}


def table(results, metrics, title):
    lines = ["| method | " + " | ".join(name for _, name in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for method, result in results.items():
        cells = []
        for key, _ in metrics:
            stats = result["summary"].get(key)
            digits = {"iteration_seconds": 2, "iterations": 0}.get(key, 4)
            cells.append("–" if stats is None else f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}")
        lines.append(f"| {TITLES[method]} | " + " | ".join(cells) + " |")
    return f"{title}\n\n" + "\n".join(lines) + "\n"


def verdict_lines(verdicts):
    lines = []
    for method, panels in verdicts.items():
        for (quality, diversity), result in panels.items():
            lines.append(f"- {TITLES[method]}, {quality} against {diversity}: {result['text']}")
    return "\n".join(lines) + "\n"


def plot(curves, pairs, path, title):
    """One panel per (quality, diversity) pair, one line per method (its seed
    means), each point labelled with its temperature at the ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.2 * rows), squeeze=False)
    for axis, (quality, diversity, _) in zip(axes.flat, pairs):
        for method, points in curves.items():
            xs, ys = [p[diversity] for p in points], [p[quality] for p in points]
            (line,) = axis.plot(xs, ys, marker=".", label=TITLES[method])
            for point in (points[0], points[-1]):
                axis.annotate(
                    f"{point['temperature']:g}",
                    (point[diversity], point[quality]),
                    fontsize=7,
                    color=line.get_color(),
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        axis.set_xlabel(f"{diversity} (lower: more diverse)")
        better = "higher" if quality.startswith("bleu") else "lower"
        axis.set_ylabel(f"{quality} ({better}: better quality)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(pairs) :]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.work_dir, exist_ok=True)
    runner = Runner(args.parallel)
    began = time.perf_counter()
    curve_flag = "--temperature_curve=" + ",".join(f"{t:g}" for t in args.temperatures)

    def method_runs(seed):
        """Queues each method's run of the seed: kept when finished, resumed
        when interrupted, else started from a copy of the pre-training."""
        source = os.path.join(args.work_dir, f"seed{seed}", "pretrained")
        queued = {}
        for method in args.methods:
            run_dir = os.path.join(args.work_dir, f"seed{seed}", method)
            restart = args.restart
            if finished(run_dir) and not restart:
                reason = stale(args, method, run_dir)
                if reason is None:
                    print(f"{method} seed {seed}: keeping the finished {run_dir}", flush=True)
                    queued[(method, seed)] = concurrent.futures.Future()
                    queued[(method, seed)].set_result(None)
                    continue
                print(f"{method} seed {seed}: {run_dir} is from another experiment ({reason}); rerunning", flush=True)
                restart = True
            if restart or not os.path.isdir(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)
                shutil.rmtree(run_dir + ".copy", ignore_errors=True)
                shutil.copytree(
                    source, run_dir + ".copy", ignore=shutil.ignore_patterns("report.txt", ".lock", "temperatures.json")
                )
                os.replace(run_dir + ".copy", run_dir)  # a killed copy never passes for a run
            else:
                print(f"{method} seed {seed}: resuming {run_dir}", flush=True)
            flags = run_flags(args, method, seed, run_dir) + [curve_flag]
            if method == "mle":
                flags.append("--adversarial_iterations=0")
            queued[(method, seed)] = runner.submit(flags, run_dir + ".log")
        return queued

    # Pre-training first (resumed when interrupted); each seed's methods are queued as soon as it ends.
    futures, pending = {}, {}
    for seed in args.seeds:
        run_dir = os.path.join(args.work_dir, f"seed{seed}", "pretrained")
        if finished(run_dir, curve=False):
            futures.update(method_runs(seed))
            continue
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        flags = run_flags(args, "seqgan", seed, run_dir) + ["--adversarial_iterations=0"]
        pending[runner.submit(flags, run_dir + ".log")] = seed
    for future in concurrent.futures.as_completed(list(pending)):
        seed = pending[future]
        print(f"seed {seed}: pre-trained in {future.result():.0f} s", flush=True)
        futures.update(method_runs(seed))

    per_seed, curves, failed = {method: {} for method in args.methods}, {method: [] for method in args.methods}, []
    for (method, seed), future in sorted(futures.items()):
        try:
            seconds = future.result()
        except RuntimeError as error:  # a failed run (see its log) is reported and left out; the rest still count
            print(f"{method} seed {seed}: FAILED: {error}", flush=True)
            failed.append({"method": method, "seed": seed, "error": str(error)})
            continue
        final, curve = method_figures(os.path.join(args.work_dir, f"seed{seed}", method))
        per_seed[method][seed] = {"final": final, "curve": curve}
        curves[method].append(curve)
        if seconds is not None:
            print(f"{method} seed {seed}: {json.dumps({k: round(v, 4) for k, v in final.items()})} ({seconds:.0f} s)")
    if not curves["mle"]:
        print("no MLE run finished: nothing to compare with", flush=True)
        return 1

    finals = [run["final"] for runs in per_seed.values() for run in runs.values()]
    metrics = [(k, n) for k, n in METRICS if any(k in final for final in finals)]
    results = {}
    for method in args.methods:
        runs = per_seed[method]
        results[method] = {
            "flagfile": os.path.relpath(flagfile(args.setting, method), ROOT),
            "per_seed": runs,
            "summary": {key: summary([r["final"].get(key) for r in runs.values()]) for key, _ in metrics},
        }
    means = {method: mean_curve(curves[method]) for method in args.methods if curves[method]}
    pairs = [p for p in PAIRS if p[0] in means["mle"][0] and p[1] in means["mle"][0]]  # what the runs scored
    verdicts = {
        method: {(q, d): verdict(means[method], means["mle"], q, d, higher) for q, d, higher in pairs}
        for method in means
        if method != "mle"
    }
    title = f"{args.setting}, quick schedule, seeds {args.seeds} (mean ± sample std over seeds, temperature 1)"
    markdown = table(results, metrics, title)
    markdown += "\nTemperature curves (seed means; temperatures " + ", ".join(f"{t:g}" for t in args.temperatures)
    markdown += f"), against MLE's:\n\n{verdict_lines(verdicts)}"
    if failed:
        markdown += "\nFailed runs (left out above): " + ", ".join(f"{f['method']} seed {f['seed']}" for f in failed)
        markdown += "\n"
    png = os.path.splitext(args.out)[0] + ".png"
    plot(means, pairs, png, f"{args.setting}: quality against diversity over sampling temperature (seeds {args.seeds})")
    document = {
        "setting": args.setting,
        "seeds": args.seeds,
        "temperatures": args.temperatures,
        "extra_flags": args.extra,
        "host": host(),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "results": results,
        "mean_curves": means,
        "verdicts": {m: {f"{q} vs {d}": v for (q, d), v in panels.items()} for m, panels in verdicts.items()},
        "failed": failed,
    }
    write_json(args.out, document)
    with open(os.path.splitext(args.out)[0] + ".md", "w", encoding="utf-8") as stream:
        stream.write(markdown)
    print("\n" + markdown)
    print(f"wrote {args.out}, {os.path.splitext(args.out)[0]}.md and {png}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
