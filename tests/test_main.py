"""main.py through a subprocess: a tiny end-to-end run, --flagfile reruns, and flag validation."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from conftest import REPO_ROOT

# The flags equivalent of conftest's TINY_* configs.
TINY_FLAGS = [
    "--vocabulary_size=20",
    "--sequence_length=6",
    "--window_sizes=1,2,3",
    "--num_filters=4,4,4",
    "--num_real_samples=128",
    "--num_test_samples=64",
    "--batch_size=16",
    "--mle_epochs=2",
    "--mle_eval_every=1",
    "--discriminator_pretrain_rounds=1",
    "--discriminator_negatives=64",
    "--discriminator_epochs=1",
    "--adversarial_iterations=2",
    "--discriminator_rounds=1",
    "--adversarial_discriminator_epochs=1",
    "--adversarial_discriminator_negatives=64",
    "--num_rollouts=2",
    "--adversarial_eval_every=1",
    "--num_eval_samples=64",
    "--num_discriminator_eval_samples=32",
    "--reward_precision=float32",  # as conftest's TINY_TRAIN: the same numbers on every CPU
    "--noprogress",
    "--noexport",  # the export at the end of a run is tested in test_export_cli.py
]

RUN_TIMEOUT_S = 60  # a hang guard: the tiny run takes ~10 s
PARALLEL_PROCESSES = 2


def environment():
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["MPLBACKEND"] = "Agg"
    return env


def run_main(*args, timeout=RUN_TIMEOUT_S):
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=REPO_ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_main(*args):
    return subprocess.Popen(
        [sys.executable, "main.py", *args],
        cwd=REPO_ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def numbers(run_dir):
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as stream:
        records = [json.loads(line) for line in stream if line.strip()]
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = run_main(*TINY_FLAGS, f"--run_dir={run_dir}")
    return run_dir, result


def test_tiny_run_succeeds_and_writes_its_files(tiny_run):
    run_dir, result = tiny_run
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("flags.cfg", "metrics.jsonl", "report.txt", "nll_oracle.png"):
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "checkpoints").is_dir()
    phases = {record["phase"] for record in numbers(run_dir)}
    assert phases == {"mle", "discriminator", "adversarial"}
    report = (run_dir / "report.txt").read_text()
    assert "NLL-oracle" in report and "MLE (end of pre-training)" in report and "SeqGAN final (iteration 2)" in report
    assert (run_dir / "nll_oracle.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NLL-oracle" in result.stdout


def test_tiny_run_prints_no_tensorflow_start_up_noise(tiny_run):
    # TensorFlow logs through Abseil before TF_CPP_MIN_LOG_LEVEL applies; main.py filters those lines.
    _, result = tiny_run
    assert result.returncode == 0
    for marker in ("absl::InitializeLog", "cuInit", "oneDNN", "cudart_stub"):
        assert marker not in result.stderr, result.stderr[:2000]
    assert result.stdout.splitlines()[0].startswith("[mle 0] nll_oracle"), result.stdout[:500]


def test_flags_cfg_records_the_resolved_flags(tiny_run):
    run_dir, result = tiny_run
    assert result.returncode == 0
    lines = (run_dir / "flags.cfg").read_text().splitlines()
    assert any(line.startswith("# ") for line in lines)  # grouped by sections
    for flag in TINY_FLAGS:
        assert flag in lines, flag
    assert f"--run_dir={run_dir}" in lines


def test_flagfile_rerun_repeats_the_run(tiny_run, tmp_path):
    run_dir, first = tiny_run
    assert first.returncode == 0
    new_dir = tmp_path / "again"
    result = run_main(f"--flagfile={run_dir / 'flags.cfg'}", f"--run_dir={new_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (new_dir / "metrics.jsonl").is_file() and (new_dir / "report.txt").is_file()
    assert f"--run_dir={new_dir}" in (new_dir / "flags.cfg").read_text().splitlines()
    # Same resolved flags, same seed: the same numbers.
    assert numbers(new_dir) == numbers(run_dir)


TEXT_FILE = os.path.abspath(__file__)
BAD_FLAGS = {
    "count_mismatch": (["--window_sizes=1,2", "--num_filters=4"], ["--window_sizes", "--num_filters"]),
    "window_too_long": (["--window_sizes=30", "--num_filters=4", "--sequence_length=6"], ["--window_sizes", "30"]),
    "missing_oracle": (["--oracle_weights=/nonexistent.npz"], ["--oracle_weights", "/nonexistent.npz"]),
    # A plain text file (this module): refused as no .npz, not as "pickled (object) data" (np.load's words).
    "text_oracle": ([f"--oracle_weights={TEXT_FILE}"], [TEXT_FILE, "not an .npz archive (it is a text file)"]),
    "zero_batch": (["--batch_size=0"], ["--batch_size"]),
}


@pytest.fixture(scope="module")
def bad_flag_results(tiny_run, tmp_path_factory):
    """Every refused command line, two at a time (each costs a TensorFlow import, not a run).

    Further flag checks run in-process (see `parsed_flags`), as each process costs seconds.
    """
    base = tmp_path_factory.mktemp("bad_flags")
    commands = {name: args + [f"--run_dir={base / name}"] for name, (args, _) in BAD_FLAGS.items()}
    run_dir, _ = tiny_run
    # A second run into an existing run directory without --resume.
    commands["existing_run_dir"] = TINY_FLAGS + [f"--run_dir={run_dir}"]
    pending, running, results = list(commands.items()), {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL_PROCESSES:
            name, args = pending.pop(0)
            running[name] = start_main(*args)
        name, process = next(iter(running.items()))
        try:
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        results[name] = (process.returncode, stdout, stderr)
        del running[name]
    return base, results


def message_lines(stdout, stderr):
    return [line for line in (stdout + "\n" + stderr).splitlines() if line.strip()]


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flags_exit_nonzero_with_a_one_line_message(bad_flag_results, case):
    base, results = bad_flag_results
    returncode, stdout, stderr = results[case]
    assert returncode not in (0, None), stdout[-2000:]
    needles = BAD_FLAGS[case][1]
    lines = message_lines(stdout, stderr)
    assert any(all(needle in line for needle in needles) for line in lines), stderr[-2000:]
    assert "Traceback" not in stderr
    assert not (base / case / "metrics.jsonl").exists()


def test_existing_run_dir_without_resume_is_refused(bad_flag_results, tiny_run):
    _, results = bad_flag_results
    run_dir, first = tiny_run
    returncode, stdout, stderr = results["existing_run_dir"]
    assert returncode not in (0, None)
    assert any("--resume" in line and str(run_dir) in line for line in message_lines(stdout, stderr)), stderr[-2000:]
    assert "Traceback" not in stderr
    # The earlier run is left as it was.
    assert (run_dir / "report.txt").is_file()
    assert len(numbers(run_dir)) == 7


# ------------------------------------------------------- in-process flag checks
@pytest.fixture
def parsed_flags():
    """`parse(*args)`: main.py's flags parsed in this process; unparsed again afterwards."""
    from tfseqgan.cli import train as main

    def parse(*args):
        main.FLAGS.unparse_flags()
        main.FLAGS(["main.py", *args])
        return main

    yield parse
    main.FLAGS.unparse_flags()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--window_sizes=1,x", "--num_filters=4,4"], "--window_sizes: expected comma-separated integers, got 'x'"),
        (["--window_sizes=0,2", "--num_filters=4,4"], "--window_sizes: values must be >= 1"),
        (["--window_sizes=1,2", "--num_filters=4,-1"], "--num_filters: values must be >= 1"),
        (["--vocabulary_size=20", "--start_token=20"], "--start_token=20 must be < --vocabulary_size=20"),
        (["--num_real_samples=10", "--batch_size=16"], "--num_real_samples=10 is smaller than one batch"),
        (["--temperature_curve=0.8,warm"], "--temperature_curve: expected comma-separated numbers, got 'warm'"),
        (["--temperature_curve=0.8,0"], "--temperature_curve: temperatures must be in [0.01, 10], got 0"),
        (["--temperature_curve=1e-39"], "--temperature_curve: temperatures must be in [0.01, 10], got 1e-39"),
        (["--temperature_curve=nan"], "--temperature_curve: temperatures must be in [0.01, 10], got nan"),
        (["--temperature_curve=" + ",".join(["1"] * 33)], "--temperature_curve: at most 32 temperatures, got 33"),
    ],
)
def test_build_configs_rejects(parsed_flags, args, needle):
    main = parsed_flags(*args)
    with pytest.raises(main.FlagError) as error:
        main.build_configs()
    assert needle in str(error.value)
    assert "\n" not in str(error.value)


