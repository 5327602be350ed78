"""The export's command lines as a user runs them: `saved_model_cli run` on the
SavedModel, `python -m export.onnx_sample` in a process that cannot import
TensorFlow, `python -m export`, and the export at the end of `python main.py`."""

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT
from export_runs import POEM_LENGTH, POEM_TOKENS, make_run
from test_main import TINY_FLAGS

from tfseqgan.export import pipeline
from tfseqgan.export.onnx_sample import OnnxSampler

TIMEOUT_S = 120  # hang guards; each command takes seconds

# Runs a module as __main__ in a process where importing TensorFlow (or
# anything that would import it: keras, tf2onnx, tensorflow_text) raises.
BLOCK_TENSORFLOW = """
import runpy, sys

BLOCKED = ("tensorflow", "keras", "tf2onnx", "tensorflow_text")

class BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, BlockTensorFlow())
module, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print("loaded:", ",".join(loaded) or "none", file=sys.stderr)
"""


def environment():
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["MPLBACKEND"] = "Agg"
    return env


def run(command, without_path=False, **kwargs):
    """Runs a command; without_path: with an empty PATH, as from a virtualenv that is not activated."""
    env = environment()
    if without_path:
        env["PATH"] = ""
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, **kwargs)


def saved_model_cli():
    """The saved_model_cli of this interpreter: the script beside sys.executable (a virtualenv's
    bin/, activated or not), else TensorFlow's module run by the interpreter itself; never PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return [beside]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def without_tensorflow(module, *args):
    return run([sys.executable, "-c", BLOCK_TENSORFLOW, module, *args])


@pytest.fixture(scope="module")
def poem_export(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("poem") / "run"
    make_run(run_dir, "poem")
    pipeline.export_run(str(run_dir))
    return run_dir / "export"


def parse_saved_model_cli(stdout):
    """{output key: numpy array} from `saved_model_cli run`'s printout."""
    parts = re.split(r"^Result for output key (\w+):\n", stdout, flags=re.MULTILINE)
    outputs = {}
    for key, body in zip(parts[1::2], parts[2::2]):
        strings = re.findall(r"b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\"", body)
        if strings:
            outputs[key] = np.array([ast.literal_eval(s).decode("utf-8") for s in strings])
        else:
            outputs[key] = np.array([int(n) for n in re.findall(r"-?\d+", body)])
    return outputs


