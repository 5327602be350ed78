"""tfseqgan.quiet: TensorFlow's native start-up lines are dropped, everything else passes in order."""

import os

from tfseqgan import quiet

BEFORE_INIT = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = b"I0000 00:00:1796311346.093904    8356 port.cc:153] oneDNN custom operations are on."
CUINIT = b"E0000 00:00:1796311329.553350    8181 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error"
REAL_ERROR = b"E1203 15:00:01.123456    8181 saver.cc:52] could not open file"
WARNING = b"W1203 15:00:01.123456    8181 foo.cc:52] deprecated"
FATAL = b"F1203 15:00:01.123456    8181 foo.cc:52] Check failed: x"
# absl-py's Python log lines look the same but name a .py file: never dropped.
PYTHON_WARNING = b"W1203 15:37:39.540639 139770538027904 checkpoint.py:6] Value in checkpoint could not be found"


def test_levels_follow_tf_cpp_min_log_level():
    assert quiet.is_noise(ONEDNN, 1) and quiet.is_noise(ONEDNN, 2)
    assert not quiet.is_noise(WARNING, 1) and quiet.is_noise(WARNING, 2)
    assert quiet.is_noise(BEFORE_INIT, 1) and not quiet.is_noise(BEFORE_INIT, 0)
    # Errors stay, except the known harmless start-up ones from level 2.
    assert quiet.is_noise(CUINIT, 2) and not quiet.is_noise(CUINIT, 1)
    assert not quiet.is_noise(REAL_ERROR, 2) and quiet.is_noise(REAL_ERROR, 3)
    assert not quiet.is_noise(FATAL, 3)
    assert not quiet.is_noise(PYTHON_WARNING, 2) and not quiet.is_noise(PYTHON_WARNING.replace(b"W", b"I", 1), 3)
    for line in (b"error: --batch_size=0: expected >= 1", b"Input 0 of layer", b"", b"I am a line", b"W"):
        assert not quiet.is_noise(line, 3), line


def pumped(data, level=2, pieces=1, pause_s=0.0):
    """What _pump writes for `data` arriving in `pieces` writes, `pause_s` apart."""
    import threading
    import time

    read_fd, write_fd = os.pipe()
    out_read, out_write = os.pipe()
    step = -(-len(data) // pieces)

    def writer():
        for start in range(0, len(data), step):
            os.write(write_fd, data[start : start + step])
            time.sleep(pause_s)
        os.close(write_fd)

    thread = threading.Thread(target=writer)
    thread.start()
    quiet._pump(read_fd, out_write, level)
    thread.join()
    os.close(out_write)
    os.close(read_fd)
    with os.fdopen(out_read, "rb") as stream:
        return stream.read()


def test_the_pump_drops_noise_and_keeps_the_rest_in_order():
    lines = [BEFORE_INIT, ONEDNN, b"error: first", CUINIT, PYTHON_WARNING, REAL_ERROR, WARNING, b"last"]
    data = b"\n".join(lines) + b"\n"
    expected = b"error: first\n" + PYTHON_WARNING + b"\n" + REAL_ERROR + b"\nlast\n"
    assert pumped(data) == expected
    # Lines cut at every kind of boundary (one byte after a noise line's first letter included).
    for pieces in (3, 17, len(data)):
        assert pumped(data, pieces=pieces, pause_s=0.001) == expected, pieces


def test_an_unfinished_last_line_is_not_lost():
    assert pumped(b"error: no newline at the end") == b"error: no newline at the end"
    assert pumped(ONEDNN) == b""  # noise without its newline is still noise
    assert pumped(b"I") == b"I"  # what is left at the end is not noise


def test_a_filtered_process_keeps_its_real_output_and_ends_with_it(tmp_path):
    """A child with the filter: noise is gone, Python's log warning and the last line are there
    as soon as it has exited (the filter is waited for), and nothing is reordered."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    script = f"""
import os, sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from tfseqgan import quiet
assert quiet.filter_native_stderr({{"TF_CPP_MIN_LOG_LEVEL": "2"}})
os.write(2, {BEFORE_INIT!r} + b"\\n" + {ONEDNN!r} + b"\\n")
from absl import logging
logging.use_absl_handler()
logging.warning("a python warning")
os.write(2, {CUINIT!r} + b"\\n")
print("error: the last line", file=sys.stderr)
"""
    path = tmp_path / "err.txt"
    with open(path, "wb") as err:
        done = subprocess.run([sys.executable, "-c", script], stderr=err, timeout=60)
    text = path.read_text()  # read at once: the filter's output is out when the process has ended
    assert done.returncode == 0, text
    assert "a python warning" in text
    assert text.rstrip().endswith("error: the last line"), text
    for noise in ("absl::InitializeLog", "oneDNN", "cuInit"):
        assert noise not in text, text


def test_level_zero_installs_no_filter():
    assert not quiet.filter_native_stderr({"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert not quiet.filter_native_stderr({"TF_CPP_MIN_LOG_LEVEL": "verbose"})


def test_the_clis_stderr_redirected_to_a_file_still_gives_one_line(tmp_path):
    """With stderr a file, Python takes it for seekable; the filter's pipe is not, and
    python -m export's reconfigure of sys.stderr failed with "Illegal seek" (a traceback)."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    err_path = tmp_path / "err.txt"
    with open(err_path, "wb") as err:
        done = subprocess.run(
            [sys.executable, "-m", "export", f"--run_dir={tmp_path / 'missing'}"],
            cwd=REPO_ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=120,
        )
    lines = err_path.read_text().splitlines()
    assert done.returncode == 1, lines
    assert lines == [f"error: --run_dir={tmp_path / 'missing'}: no such directory"], lines
