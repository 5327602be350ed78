"""Keeps TensorFlow's native start-up noise off the terminal.

TensorFlow 2.21 logs through Abseil's C++ logging, which writes every
message to stderr until `absl::InitializeLog()` is called, whatever
TF_CPP_MIN_LOG_LEVEL says: `python main.py` opened with "All log messages
before absl::InitializeLog()", oneDNN notices and, on machines without a
GPU, a cuInit error. No setting turns these off, so the command-line tools
filter their own stderr: `filter_native_stderr()` routes file descriptor 2
through a small child process that drops native (C++) Abseil lines below the
level TF_CPP_MIN_LOG_LEVEL asks for and, from level 2, the known harmless
start-up errors. Everything else passes through unchanged and in order:
Python's own log lines (absl-py's `W... file.py:12]` included), tracebacks,
the tools' `error:` lines.

The child (`python -c ... tfseqgan.quiet`, so it is never mistaken for the
run) ignores SIGINT and SIGTERM and exits when the last writer closes the
pipe, so nothing written before a crash is lost; `finish()`, run at exit,
hands stderr back and waits for it, so the last line is out before the
process ends. Imports nothing heavy; call it before TensorFlow is imported.
"""

import atexit
import errno
import glob
import io
import os
import re
import select
import signal
import sys

# A native Abseil/glog line: severity letter, MMDD, time, thread id, a C/C++ source file:line].
_NATIVE_LINE = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\s:]+\.(?:cc|cpp|cxx|c|h|hpp):\d+\] ")
_BEFORE_INIT = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
CUINIT = b"failed call to cuInit"
# Errors TensorFlow logs on every start of a CPU-only machine; nothing is wrong.
HARMLESS_ERRORS = (
    CUINIT,
    b"oneDNN supports DT_INT32 only on platforms with AVX-512",
    b"Unable to register cuDNN factory",
    b"Unable to register cuFFT factory",
    b"Unable to register cuBLAS factory",
)

_child = None  # (pid, saved original stderr fd) once a filter is installed


def is_noise(line, level, harmless=HARMLESS_ERRORS):
    """Whether a stderr line (bytes, without its newline) is dropped at TF_CPP_MIN_LOG_LEVEL `level`."""
    if level >= 1 and line.rstrip(b"\r") == _BEFORE_INIT:
        return True
    match = _NATIVE_LINE.match(line)
    if not match:
        return False
    severity = _SEVERITY[match.group(1)]
    if severity < level:
        return True
    return severity == 2 and level >= 2 and any(text in line for text in harmless)


def _may_become_noise(partial):
    """Whether an unfinished line could still turn out to be noise (so it waits for its end)."""
    if re.match(rb"^[IWEF](\d|$)", partial):
        return True
    return _BEFORE_INIT.startswith(partial[: len(_BEFORE_INIT)])


def _write_all(fd, data):
    """Writes all of `data`, waiting while the descriptor is full; drops it only when the reader is gone."""
    while data:
        try:
            data = data[os.write(fd, data) :]
        except (BlockingIOError, InterruptedError):
            select.select([], [fd], [], 1.0)
        except OSError as error:
            if error.errno in (errno.EPIPE, errno.EIO, errno.EBADF):
                return  # the terminal is gone: keep draining so writers never block
            raise


def _pump(read_fd, write_fd, level, harmless=HARMLESS_ERRORS):
    """Copies read_fd to write_fd line by line until EOF, dropping noise."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not is_noise(line, level, harmless))
        if pending and not _may_become_noise(pending):
            out, pending = out + pending, b""
        _write_all(write_fd, out)
    if pending and not is_noise(pending, level, harmless):
        _write_all(write_fd, pending)


def _child_main(read_fd, level, keep_cuinit):
    """The filter process: stdin-free, signals ignored (inherited), stderr the original."""
    harmless = tuple(h for h in HARMLESS_ERRORS if not (keep_cuinit and h == CUINIT))
    _pump(read_fd, 2, level, harmless)


def filter_native_stderr(environ=os.environ):
    """Filters this process's stderr as the module says, at the level
    TF_CPP_MIN_LOG_LEVEL gives (a level of 0, or an unreadable value, filters
    nothing). On a machine with an NVIDIA device the cuInit error is kept:
    there it means a broken driver. Returns whether a filter was installed."""
    global _child
    try:
        level = int(environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return False
    if level <= 0 or _child is not None or not hasattr(os, "fork"):
        return False
    keep_cuinit = bool(glob.glob("/dev/nvidia[0-9]*"))
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.fstat(2)
    except OSError:  # no stderr at all: nothing to filter
        return False
    read_fd, write_fd = os.pipe()
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); from tfseqgan.quiet import _child_main; "
        f"_child_main({read_fd}, {level}, {keep_cuinit})"
    )
    pid = os.fork()
    if pid == 0:  # the filter: reads until every writer has closed the pipe
        try:
            os.close(write_fd)
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            os.set_inheritable(read_fd, True)
            os.execv(sys.executable, [sys.executable, "-S", "-c", code])
        finally:
            os._exit(127)  # only if exec failed
    os.close(read_fd)
    original = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    _child = (pid, original)
    _reopen_stderr()
    atexit.register(finish)
    return True


def _reopen_stderr():
    """A new sys.stderr over descriptor 2: the old one may have taken it for
    a seekable file (stderr redirected to one), and a pipe is not: its
    `reconfigure` and `tell` would fail with "Illegal seek"."""
    old = sys.stderr
    if old is None:
        return
    try:
        old.flush()
    except (OSError, ValueError):
        pass
    encoding = getattr(old, "encoding", None) or "utf-8"
    errors = getattr(old, "errors", None) or "backslashreplace"
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding=encoding, errors=errors, line_buffering=True, write_through=True
    )


def finish(timeout_s=5.0):
    """Hands stderr back to the original descriptor and waits (up to
    `timeout_s`) for the filter to write out what it holds. Call before
    os._exit; runs by itself at a normal exit."""
    global _child
    if _child is None:
        return
    pid, original = _child
    _child = None
    if sys.stderr is not None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    os.dup2(original, 2)  # closes this process's end of the pipe
    os.close(original)
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)
