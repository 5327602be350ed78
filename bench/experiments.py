"""What the experiment scripts (`variants.py`, `objectives.py`) share: running
main.py processes side by side, reading a run's metrics, and mean ± spread
over seeds."""

import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Runner:
    """Runs main.py processes, at most `parallel` at once, each on its own core."""

    def __init__(self, parallel):
        self.cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.free = list(self.cores[:parallel]) if parallel > 1 and len(self.cores) >= parallel else []
        self.pool = concurrent.futures.ThreadPoolExecutor(parallel)

    def _run(self, flags, log_path, root):
        core = self.free.pop() if self.free else None
        command = [sys.executable, os.path.join(root, "main.py"), *flags]
        if core is not None:
            command = ["taskset", "-c", str(core), *command]
        began = time.perf_counter()
        try:
            with open(log_path, "w", encoding="utf-8") as log:
                env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
                result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, check=False)
        finally:
            if core is not None:
                self.free.append(core)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {result.returncode}; see {log_path}")
        return time.perf_counter() - began

    def submit(self, flags, log_path, root=ROOT):
        return self.pool.submit(self._run, flags, log_path, root)


def records(run_dir):
    """The evaluation records of a run (its metrics.jsonl)."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def summary(values):
    """{mean, std (sample), values} of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def host():
    import platform

    return {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}


def write_json(path, document):
    """Writes `document` to `path` through a temporary file (never half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=2)
    os.replace(path + ".tmp", path)