def test_build_configs_maps_flags_to_configs(parsed_flags, tmp_path):
    main = parsed_flags(*TINY_FLAGS, f"--run_dir={tmp_path}", "--seed=5", "--noplot", "--temperature_curve=0.5,1.25")
    model, oracle_config, train, run, text_config = main.build_configs()
    assert train.temperature_curve == (0.5, 1.25)
    assert text_config.dataset == "synthetic"
    assert model.window_sizes == (1, 2, 3) and model.num_filters == (4, 4, 4)
    assert (model.vocabulary_size, model.sequence_length) == (20, 6)
    assert (oracle_config.num_real_samples, oracle_config.num_test_samples) == (128, 64)
    assert train.batch_size == 16 and train.num_rollouts == 2 and train.seed == 5
    assert train.adversarial_discriminator_negatives == 64 and train.num_discriminator_eval_samples == 32
    assert run.run_dir == str(tmp_path) and run.write_plot is False and run.progress is False


@pytest.mark.parametrize("flagfile", sorted(p.name for p in (REPO_ROOT / "flags").glob("*.cfg")))
def test_every_flagfile_builds_its_configs(parsed_flags, flagfile):
    main = parsed_flags(f"--flagfile={REPO_ROOT / 'flags' / flagfile}")
    model, _, train, run, text_config = main.build_configs()
    assert run.run_dir == "runs/" + flagfile[: -len(".cfg")]
    corpus = flagfile.split(".")[0].split("_")[0]
    assert text_config.dataset == {"poem": "poems", "coco": "coco", "synthetic": "synthetic"}[corpus]
    assert max(model.window_sizes) <= model.sequence_length and train.batch_size == 64


