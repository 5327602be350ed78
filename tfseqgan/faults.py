"""Test-only fault injection at a few named points of a run.

A fault is planned with the environment variable `TFSEQGAN_FAULT` (read once,
by `main.py`, through `from_environment`) or, in tests, with `configure`:

    TFSEQGAN_FAULT=<action>@<point>:<n>[,<action>@<point>:<n>...]

At the n-th arrival (counting from 1) of this process at `point`, `arrive`
performs `action`:

    kill    SIGKILL this process at once (as `kill -9` would)
    stall   block until killed from outside (a hung process; the test sends
            the signal, e.g. after seeing the "fault injected" line)
    nan     return NaN instead of the value passed in (a loss that blew up)
    inf     return +Inf instead of the value
    enospc  raise OSError(ENOSPC) (a write that failed for want of space)
    fill    make every later write to a file fail for real (RLIMIT_FSIZE 0:
            the kernel refuses them with EFBIG), like a disk that just filled

Each injection prints one line "fault injected: ..." to stderr first. With no
plan, `arrive` is a dictionary lookup that returns its value unchanged.

The points (`POINTS`) are called where the run does the corresponding work:
each step's loss check (`mle_step`, `discriminator_step`, `adversarial_step`:
every G and D step of an adversarial iteration), the start of a checkpoint
write (`checkpoint_write`), and the moment between the checkpoint's files
being complete and the `checkpoint` state file naming them
(`checkpoint_commit`). `export_write` and `export_commit` are the same two
moments of an export, for the export package to call.
"""

import errno
import os
import resource
import signal
import sys
import time

ENVIRONMENT_VARIABLE = "TFSEQGAN_FAULT"
POINTS = (
    "mle_step",
    "discriminator_step",
    "adversarial_step",
    "checkpoint_write",
    "checkpoint_commit",
    "export_write",
    "export_commit",
)
ACTIONS = ("kill", "stall", "nan", "inf", "enospc", "fill")

_plans = {}  # point -> (action, n)
_arrivals = {}  # point -> arrivals so far


class FaultSpecError(ValueError):
    """A TFSEQGAN_FAULT value that cannot be understood (one line)."""


def parse(spec):
    """`"kill@mle_step:3,nan@adversarial_step:1"` -> {point: (action, n)}."""
    plans = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        action, _, rest = item.partition("@")
        point, _, count = rest.partition(":")
        if action not in ACTIONS or point not in POINTS or not count.isdigit() or int(count) < 1:
            raise FaultSpecError(
                f"{ENVIRONMENT_VARIABLE}={spec}: expected <action>@<point>:<n> with action one of "
                f"{', '.join(ACTIONS)}, point one of {', '.join(POINTS)} and n >= 1, got {item!r}"
            )
        plans[point] = (action, int(count))
    return plans


def configure(spec):
    """Plans the faults of `spec` (empty: none) and resets the arrival counts."""
    _plans.clear()
    _arrivals.clear()
    _plans.update(parse(spec or ""))


def from_environment(environ=os.environ):
    """Plans the faults named by TFSEQGAN_FAULT (raises FaultSpecError)."""
    configure(environ.get(ENVIRONMENT_VARIABLE, ""))


def arrive(point, value=None):
    """Marks an arrival at `point`; returns `value`, or what a planned fault makes of it."""
    if not _plans:
        return value
    plan = _plans.get(point)
    if plan is None:
        return value
    count = _arrivals[point] = _arrivals.get(point, 0) + 1
    action, n = plan
    if count != n:
        return value
    print(f"fault injected: {action} at {point} {n} (pid {os.getpid()})", file=sys.stderr, flush=True)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stall":
        while True:
            time.sleep(1)
    if action == "nan":
        return float("nan")
    if action == "inf":
        return float("inf")
    if action == "enospc":
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected at {point})")
    if action == "fill":
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    return value
