"""tf.distribute: a mirrored pair of CPUs and two worker processes train exactly
like one device; checkpoints move between strategies; XLA and mixed precision."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT, tiny_configs
from test_main import TINY_FLAGS, environment

from tfseqgan import distribute
from tfseqgan.objectives import seqgan as seqgan_objective
from tfseqgan.training.loop import Trainer

TIMEOUT_S = 300  # a hang guard; each check takes well under a minute alone


def quiet_trainer(run_dir, **overrides):
    return Trainer(*tiny_configs(run_dir, **overrides), log=lambda *args: None)


def helper_result(script, run_dir):
    """Runs tests/helpers/SCRIPT RUN_DIR in a fresh process (two logical CPUs must be
    set before TensorFlow starts) and returns the JSON of its RESULT line."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "helpers" / script), str(run_dir)],
        cwd=REPO_ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_mirrored_over_two_cpus_matches_one_device_and_checkpoints_cross_strategies(tmp_path):
    """One MLE, one D and one adversarial step on two logical CPUs give the single-device
    weights to 1e-5; a run started under one strategy resumes under the other."""
    check = helper_result("mirrored_check.py", tmp_path)
    assert check["replicas"] == 2
    assert check["initial"] == 0.0
    for step in ("mle_step", "discriminator_step", "adversarial_step"):
        assert check[step] < 1e-5, (step, check[step])
    # Each replica sampled its half of the batch with the whole batch's random numbers.
    assert check["samples_mirrored"] == check["samples_single"]
    # The rollout policy starts as an exact copy of the generator on every replica.
    assert check["rollout_copy_single"] == check["rollout_copy_mirrored"] == 0.0
    losses = check["losses"]
    for name in ("mle", "d", "d_accuracy", "pg", "mean_reward"):
        assert losses[f"{name}_mirrored"] == pytest.approx(losses[f"{name}_single"], abs=1e-5), name
    for label in ("mirrored_then_single", "single_then_mirrored"):
        assert check[label]["resumed_adversarial_steps"] == [0, 1, 2]
        assert check[label]["final_nll_oracle"] == pytest.approx(check["straight_final_nll_oracle"], abs=1e-4)


@pytest.mark.slow  # a subprocess with four tiny trainers: -m slow
def test_mirrored_over_two_cpus_matches_one_device_for_gumbel_and_wgan_gp(tmp_path):
    """One whole adversarial iteration of each new objective (G step through D, D or
    critic steps with the relativistic pairs) on two logical CPUs gives the
    single-device weights and losses."""
    check = helper_result("mirrored_objectives_check.py", tmp_path)
    assert check["replicas"] == 2
    for objective in ("gumbel", "wgan_gp"):
        run = check[objective]
        assert run["initial"] == 0.0
        assert run["moved_single"] > 1e-5 and run["moved_mirrored"] > 1e-5  # the iteration trained something
        assert run["after_iteration"] < 1e-6, (objective, run["after_iteration"])
        for name, value in run["metrics_single"].items():
            assert run["metrics_mirrored"][name] == pytest.approx(value, abs=1e-5), (objective, name)


@pytest.mark.slow  # XLA compiles of two objectives: -m slow
@pytest.mark.parametrize("objective", ["gumbel", "wgan_gp"])
def test_an_adversarial_iteration_of_the_new_objectives_runs_under_xla(tmp_path, objective):
    trainer = quiet_trainer(tmp_path, objective=objective, jit_compile=True, discriminator_steps=2, critic_steps=2)
    trainer.make_data()
    before = [w.numpy() for m in (trainer.generator, trainer.discriminator) for w in m.weights]
    trainer.objective.begin()
    metrics = trainer.objective.iteration(1)
    assert metrics and all(np.isfinite(v) for v in metrics.values()), metrics
    after = [w.numpy() for m in (trainer.generator, trainer.discriminator) for w in m.weights]
    moved = [not np.array_equal(a, b) for a, b in zip(after, before)]
    generator_weights = len(trainer.generator.weights)
    assert any(moved[:generator_weights]) and any(moved[generator_weights:])  # G and D (critic) both trained


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_two_workers_on_localhost_train_in_step(tmp_path):
    """MultiWorkerMirroredStrategy, two processes: every phase runs, both end with the
    same weights, and only the chief writes into the run directory."""
    run_dir = tmp_path / "run"
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    try:
        for index in range(2):
            env = environment()
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "main.py",
                        *TINY_FLAGS,
                        "--noplot",
                        "--strategy=multi_worker",
                        f"--run_dir={run_dir}",
                    ],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outputs = [process.communicate(timeout=TIMEOUT_S) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    digests = []
    for index, (process, (stdout, stderr)) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"worker {index}: {stderr[-3000:]}"
        assert f"worker_{index}" in stdout
        assert "[adversarial 2]" in stdout
        digests += [line.split(": ")[1] for line in stdout.splitlines() if line.startswith("weights sha256")]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert "run directory" in outputs[0][0] and "run directory" not in outputs[1][0]  # the report: chief only
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["phase"] == "adversarial"] == [0, 1, 2]  # one writer, no duplicates
    assert sorted(os.listdir(run_dir)) == sorted(
        [".lock", "checkpoints", "flags.cfg", "metrics.jsonl", "model.json", "report.txt", "tensorboard"]
    )