@pytest.mark.slow
def test_resume_through_the_cli(tiny_run, tmp_path):
    import shutil

    run_dir, first = tiny_run
    assert first.returncode == 0
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    result = run_main(f"--flagfile={copy / 'flags.cfg'}", f"--run_dir={copy}", "--resume", "--adversarial_iterations=3")
    assert result.returncode == 0, result.stderr[-3000:]
    records = numbers(copy)
    assert records[:7] == numbers(run_dir)
    assert [(r["phase"], r["step"]) for r in records[7:]] == [("adversarial", 3)]


# SIGTERM in the default suite; SIGINT takes the same path (one handler for both) and runs with -m slow.
@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM])
def test_signal_writes_a_checkpoint_and_exits_non_zero(tmp_path, signum):

    run_dir = tmp_path / "run"
    flags = [f for f in TINY_FLAGS if not f.startswith(("--mle_epochs", "--noprogress"))]
    process = subprocess.Popen(
        [sys.executable, "main.py", *flags, "--mle_epochs=100000", f"--run_dir={run_dir}", "--progress"],
        cwd=REPO_ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        for line in process.stdout:  # wait until training is under way
            if line.startswith("MLE epoch 2/") or time.monotonic() > deadline:
                break
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)  # a guard against a hang, not a speed check
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum
    message = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert len(message) == 1 and "checkpoint written to" in message[0] and "--resume" in message[0]
    checkpoint = message[0].split("checkpoint written to ")[1].split(";")[0]
    assert os.path.exists(checkpoint + ".index")
    # It stopped after the step in progress: the checkpoint holds the epochs
    # finished, and no evaluation ran past them.
    finished = int(tf.train.load_checkpoint(checkpoint).get_tensor("mle_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    assert 1 <= finished < 100000
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(finished + 1))

    resumed = run_main(*TINY_FLAGS, f"--run_dir={run_dir}", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    phases = {json.loads(line)["phase"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()}
    assert phases == {"mle", "discriminator", "adversarial"}
