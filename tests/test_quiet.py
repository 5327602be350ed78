"""tfseqgan.quiet: TensorFlow's native start-up lines are dropped, everything else passes in order."""

import os

from tfseqgan import quiet

BEFORE_INIT = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = b"I0000 00:00:1796311346.093904    8356 port.cc:153] oneDNN custom operations are on."
CUINIT = b"E0000 00:00:1796311329.553350    8181 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error"
REAL_ERROR = b"E1203 15:00:01.123456    8181 saver.cc:52] could not open file"
WARNING = b"W1203 15:00:01.123456    8181 foo.cc:52] deprecated"
FATAL = b"F1203 15:00:01.123456    8181 foo.cc:52] Check failed: x"


def test_levels_follow_tf_cpp_min_log_level():
    assert quiet.is_noise(ONEDNN, 1) and quiet.is_noise(ONEDNN, 2)
    assert not quiet.is_noise(WARNING, 1) and quiet.is_noise(WARNING, 2)
    assert quiet.is_noise(BEFORE_INIT, 1) and not quiet.is_noise(BEFORE_INIT, 0)
    # Errors stay, except the known harmless start-up ones from level 2.
    assert quiet.is_noise(CUINIT, 2) and not quiet.is_noise(CUINIT, 1)
    assert not quiet.is_noise(REAL_ERROR, 2) and quiet.is_noise(REAL_ERROR, 3)
    assert not quiet.is_noise(FATAL, 3)
    for line in (b"error: --batch_size=0: expected >= 1", b"Input 0 of layer", b"", b"I am a line", b"W"):
        assert not quiet.is_noise(line, 3), line


def pumped(data, level=2, chunks=1):
    read_fd, write_fd = os.pipe()
    out_read, out_write = os.pipe()
    step = -(-len(data) // chunks)
    for start in range(0, len(data), step):
        os.write(write_fd, data[start : start + step])
    os.close(write_fd)
    quiet._pump(read_fd, out_write, level)
    os.close(out_write)
    os.close(read_fd)
    with os.fdopen(out_read, "rb") as stream:
        return stream.read()


def test_the_pump_drops_noise_and_keeps_the_rest_in_order():
    data = b"\n".join([BEFORE_INIT, ONEDNN, b"error: first", CUINIT, REAL_ERROR, WARNING, b"last"]) + b"\n"
    for chunks in (1, 3, 17):
        assert pumped(data, chunks=chunks) == b"error: first\n" + REAL_ERROR + b"\nlast\n", chunks


def test_an_unfinished_last_line_is_not_lost():
    assert pumped(b"error: no newline at the end") == b"error: no newline at the end"
    assert pumped(ONEDNN) == b""  # noise without its newline is still noise


def test_level_zero_installs_no_filter():
    assert not quiet.filter_native_stderr({"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert not quiet.filter_native_stderr({"TF_CPP_MIN_LOG_LEVEL": "verbose"})