@pytest.mark.slow  # about 20 s of XLA compiles: -m slow
def test_every_step_compiles_under_xla(tmp_path):
    """--jit_compile: MLE, D, rewards, policy gradient, sampling and evaluation build
    with jit_compile=True on CPU; deterministic steps agree with the plain graph."""
    plain = quiet_trainer(tmp_path / "plain")
    xla = quiet_trainer(tmp_path / "xla", jit_compile=True)
    rng = np.random.default_rng(1)
    tokens = tf.constant(rng.integers(0, 20, (16, 6)), tf.int32)
    labels = tf.constant(rng.integers(0, 2, 16), tf.int32)
    seed = tf.constant([1, 2], tf.int64)
    for trainer in (plain, xla):
        trainer.mle_step(tokens)
    for a, b in zip(plain.generator.weights, xla.generator.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    assert xla.evaluator.mean_token_nll(tokens) == pytest.approx(plain.evaluator.mean_token_nll(tokens), abs=1e-5)
    # D's dropout draws other (still seeded) random numbers under XLA: only check it trains.
    before = [w.numpy() for w in xla.discriminator.trainable_weights]
    loss, accuracy = xla.discriminator_step(tokens, labels, seed)
    assert np.isfinite(float(loss)) and 0.0 <= float(accuracy) <= 1.0
    assert any(not np.array_equal(w.numpy(), b) for w, b in zip(xla.discriminator.trainable_weights, before))
    rewards = xla.objective.rewards(tokens, seed, xla.objective.real_batch())
    assert tuple(rewards.shape) == (16, 6)
    assert np.all((rewards.numpy() >= 0) & (rewards.numpy() <= 1))
    assert np.isfinite(float(xla.objective.policy_gradient_step(tokens, rewards)))
    samples = xla.sample(32, seed=[3, 4]).numpy()
    assert samples.shape == (32, 6) and samples.min() >= 0 and samples.max() < 20
    np.testing.assert_array_equal(xla.sample(32, seed=[3, 4]).numpy(), samples)  # seeded under XLA too


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_keeps_weights_logits_and_losses_in_float32(tmp_path, precision):
    trainer = quiet_trainer(tmp_path, mixed_precision=precision)
    assert trainer.generator.cell.compute_dtype == precision
    assert trainer.discriminator.convolutions[0].compute_dtype == precision
    for variable in trainer.generator.weights + trainer.discriminator.weights:
        assert variable.dtype == tf.float32, variable.name
    tokens = tf.constant(np.random.default_rng(2).integers(0, 20, (16, 6)), tf.int32)
    assert trainer.generator(tokens).dtype == tf.float32
    assert trainer.discriminator(tokens).dtype == tf.float32
    first = float(trainer.mle_step(tokens))
    for _ in range(20):
        last = float(trainer.mle_step(tokens))
    assert np.isfinite(last) and last < first
    loss, _ = trainer.discriminator_step(
        tokens, tf.constant(np.arange(16) % 2, tf.int32), tf.constant([1, 1], tf.int64)
    )
    assert np.isfinite(float(loss))
    assert (trainer.generator_loss_scale is not None) == (precision == "float16")


def test_loss_scale_halves_on_overflow_and_grows_after_a_run_of_finite_steps():
    scale = distribute.LossScale(initial_scale=8.0, growth_interval=3)
    for finite, expected in [(True, 8.0), (True, 8.0), (True, 16.0), (False, 8.0), (True, 8.0), (False, 4.0)]:
        scale.update(tf.constant(finite))
        assert float(scale.scale) == expected


def test_distributed_batches_keep_the_row_order_on_one_device():
    rows = tf.reshape(tf.range(40), [10, 4])
    batches = [b.numpy() for (b,) in distribute.distributed_batches(tf.distribute.get_strategy(), (rows,), 4)]
    assert len(batches) == 2  # the remainder of 2 rows is dropped
    np.testing.assert_array_equal(np.concatenate(batches), rows.numpy()[:8])


def test_an_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mixed_precision"):
        quiet_trainer(tmp_path, mixed_precision="float8")


def test_multi_worker_without_tf_config_is_a_one_line_error(tmp_path):
    env = environment()
    env.pop("TF_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "main.py", "--strategy=multi_worker", f"--run_dir={tmp_path}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: --strategy=multi_worker: the cluster must be given in the TF_CONFIG environment variable"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "flags, expected",
    [("fpu sse avx512f avx512_bf16 amx_tile", True), ("fpu sse amx_bf16", True), ("fpu sse avx2 avx512f", False)],
)
def test_bfloat16_matrix_units_are_read_from_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    assert distribute.cpu_has_bfloat16_matrix_units(str(cpuinfo)) is expected
    assert distribute.cpu_has_bfloat16_matrix_units(str(tmp_path / "missing")) is False


def test_reward_precision_resolves_per_flag_and_hardware():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert seqgan_objective.reward_dtype("float32", "", strategy) == tf.float32
    assert seqgan_objective.reward_dtype("bfloat16", "", strategy) == tf.bfloat16
    assert seqgan_objective.reward_dtype("auto", "float16", strategy) is None  # the compute dtype
    auto = seqgan_objective.reward_dtype("auto", "", strategy)
    assert auto == (tf.bfloat16 if distribute.cpu_has_bfloat16_matrix_units() else None)
    with pytest.raises(ValueError, match="--reward_precision=half"):
        seqgan_objective.reward_dtype("half", "", strategy)
