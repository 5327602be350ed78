"""Keeps TensorFlow's native start-up noise off the terminal.

TensorFlow 2.21 logs through Abseil, which writes every message to stderr
until `absl::InitializeLog()` is called, whatever TF_CPP_MIN_LOG_LEVEL says:
`python main.py` opened with "All log messages before absl::InitializeLog()",
oneDNN notices and a cuInit error on machines without a GPU. No setting
turns these off, so the command-line tools filter their own stderr:
`filter_native_stderr()` routes file descriptor 2 through a small child
process that drops Abseil lines below the level TF_CPP_MIN_LOG_LEVEL asks
for (and, from level 2, the known harmless start-up errors), and passes
everything else through unchanged, in order.

The child ignores SIGINT and SIGTERM and exits when the last writer closes
the pipe, so nothing written before a crash is lost. Imports nothing heavy;
call it before TensorFlow is imported.
"""

import os
import re
import signal
import sys

# An Abseil/glog line: severity letter, MMDD, time, thread id, file:line].
_ABSL_LINE = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\s:]+:\d+\] ")
_BEFORE_INIT = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
# Errors TensorFlow logs on every start of a CPU-only machine; nothing is wrong.
HARMLESS_ERRORS = (
    b"failed call to cuInit",
    b"oneDNN supports DT_INT32 only on platforms with AVX-512",
    b"Unable to register cuDNN factory",
    b"Unable to register cuFFT factory",
    b"Unable to register cuBLAS factory",
)


def is_noise(line, level):
    """Whether a stderr line (bytes, without its newline) is dropped at TF_CPP_MIN_LOG_LEVEL `level`."""
    if level >= 1 and line.rstrip(b"\r") == _BEFORE_INIT:
        return True
    match = _ABSL_LINE.match(line)
    if not match:
        return False
    severity = _SEVERITY[match.group(1)]
    if severity < level:
        return True
    return severity == 2 and level >= 2 and any(text in line for text in HARMLESS_ERRORS)


def _may_become_noise(partial):
    """Whether an unfinished line could still turn out to be noise (so it waits for its end)."""
    return bool(re.match(rb"^[IWEF]\d", partial)) or _BEFORE_INIT.startswith(partial[: len(_BEFORE_INIT)])


def _pump(read_fd, write_fd, level):  # the child's loop
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
        out = b"".join(line + b"\n" for line in lines if not is_noise(line, level))
        if pending and not _may_become_noise(pending):
            out, pending = out + pending, b""
        while out:
            try:
                out = out[os.write(write_fd, out) :]
            except InterruptedError:
                continue
            except OSError:  # the terminal is gone: keep draining so writers never block
                out = b""
    if pending and not is_noise(pending, level):
        try:
            os.write(write_fd, pending)
        except OSError:
            pass


def filter_native_stderr(environ=os.environ):
    """Filters this process's stderr as the module says, at the level
    TF_CPP_MIN_LOG_LEVEL gives (a level of 0, or an unreadable value, filters
    nothing). Returns whether a filter was installed."""
    try:
        level = int(environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return False
    if level <= 0 or not hasattr(os, "fork"):
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the filter: reads until every writer has closed the pipe
        try:
            os.close(write_fd)
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            _pump(read_fd, 2, level)
        finally:
            os._exit(0)
    os.close(read_fd)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    return True
