"""One run at a time in a run directory: an exclusive `flock` on RUN/.lock.

The kernel drops the lock when its holder exits or dies (kill -9 included),
so a dead run never keeps it; the pid, host and start time written into the
file only serve the refusal message. The file itself is left in place (removing
it could let two processes lock two different files of one name).

`flock` is local to a machine: two hosts sharing a run directory over NFS are
not reliably kept apart. `main.py` takes the lock; in a multi-worker run only
the chief (the process that writes the run directory) should.
"""

import fcntl
import os
import socket
import time

LOCK_FILE = ".lock"


class RunDirectoryInUse(RuntimeError):
    """Another live process holds the run directory's lock (one-line message)."""


class RunLock:
    """A held lock; `release()` (or the process ending) frees it."""

    def __init__(self, path, descriptor):
        self.path = path
        self._descriptor = descriptor

    def release(self):
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None


def acquire(run_dir):
    """Locks `run_dir` (which must exist) for this process.

    Raises:
        RunDirectoryInUse: "RUN is in use by pid N on HOST (started ...)".
    """
    path = os.path.join(run_dir, LOCK_FILE)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 4096, 0).decode("utf-8", "replace").strip()
        os.close(descriptor)
        fields = dict(item.partition("=")[::2] for item in holder.split())
        who = (
            f"pid {fields['pid']} on {fields.get('host', '?')} (started {fields.get('started', '?')})"
            if "pid" in fields
            else "another process"
        )
        raise RunDirectoryInUse(
            f"{run_dir} is in use by {who}; wait for that run to end, or choose another --run_dir"
        ) from None
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"pid={os.getpid()} host={socket.gethostname()} started={started}\n".encode(), 0)
    return RunLock(path, descriptor)
