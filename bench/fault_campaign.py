"""Fault campaign: injects each fault of issue 6 several times into small
`python main.py` runs, resumes, and compares every metric with an
uninterrupted run of the same seed.

    python bench/fault_campaign.py --repeats 3 --out bench/results/fault_campaign.json

Prints a markdown table: fault, injections, runs recovered with nothing lost
(the resume starts from the newest intact checkpoint and ends with the same
records as the uninterrupted run), and the largest difference of any metric
against it. Two scenarios run at a time; each is a few 20-second processes.
Exact fault points come from the test-only hook (TFSEQGAN_FAULT, see
tfseqgan/faults.py); "kill -9 from outside" and the signals are sent by this
script at seeded random moments.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tfseqgan import faults  # noqa: E402

# Tiny models, a schedule with checkpoint intervals of 2 MLE epochs, 1 D round and
# 2 adversarial iterations: 8 MLE steps an epoch, 8 D steps a round, and an
# adversarial iteration of 1 G step + 8 D steps. Checkpoints: ckpt-1, 2 (MLE 2, 4),
# ckpt-3, 4 (D rounds 1, 2), ckpt-5, 6 (adversarial 2, 4).
FLAGS = [
    "--vocabulary_size=20",
    "--sequence_length=6",
    "--window_sizes=1,2,3",
    "--num_filters=4,4,4",
    "--num_real_samples=128",
    "--num_test_samples=64",
    "--batch_size=16",
    "--mle_epochs=4",
    "--mle_eval_every=2",
    "--discriminator_pretrain_rounds=2",
    "--discriminator_negatives=64",
    "--discriminator_epochs=1",
    "--adversarial_iterations=4",
    "--discriminator_rounds=1",
    "--adversarial_discriminator_epochs=1",
    "--adversarial_discriminator_negatives=64",
    "--num_rollouts=2",
    "--adversarial_eval_every=2",
    "--num_eval_samples=64",
    "--num_discriminator_eval_samples=32",
    "--noplot",
]
TIMEOUT_S = 300
# Kills before a checkpoint's files are written, and after they are complete but before the state file names them.
CHECKPOINT_KILLS = ["kill@checkpoint_commit:3", "kill@checkpoint_write:5", "kill@checkpoint_commit:6"]
CHECKPOINT_KILLS += ["kill@checkpoint_commit:1", "kill@checkpoint_write:2"]
DAMAGES = ["truncated data file", "flipped byte in the data file", "garbage index file", "missing data file"]
POSITION = re.compile(r"resumed from (\S+): MLE epoch (\d+), D round (\d+), adversarial iteration (\d+)")


def launch(run_dir, *extra, fault="", progress=False):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env.pop(faults.ENVIRONMENT_VARIABLE, None)
    if fault:
        env[faults.ENVIRONMENT_VARIABLE] = fault
    return subprocess.Popen(
        [sys.executable, "main.py", *FLAGS, "--progress" if progress else "--noprogress", f"--run_dir={run_dir}"]
        + list(extra),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process, timeout=TIMEOUT_S):
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return {"returncode": process.returncode, "stdout": stdout, "stderr": stderr}


def run(run_dir, *extra, fault=""):
    return finish(launch(run_dir, *extra, fault=fault))


def records(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def compare(run_dir, reference):
    """(same (phase, step) records?, largest |difference| of any numeric field but timings)."""
    got = records(run_dir)
    same_steps = [(r["phase"], r["step"]) for r in got] == [(r["phase"], r["step"]) for r in reference]
    difference = 0.0
    for mine, theirs in zip(got, reference):
        if set(mine) != set(theirs):
            return False, float("inf")
        for key, value in theirs.items():
            if key.endswith("_seconds") or not isinstance(value, (int, float)):
                continue
            difference = max(difference, abs(mine[key] - value))
    return same_steps, difference


def newest_checkpoint(run_dir):
    path = os.path.join(run_dir, "checkpoints", "checkpoint")
    if not os.path.exists(path):
        return None
    match = re.search(r'^model_checkpoint_path: "([^"]+)"', open(path).read(), re.M)
    return os.path.join(run_dir, "checkpoints", match.group(1)) if match else None


def error_lines(result):
    return [line for line in result["stderr"].splitlines() if line.startswith(("error:", "interrupted:"))]


def resume_and_judge(run_dir, reference, expected_start, entry):
    """Resumes; nothing is lost when it starts from `expected_start` (the newest
    intact checkpoint, None for a fresh start) and ends with the reference records."""
    resumed = run(run_dir, "--resume")
    match = POSITION.search(resumed["stdout"])
    started = match.group(1) if match else None
    same_steps, difference = compare(run_dir, reference)
    entry.update(
        resume_returncode=resumed["returncode"],
        resumed_from=started,
        expected_start=expected_start,
        same_records=same_steps,
        max_metric_difference=difference,
        warnings=[line for line in resumed["stdout"].splitlines() if line.startswith("warning:")],
    )
    entry["recovered"] = bool(resumed["returncode"] == 0 and started == expected_start and same_steps)
    entry["nothing_lost"] = bool(entry["recovered"] and difference == 0.0)
    return entry


# --------------------------------------------------------------- scenarios
def hook_fault(base, reference, name, spec, expected_returncode):
    """A fault at an exact point; the run must die or stop with one line, then resume."""
    run_dir = os.path.join(base, name)
    faulted = run(run_dir, fault=spec)
    entry = {"fault": spec, "returncode": faulted["returncode"], "messages": error_lines(faulted)}
    entry["stopped_as_expected"] = faulted["returncode"] == expected_returncode and "Traceback" not in faulted["stderr"]
    resume_and_judge(run_dir, reference, newest_checkpoint(run_dir), entry)
    entry["recovered"] = entry["recovered"] and entry["stopped_as_expected"]
    entry["nothing_lost"] = entry["nothing_lost"] and entry["stopped_as_expected"]
    return entry


def external_signal(base, reference, name, signum, moment):
    """Sends `signum` at `moment` = (k, delay): `delay` seconds after the run printed its
    k-th evaluation record (SIGKILL: it dies on the spot; SIGINT/SIGTERM: it checkpoints)."""
    k, delay = moment
    run_dir = os.path.join(base, name)
    process = launch(run_dir)
    seen = 0
    for line in process.stdout:
        seen += line.startswith("[")
        if seen > k:
            break
    time.sleep(delay)
    sent = time.monotonic()
    process.send_signal(signum)
    faulted = finish(process)
    entry = {
        "fault": f"{signal.Signals(signum).name} {delay:.1f} s after evaluation record {k + 1} of {len(reference)}",
        "returncode": faulted["returncode"],
        "seconds_to_exit": round(time.monotonic() - sent, 2),
        "messages": error_lines(faulted),
    }
    finished_first = faulted["returncode"] == 0
    expected = -signum if signum == signal.SIGKILL else 128 + signum
    entry["stopped_as_expected"] = finished_first or faulted["returncode"] == expected
    if signum != signal.SIGKILL and not finished_first:
        named = [m for m in entry["messages"] if "checkpoint written to" in m]
        entry["checkpoint_named"] = bool(named) and os.path.exists(
            named[0].split("checkpoint written to ")[1].split(";")[0] + ".index"
        )
    entry["note"] = "the run had finished before the signal" if finished_first else ""
    resume_and_judge(run_dir, reference, newest_checkpoint(run_dir), entry)
    return entry


def damaged_checkpoint(base, reference, name, reference_dir, damage):
    """The finished run's newest checkpoint is damaged; resume must fall back to the previous one."""
    run_dir = os.path.join(base, name)
    shutil.copytree(reference_dir, run_dir)
    newest = newest_checkpoint(run_dir)
    previous = os.path.join(os.path.dirname(newest), "ckpt-5")
    data = newest + ".data-00000-of-00001"
    if damage == "truncated data file":
        os.truncate(data, os.path.getsize(data) // 3)
    elif damage == "flipped byte in the data file":
        content = bytearray(open(data, "rb").read())
        content[len(content) // 2] ^= 0xFF
        open(data, "wb").write(bytes(content))
    elif damage == "garbage index file":
        open(newest + ".index", "wb").write(os.urandom(400))
    elif damage == "missing data file":
        os.remove(data)
    entry = {"fault": f"{damage} ({os.path.basename(newest)})"}
    resume_and_judge(run_dir, reference, previous, entry)
    entry["warning_names_the_file"] = any(os.path.basename(newest) in w for w in entry["warnings"])
    entry["recovered"] = entry["recovered"] and entry["warning_names_the_file"]
    return entry


def concurrent_run(base, reference, name, stall_at):
    """A hung run holds the directory; a second run is refused; after kill -9 the resume goes on."""
    run_dir = os.path.join(base, name)
    first = launch(run_dir, fault=f"stall@{stall_at}")
    for line in first.stderr:
        if line.startswith("fault injected: stall"):
            break
    second = run(run_dir, "--resume")
    refused = error_lines(second)
    entry = {
        "fault": f"second run while the first hangs at {stall_at}",
        "second_returncode": second["returncode"],
        "messages": refused,
        "refused_naming_pid": second["returncode"] == 1 and any(f"in use by pid {first.pid}" in m for m in refused),
    }
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stdout.close()
    first.stderr.close()
    resume_and_judge(run_dir, reference, newest_checkpoint(run_dir), entry)
    entry["recovered"] = entry["recovered"] and entry["refused_naming_pid"]
    entry["nothing_lost"] = entry["nothing_lost"] and entry["refused_naming_pid"]
    return entry


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="injections of each fault (at different points)")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "fault_campaign.json"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random signal times")
    parser.add_argument("--only", nargs="*", default=[], help="run only the faults whose names contain these words")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="fault_campaign_")
    began = time.perf_counter()
    reference_dir = os.path.join(base, "reference")
    started = time.perf_counter()
    result = run(reference_dir)
    reference_seconds = time.perf_counter() - started
    if result["returncode"] != 0:
        sys.exit(f"the uninterrupted run failed:\n{result['stderr'][-3000:]}")
    reference = records(reference_dir)
    print(f"uninterrupted run: {len(reference)} records, {reference_seconds:.1f} s", flush=True)

    rng = random.Random(args.seed)

    def moment():  # a random time in training: after a random evaluation record, a random delay
        return rng.randrange(len(reference) - 1), rng.uniform(0, 2)

    r = args.repeats
    kill = -signal.SIGKILL
    jobs = {
        "kill -9 during MLE": [
            (hook_fault, f"mle{i}", f"kill@mle_step:{n}", kill) for i, n in enumerate([5, 13, 22, 30, 11][:r])
        ],
        "kill -9 during D pre-training": [
            (hook_fault, f"dpre{i}", f"kill@discriminator_step:{n}", kill) for i, n in enumerate([3, 8, 12, 16, 1][:r])
        ],
        "kill -9 during an adversarial step": [
            (hook_fault, f"adv{i}", f"kill@adversarial_step:{n}", kill) for i, n in enumerate([1, 14, 28, 19, 5][:r])
        ],
        "kill -9 during a checkpoint write": [
            (hook_fault, f"ckpt{i}", spec, kill) for i, spec in enumerate(CHECKPOINT_KILLS[:r])
        ],
        "kill -9 from outside at a random moment": [
            (external_signal, f"ext{i}", signal.SIGKILL, moment()) for i in range(r)
        ],
        "SIGINT / SIGTERM at a random moment": [
            (external_signal, f"sig{i}", [signal.SIGINT, signal.SIGTERM][i % 2], moment()) for i in range(r + 1)
        ],
        "damaged newest checkpoint": [
            (damaged_checkpoint, f"dmg{i}", reference_dir, damage) for i, damage in enumerate(DAMAGES[: r + 1])
        ],
        "NaN or Inf in a loss": [
            (hook_fault, f"nan{i}", spec, 1)
            for i, spec in enumerate(["nan@mle_step:20", "inf@discriminator_step:5", "nan@adversarial_step:10"][:r])
        ],
        "second run in a directory in use": [
            (concurrent_run, f"lock{i}", stall)
            for i, stall in enumerate(["mle_step:3", "discriminator_step:4", "adversarial_step:2"][:r])
        ],
        "disk full during a checkpoint write": [
            (hook_fault, f"full{i}", f"fill@checkpoint_write:{n}", 1) for i, n in enumerate([1, 3, 5, 6][:r])
        ],
    }
    if args.only:
        jobs = {name: scenarios for name, scenarios in jobs.items() if any(word in name for word in args.only)}
    outcomes = {name: [] for name in jobs}
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        futures = {
            pool.submit(function, base, reference, *arguments): name
            for name, scenarios in jobs.items()
            for function, *arguments in scenarios
        }
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                entry = future.result()
            except Exception as error:  # a scenario that breaks counts as not recovered
                entry = {"fault": name, "error": repr(error), "recovered": False, "nothing_lost": False}
                entry["max_metric_difference"] = float("inf")
            outcomes[name].append(entry)
            print(
                f"{name}: {entry['fault']}: recovered {entry['recovered']}, "
                f"difference {entry['max_metric_difference']}",
                flush=True,
            )

    rows = [
        "| fault | injected | recovered, nothing lost | max metric difference vs uninterrupted |",
        "|---|---|---|---|",
    ]
    for name, entries in outcomes.items():
        recovered = sum(e["nothing_lost"] for e in entries)
        resumed = sum(e["recovered"] for e in entries)
        difference = max(e["max_metric_difference"] for e in entries)
        cell = f"{recovered}/{len(entries)}"
        if resumed != recovered:
            cell += f" ({resumed} resumed from the newest checkpoint, see the difference)"
        rows.append(f"| {name} | {len(entries)} | {cell} | {difference:.3g} |")
    if not args.only:
        rows.append("| kill -9 / disk full during an export | – | not yet: the export package (issue 4) | – |")
    table = "\n".join(rows)
    for name, entries in outcomes.items():
        timed = [e for e in entries if "seconds_to_exit" in e]
        if timed:
            named = [e.get("checkpoint_named") for e in timed if "checkpoint_named" in e]
            table += (
                f"\n\n{name}: exit codes {sorted({e['returncode'] for e in timed})}, at most "
                f"{max(e['seconds_to_exit'] for e in timed)} s from the signal to the exit"
                + (f", checkpoint named and present {sum(named)}/{len(named)}" if named else "")
            )
    print("\n" + table)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as stream:
        json.dump(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "flags": FLAGS,
                "reference_seconds": round(reference_seconds, 1),
                "reference_records": len(reference),
                "campaign_seconds": round(time.perf_counter() - began, 1),
                "outcomes": outcomes,
                "table": table,
            },
            stream,
            indent=1,
            default=str,
        )
    print(f"\n{args.out} ({time.perf_counter() - began:.0f} s); runs kept in {base}")


if __name__ == "__main__":
    main()