# ------------------------------------------------------------ saved_model_cli
def test_saved_model_cli_runs_the_sample_signature(poem_export):
    saved_model = str(poem_export / "saved_model")
    result = run(
        [
            *saved_model_cli(),
            "run",
            "--dir",
            saved_model,
            "--tag_set",
            "serve",
            "--signature_def",
            "sample",
            "--input_exprs",
            "num_samples=4;temperature=0.8;seed=3",
        ],
        without_path=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = parse_saved_model_cli(result.stdout)
    assert set(outputs) == {"ids", "lengths", "text"}
    expected = tf.saved_model.load(saved_model).signatures["sample"](
        num_samples=tf.constant(4), temperature=tf.constant(0.8), seed=tf.constant(3, tf.int64)
    )
    np.testing.assert_array_equal(outputs["ids"].reshape(4, POEM_LENGTH), expected["ids"].numpy())
    np.testing.assert_array_equal(outputs["lengths"], expected["lengths"].numpy())
    assert list(outputs["text"]) == [t.decode("utf-8") for t in expected["text"].numpy()]


def test_saved_model_cli_gets_the_signatures_own_error(poem_export):
    result = run(
        [
            *saved_model_cli(),
            "run",
            "--dir",
            str(poem_export / "saved_model"),
            "--tag_set",
            "serve",
            "--signature_def",
            "acrostic",
            "--input_exprs",
            'heads=["春夏秋X"];temperature=1.0;seed=0',
        ]
    )
    assert result.returncode != 0
    assert "heads: characters not in the vocabulary:" in result.stderr


# ---------------------------------------------------------------- onnx_sample
def test_the_blocker_blocks_tensorflow():
    result = without_tensorflow("export", "--run_dir=nowhere")
    assert result.returncode != 0 and "ImportError: blocked:" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["--num", "5"], ["--num", "5", "--acrostic", "春夏秋冬", "--seed", "2"], ["--num", "3", "--prefix", "风花"]],
)
def test_onnx_sample_prints_text_without_tensorflow(poem_export, args):
    model = str(poem_export / "onnx" / "sampler.onnx")
    result = without_tensorflow("tfseqgan.export.onnx_sample", model, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip().endswith("loaded: none")
    lines = result.stdout.splitlines()
    assert len(lines) == int(args[1])
    assert all(set(line) <= set(POEM_TOKENS) - set(POEM_TOKENS[:4]) | set("<unk>") for line in lines)
    sampler = OnnxSampler(model)
    if "--acrostic" in args:
        expected = sampler.acrostic(["春夏秋冬"] * 5, 1.0, 2)["text"]
        assert all(line[:: POEM_LENGTH // 4] == "春夏秋冬" for line in lines)
    elif "--prefix" in args:
        expected = sampler.complete(np.array([[8, 9]] * 3), [2] * 3, 1.0, 0)["text"]
        assert all(line.startswith("风花") for line in lines)
    else:
        expected = sampler.sample(5, 1.0, 0)["text"]
    assert lines == expected


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num", "0"], "--num must be in [1,"),
        (["--num", "-3"], "--num must be in [1,"),
        (["--num", "many"], "argument --num: invalid int value"),
        (["--temperature", "0"], "--temperature must be in"),
        (["--temperature", "-1"], "--temperature must be in"),
        (["--temperature", "nan"], "--temperature must be in"),
        (["--acrostic", "春夏秋X"], "acrostic: not in the vocabulary: X"),
        (["--acrostic", "春夏"], "give 4, one per line"),
        (["--prefix", "春" * (POEM_LENGTH + 1)], "more than the sequence length"),
        (["--prefix", "X"], "prefix: not in the vocabulary: X"),
        (["--greedy", "--acrostic", "春夏秋冬"], "do not go together"),
        (["--seed", "-1"], "--seed must be in [0, "),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_onnx_sample_bad_arguments_end_in_one_line(poem_export, args, message):
    result = without_tensorflow("tfseqgan.export.onnx_sample", str(poem_export / "onnx" / "sampler.onnx"), *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("loaded:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("model", ["missing.onnx", "onnx/vocab.txt", "onnx/scorer.onnx"])
def test_onnx_sample_bad_model_files_end_in_one_line(poem_export, model):
    result = without_tensorflow("tfseqgan.export.onnx_sample", str(poem_export / model), "--num", "1")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("loaded:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and model.split("/")[-1] in errors[0]


# ------------------------------------------------------ python -m export, main
def test_main_exports_at_the_end_and_python_m_export_repeats_it(tmp_path):
    run_dir = tmp_path / "run"
    flags = [flag for flag in TINY_FLAGS if flag != "--noexport"]
    result = run([sys.executable, "main.py", *flags, f"--run_dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"export: {run_dir / 'export'}" in result.stdout and "verified: score max" in result.stdout
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["run"]["counters"] == {"mle_epoch": 2, "discriminator_round": 1, "adversarial_iteration": 2}
    assert manifest["model"]["tokenizer"] == "ids" and manifest["model"]["vocabulary_size"] == 20
    description = json.loads((run_dir / "model.json").read_text(encoding="utf-8"))
    assert description["generator"]["vocabulary_size"] == 20 and description["end_token"] is None
    assert "--export" in (run_dir / "flags.cfg").read_text(encoding="utf-8").splitlines()

    out_dir = tmp_path / "again"
    again = run([sys.executable, "-m", "export", f"--run_dir={run_dir}", f"--out={out_dir}"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith(f"export: {out_dir}")
    repeated = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    assert repeated["files"]["onnx/vocab.txt"] == manifest["files"]["onnx/vocab.txt"]
    assert repeated["verification"]["score_max_abs_diff"]["onnx"] <= 1e-4

    missing = run([sys.executable, "-m", "export", f"--run_dir={tmp_path / 'nowhere'}"])
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == f"error: --run_dir={tmp_path / 'nowhere'}: no such directory"


# ------------------------------------------------- untrusted folders (issue 24)
TF_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ )")


def messages(stderr):
    """stderr without TensorFlow's C++ log lines and the blocker's 'loaded:' line."""
    return [line for line in stderr.splitlines() if line.strip() and not TF_LOG.match(line) and "loaded:" not in line]


def tree(directory):
    return {
        os.path.relpath(os.path.join(root, name), directory): open(os.path.join(root, name), "rb").read()
        if name in files
        else "folder"
        for root, dirs, files in os.walk(directory)
        for name in dirs + files
    }


def test_python_m_export_leaves_a_web_app_folder_byte_for_byte(poem_export, tmp_path):
    web_app = tmp_path / "site"
    (web_app / "static").mkdir(parents=True)
    (web_app / "manifest.json").write_text('{"name": "app", "start_url": "/"}', encoding="utf-8")
    (web_app / "index.html").write_text("<!doctype html><p>hello</p>", encoding="utf-8")
    (web_app / "static" / "app.js").write_text("console.log(1)", encoding="utf-8")
    before = tree(web_app)
    result = run([sys.executable, "-m", "export", f"--run_dir={poem_export.parent}", f"--out={web_app}"])
    assert result.returncode == 1 and result.stdout == ""
    (line,) = messages(result.stderr)
    assert line.startswith(f"error: --out={web_app}: exists and is not a tfseqgan export (")
    assert 'manifest.json has no "format": 1' in line and "index.html" in line and "static" in line
    assert tree(web_app) == before
    assert sorted(os.listdir(tmp_path)) == ["site"]


def start_export(run_dir, out):
    return subprocess.Popen(
        [sys.executable, "-m", "export", f"--run_dir={run_dir}", f"--out={out}", "--num_distribution_samples=1000"],
        cwd=REPO_ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def temporary_folders(out):
    return sorted(name for name in os.listdir(out.parent) if name.startswith(f".{out.name}.tmp-"))


def wait_for_temporary_folder(process, out):
    """Waits until `process` has made its temporary folder (it is then converting the models)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not any(f"-{process.pid}-" in name for name in temporary_folders(out)):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no temporary folder appeared"
        time.sleep(0.05)


def test_signals_during_an_export_leave_no_temporary_folder(poem_export, tmp_path):
    # Signals while the models are converted; a signal during the commit's renames is
    # test_export_untrusted.py::test_sigterm_during_the_commit_is_acted_on_after_it.
    run_dir = poem_export.parent
    out, interrupted_out = tmp_path / "export", tmp_path / "interrupted"
    killed, interrupted = start_export(run_dir, out), start_export(run_dir, interrupted_out)
    for process, target in ((killed, out), (interrupted, interrupted_out)):
        wait_for_temporary_folder(process, target)
    killed.kill()
    killed.communicate(timeout=TIMEOUT_S)
    interrupted.send_signal(signal.SIGINT)
    _, stderr = interrupted.communicate(timeout=TIMEOUT_S)
    assert interrupted.returncode == 128 + signal.SIGINT and "Traceback" not in stderr
    assert messages(stderr) == ["error: interrupted by SIGINT; no temporary folder left"]
    assert temporary_folders(interrupted_out) == [] and not interrupted_out.exists()
    left_by_kill = temporary_folders(out)
    assert len(left_by_kill) == 1  # SIGKILL cannot be caught: the next export reaps it

    terminated = start_export(run_dir, out)
    wait_for_temporary_folder(terminated, out)
    terminated.terminate()
    _, stderr = terminated.communicate(timeout=TIMEOUT_S)
    assert terminated.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr
    assert messages(stderr) == [
        f"warning: removed {tmp_path / left_by_kill[0]}, left by an export that was killed",
        "error: interrupted by SIGTERM; no temporary folder left",
    ]
    assert temporary_folders(out) == [] and not out.exists()


def copy_with_metadata(export_dir, folder, **changes):
    """A copy of the export's onnx/ folder (no manifest) whose sampler metadata has `changes`."""
    import onnx

    shutil.copytree(export_dir / "onnx", folder)
    model = onnx.load(str(folder / "sampler.onnx"))
    entry = next(entry for entry in model.metadata_props if entry.key == "tfseqgan")
    entry.value = json.dumps(dict(json.loads(entry.value), **changes))
    onnx.save(model, str(folder / "sampler.onnx"))
    return folder / "sampler.onnx"


@pytest.mark.parametrize("attack", ["absolute path", "dot-dot", "fifo", "dev zero", "negative start token"])
def test_onnx_sample_reads_nothing_outside_the_folder_and_never_hangs(poem_export, tmp_path, attack):
    secret = tmp_path / "secret.txt"
    secret.write_text("\n".join(["top secret"] * len(POEM_TOKENS)) + "\n", encoding="utf-8")
    changes = {
        "absolute path": {"vocabulary": str(secret)},
        "dot-dot": {"vocabulary": "../secret.txt"},
        "fifo": {"vocabulary": "pipe"},
        "dev zero": {"vocabulary": "zero"},
        "negative start token": {"start_token": -1},
    }[attack]
    model = copy_with_metadata(poem_export, tmp_path / "model", **changes)
    os.mkfifo(tmp_path / "model" / "pipe")
    os.symlink("/dev/zero", tmp_path / "model" / "zero")
    result = without_tensorflow("tfseqgan.export.onnx_sample", str(model), "--num", "3")  # TIMEOUT_S guards a hang
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    (line,) = messages(result.stderr)
    assert line.startswith("error: ") and "top secret" not in line


# Loads the SavedModel and makes 2,000,000-row requests of each kind; prints the first line of each refusal.
OVERSIZED_REQUESTS = """
import sys
import tensorflow as tf

saved = tf.saved_model.load(sys.argv[1])
rows = 2_000_000
draws = dict(temperature=tf.constant(1.0), seed=tf.constant(0, tf.int64))
prefix = dict(prefix=tf.zeros([rows, 1], tf.int32), prefix_length=tf.zeros([rows], tf.int32))
requests = {
    "complete": lambda: saved.signatures["complete"](**prefix, **draws),
    "greedy": lambda: saved.signatures["greedy"](**prefix),
    "score": lambda: saved.signatures["score"](ids=tf.fill([rows, int(sys.argv[2])], 4)),
    "acrostic": lambda: saved.signatures["acrostic"](heads=tf.fill([rows], "春夏秋冬"), **draws),
}
for name, request in requests.items():
    try:
        request()
    except tf.errors.InvalidArgumentError as error:
        lines = error.message.strip().splitlines()
        print(name, next((line.strip() for line in lines if "must be" in line), lines[0]))
    else:
        print(name, "answered")
"""

# Runs the command of argv[1:] as a child; prints its exit status and peak RSS (KiB), nothing else of it.
PEAK_OF_CHILD = """
import resource, subprocess, sys

result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(result.stderr)
sys.stdout.write(result.stdout)
print("peak_kib", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "status", result.returncode)
"""


@pytest.mark.slow
def test_a_2_000_000_row_request_is_refused_in_little_memory(poem_export):
    command = [sys.executable, "-c", OVERSIZED_REQUESTS, str(poem_export / "saved_model"), str(POEM_LENGTH)]
    result = run([sys.executable, "-c", PEAK_OF_CHILD, *command])
    lines = result.stdout.splitlines()
    *answers, last = lines
    _, peak_kib, _, status = last.split()
    assert int(status) == 0, result.stderr[-2000:]
    expected = {"complete": "prefix", "greedy": "prefix", "score": "ids", "acrostic": "heads"}
    assert [line.split()[0] for line in answers] == list(expected), answers
    for line, input_name in zip(answers, expected.values()):
        assert f"{input_name}: the number of rows must be in [1, 1000000]" in line, line
    assert int(peak_kib) < 2 * 1024 * 1024, f"peak RSS {int(peak_kib) / 1024:.0f} MiB"


def test_a_signal_while_the_pipeline_is_still_importing_ends_in_one_line():
    """SIGTERM at start-up, while export.pipeline is partially imported (its
    functions not defined yet): still one line and 128 + 15, no traceback."""
    script = (
        "import sys, types\n"
        "sys.modules['tfseqgan.export.pipeline'] = types.ModuleType('tfseqgan.export.pipeline')  # as mid-import\n"
        "import tfseqgan.export.__main__ as cli\n"
        "cli._interrupted(15, None)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 128 + 15, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Traceback"))]
    assert lines == ["error: interrupted by SIGTERM; no temporary folder left"], result.stderr[-2000:]


def test_a_signal_during_the_export_at_the_end_of_training_removes_the_temporary_folder():
    """tfseqgan-train's handler after training: the pipeline's temporary folders removed (found
    under the package's module name), one line naming the export command, 128 + 15."""
    script = (
        "import sys, types\n"
        "pipeline = types.ModuleType('tfseqgan.export.pipeline')\n"
        "pipeline.defer_signal = lambda signum: False\n"
        "pipeline.remove_temporary_folders = lambda: print('removed', flush=True)\n"
        "sys.modules['tfseqgan.export.pipeline'] = pipeline\n"
        "from tfseqgan.cli import train as cli\n"
        "cli.FLAGS(['tfseqgan-train', '--run_dir=runs/R'])\n"
        "cli._stop_during_export(15, None)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 128 + 15, result.stderr[-2000:]
    assert result.stdout == "removed\n"
    assert result.stderr.strip().splitlines() == [
        "interrupted: stopped during the export (signal 15); training is complete and checkpointed, export it with: "
        "tfseqgan-export --run_dir=runs/R (in a checkout: python -m export)"
    ]
