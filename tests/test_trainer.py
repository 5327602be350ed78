"""Trainer on a tiny schedule: compiled steps, a whole run, resume, determinism, NaN handling."""

import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_configs

from tfseqgan import losses, metrics
from tfseqgan.training.loop import Trainer, TrainingError

TIME = 6  # conftest.TINY_MODEL.sequence_length
VOCAB = 20


def quiet_trainer(run_dir, resume=False, **overrides):
    return Trainer(*tiny_configs(run_dir, resume, **overrides), log=lambda *args: None)


def without_timings(records):
    return [{k: v for k, v in record.items() if not k.endswith("_seconds")} for record in records]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One complete tiny run (2 adversarial iterations), shared read-only by the tests below."""
    run_dir = tmp_path_factory.mktemp("finished_run")
    trainer = quiet_trainer(run_dir)
    history = trainer.run()
    return trainer, run_dir, history


@pytest.fixture(scope="module")
def resumed_run(finished_run, tmp_path_factory):
    """A copy of `finished_run` resumed to 3 adversarial iterations."""
    run_dir = tmp_path_factory.mktemp("resumed_run") / "run"
    shutil.copytree(finished_run[1], run_dir)
    trainer = quiet_trainer(run_dir, resume=True, adversarial_iterations=3)
    return trainer, run_dir, trainer.run()


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """The same seed and schedule as `resumed_run`, in one go, in another directory."""
    run_dir = tmp_path_factory.mktemp("uninterrupted_run")
    trainer = quiet_trainer(run_dir, adversarial_iterations=3)
    return trainer, run_dir, trainer.run()


def tokens_of(batch, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, VOCAB, (batch, TIME)).astype(np.int32))


def test_steps_do_not_retrace_across_batch_sizes(tmp_path):
    trainer = quiet_trainer(tmp_path)
    seed = tf.constant([1, 2], tf.int64)
    for batch in (16, 8, 16):
        tokens = tokens_of(batch, seed=batch)
        loss = trainer.mle_step(tokens)
        assert np.isfinite(float(loss))
        d_loss, accuracy = trainer.discriminator_step(tokens, tf.constant(np.arange(batch) % 2, tf.int32), seed)
        assert np.isfinite(float(d_loss)) and 0.0 <= float(accuracy) <= 1.0
        pg_loss = trainer.objective.policy_gradient_step(tokens, tf.fill([batch, TIME], 0.5))
        assert np.isfinite(float(pg_loss))
        rewards = trainer.objective.rewards(tokens, seed, trainer.objective.real_batch())
        assert tuple(rewards.shape) == (batch, TIME)
        samples = trainer.generate(tf.constant(batch, tf.int32), seed)
        assert tuple(samples.shape) == (batch, TIME)
        assert tuple(trainer.real_probability(tokens).shape) == (batch,)
    trainer.objective.update_rollout()
    trainer.objective.update_rollout()
    for name in (
        "mle_step",
        "discriminator_step",
        "policy_gradient_step",
        "rewards",
        "generate",
        "real_probability",
        "update_rollout",
    ):
        owner = trainer if hasattr(trainer, name) else trainer.objective  # the shared steps, or SeqGAN's
        assert getattr(owner, name).experimental_get_tracing_count() == 1, name


def test_mle_step_lowers_the_loss(tmp_path):
    trainer = quiet_trainer(tmp_path)
    tokens = tokens_of(4, seed=3)
    first = float(trainer.mle_step(tokens))
    for _ in range(40):
        last = float(trainer.mle_step(tokens))
    assert last < 0.5 * first


def test_discriminator_step_learns_to_separate(tmp_path):
    trainer = quiet_trainer(tmp_path, discriminator_learning_rate=1e-2)
    real = np.random.default_rng(0).integers(0, 10, (8, TIME))
    fake = np.random.default_rng(1).integers(10, 20, (8, TIME))
    tokens = tf.constant(np.concatenate([real, fake]).astype(np.int32))
    labels = tf.constant([1] * 8 + [0] * 8, tf.int32)
    for step in range(30):
        trainer.discriminator_step(tokens, labels, tf.constant([5, step], tf.int64))
    probability = trainer.real_probability(tokens).numpy()
    assert probability[:8].min() > 0.5 > probability[8:].max()


def test_update_rollout_uses_the_configured_rate(tmp_path):
    trainer = quiet_trainer(tmp_path, rollout_update_rate=0.25)
    tokens = tokens_of(8, seed=4)
    for _ in range(3):
        trainer.mle_step(tokens)  # theta moves, beta stays
    beta = [w.numpy() for w in trainer.objective.rollout_policy.weights]
    theta = [w.numpy() for w in trainer.generator.weights]
    assert not np.allclose(beta[0], theta[0])
    trainer.objective.update_rollout()
    for new, old, current in zip(trainer.objective.rollout_policy.weights, beta, theta):
        np.testing.assert_allclose(new.numpy(), 0.25 * old + 0.75 * current, rtol=1e-6, atol=1e-6)


def test_run_end_to_end(finished_run):
    trainer, run_dir, history = finished_run
    path = run_dir / "metrics.jsonl"
    assert path.is_file()
    records = metrics.read_metrics(str(path))
    assert records == history
    assert {r["phase"] for r in records} == {"mle", "discriminator", "adversarial"}
    steps = {
        phase: [r["step"] for r in records if r["phase"] == phase] for phase in ("mle", "discriminator", "adversarial")
    }
    assert steps == {"mle": [0, 1, 2], "discriminator": [1], "adversarial": [0, 1, 2]}
    for record in records:
        assert math.isfinite(record["nll_oracle"]) and record["nll_oracle"] > 0
        assert math.isfinite(record["nll_test"]) and record["nll_test"] > 0
        assert 0.0 <= record["d_accuracy_real"] <= 1.0
    adversarial = [r for r in records if r["phase"] == "adversarial" and r["step"] > 0]
    assert all(0.0 <= r["mean_reward"] <= 1.0 and math.isfinite(r["g_loss"]) for r in adversarial)
    # MLE training helps: the test-set NLL falls during pre-training.
    mle = [r for r in records if r["phase"] == "mle"]
    assert mle[-1]["nll_test"] < mle[0]["nll_test"]
    checkpoints = run_dir / "checkpoints"
    assert checkpoints.is_dir()
    assert trainer.checkpoint_manager.latest_checkpoint is not None
    assert any(name.endswith(".index") for name in os.listdir(checkpoints))
    assert (int(trainer.mle_epoch), int(trainer.discriminator_round), int(trainer.adversarial_iteration)) == (2, 1, 2)
    # The oracle data are disjoint draws of the configured sizes.
    assert tuple(trainer.real_data.shape) == (128, TIME) and tuple(trainer.test_data.shape) == (64, TIME)
    assert not np.array_equal(trainer.real_data.numpy()[:64], trainer.test_data.numpy())


def saved_state(trainer):
    """Every checkpointed value, keyed by owner and index (Keras may number the variable paths differently)."""
    state = {}
    for name in ("generator", "rollout_policy", "discriminator"):
        for index, weight in enumerate(trainer.checkpointed[name].weights):
            state[f"{name}/{index}"] = np.asarray(weight)
    for name in ("mle_optimizer", "pg_optimizer", "discriminator_optimizer"):
        for index, variable in enumerate(trainer.checkpointed[name].variables):
            state[f"{name}/{index}"] = np.asarray(variable)
    state["rng"] = trainer.rng.state.numpy()
    for name in ("mle_epoch", "discriminator_round", "adversarial_iteration"):
        state[name] = int(getattr(trainer, name))
    return state


def test_resume_restores_every_variable(finished_run):
    trainer, run_dir, _ = finished_run
    expected = saved_state(trainer)
    resumed = quiet_trainer(run_dir, resume=True, adversarial_iterations=4)
    before = saved_state(resumed)
    assert before.keys() == expected.keys()
    assert before["mle_epoch"] == 0
    differing = [k for k in expected if not np.array_equal(before[k], expected[k])]
    assert any(k.startswith("generator/") for k in differing)  # the comparison below has power
    assert resumed.restore_or_start() == trainer.checkpoint_manager.latest_checkpoint
    after = saved_state(resumed)
    for key, value in expected.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert after["mle_epoch"] == 2 and after["discriminator_round"] == 1 and after["adversarial_iteration"] == 2


def test_resume_takes_the_learning_rates_of_the_new_flags(finished_run):
    # Keras keeps the learning rate in an optimizer variable, which the checkpoint restores.
    _, run_dir, _ = finished_run
    resumed = quiet_trainer(
        run_dir,
        resume=True,
        generator_learning_rate=0.02,
        policy_gradient_learning_rate=0.003,
        discriminator_learning_rate=0.0005,
    )
    resumed.restore_or_start()
    assert float(resumed.mle_optimizer.learning_rate) == pytest.approx(0.02)
    assert float(resumed.objective.pg_optimizer.learning_rate) == pytest.approx(0.003)
    assert float(resumed.discriminator_optimizer.learning_rate) == pytest.approx(0.0005)


def test_discriminator_dropout_is_driven_by_the_checkpointed_rng(finished_run):
    # Dropout masks come from seeds drawn from trainer.rng (which the checkpoint
    # holds), never from an untracked Keras SeedGenerator state.
    trainer, run_dir, _ = finished_run
    resumed = quiet_trainer(run_dir, resume=True, adversarial_iterations=4)
    resumed.restore_or_start()
    np.testing.assert_array_equal(resumed.rng.state.numpy(), trainer.rng.state.numpy())
    tokens = tokens_of(8, seed=9)
    labels = tf.constant(np.arange(8) % 2, tf.int32)
    seed = tf.constant([3, 4], tf.int64)
    first = losses.discriminator_loss(trainer.discriminator, tokens, labels, training=True, dropout_seed=seed)
    again = losses.discriminator_loss(trainer.discriminator, tokens, labels, training=True, dropout_seed=seed)
    np.testing.assert_array_equal(first[2].numpy(), again[2].numpy())
    other = losses.discriminator_loss(
        trainer.discriminator, tokens, labels, training=True, dropout_seed=tf.constant([3, 5], tf.int64)
    )
    assert not np.array_equal(first[2].numpy(), other[2].numpy())


def test_resumed_run_matches_uninterrupted_run(resumed_run, uninterrupted_run):
    resumed, uninterrupted = resumed_run[2], uninterrupted_run[2]
    assert [(r["phase"], r["step"]) for r in resumed] == [(r["phase"], r["step"]) for r in uninterrupted]
    assert without_timings(resumed) == without_timings(uninterrupted)


def test_resume_continues_the_schedule(finished_run, resumed_run):
    history = finished_run[2]
    resumed, run_dir, records = resumed_run
    assert int(resumed.adversarial_iteration) == 3
    # The old records are kept once, the new iteration is appended; nothing is repeated.
    assert records[: len(history)] == history
    assert [(r["phase"], r["step"]) for r in records[len(history) :]] == [("adversarial", 3)]
    assert metrics.read_metrics(str(run_dir / "metrics.jsonl")) == records


def test_existing_run_without_resume_is_refused(finished_run):
    _, run_dir, history = finished_run
    trainer = quiet_trainer(run_dir, resume=False)
    with pytest.raises(TrainingError, match="--resume"):
        trainer.restore_or_start()
    with pytest.raises(TrainingError, match="--resume"):
        trainer.run()
    # The refused run touched nothing.
    assert metrics.read_metrics(str(run_dir / "metrics.jsonl")) == history


def test_same_seed_gives_identical_metrics(finished_run, tmp_path):
    quiet_trainer(tmp_path).run()
    first = metrics.read_metrics(str(finished_run[1] / "metrics.jsonl"))
    second = metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
    assert len(first) == len(second) == 7
    assert without_timings(first) == without_timings(second)
    # The timings were there to exclude (the comparison is not of empty records).
    assert all("eval_seconds" in record for record in second)


def test_nan_generator_weight_stops_mle_with_a_clear_error(tmp_path):
    trainer = quiet_trainer(tmp_path)
    bias = trainer.generator.output_layer.bias
    bias.assign(tf.fill(bias.shape, float("nan")))
    with pytest.raises(TrainingError) as error:
        trainer.run()
    message = str(error.value)
    assert "mle" in message
    assert "last good checkpoint" in message.lower()
    assert "nan" in message.lower()
    # Stopped without saving the broken state.
    assert trainer.checkpoint_manager.latest_checkpoint is None


def test_nan_in_adversarial_phase_names_the_last_good_checkpoint(tmp_path):
    trainer = quiet_trainer(tmp_path)
    calls = []

    def nan_policy_gradient_step(tokens, rewards):
        calls.append(tokens.shape[0])
        return tf.constant(float("nan"))

    trainer.objective.policy_gradient_step = nan_policy_gradient_step
    with pytest.raises(TrainingError) as error:
        trainer.run()
    assert calls == [16]
    message = str(error.value)
    latest = trainer.checkpoint_manager.latest_checkpoint
    assert latest is not None
    assert "adversarial" in message
    assert "last good checkpoint" in message.lower()
    assert latest in message
    assert os.path.exists(latest + ".index")
    assert int(trainer.adversarial_iteration) == 0
    # The failed iteration wrote no record.
    records = metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
    assert not [r for r in records if r["phase"] == "adversarial" and r["step"] > 0]


def test_oracle_file_of_the_wrong_size_is_refused(oracle_path, tmp_path):
    """The paper's oracle is 5000 x 32 x 32; the tiny model asks for a vocabulary of 20."""
    import dataclasses

    model, oracle_config, train, run = tiny_configs(tmp_path)
    oracle_config = dataclasses.replace(oracle_config, weights_path=str(oracle_path))
    with pytest.raises(ValueError) as error:
        Trainer(model, oracle_config, train, run, log=lambda *args: None)
    assert str(oracle_path) in str(error.value)
    assert "5000" in str(error.value) and "20" in str(error.value)


def test_a_non_finite_loss_leaves_weights_and_optimizer_untouched(tmp_path):
    trainer = quiet_trainer(tmp_path)
    bias = trainer.generator.output_layer.bias
    bias.assign(tf.tensor_scatter_nd_update(bias, [[0]], [np.inf]))
    before = [v.numpy().copy() for v in trainer.generator.trainable_variables]
    iterations = int(trainer.mle_optimizer.iterations)
    loss = trainer.mle_step(tokens_of(8, seed=5))
    assert not np.isfinite(float(loss))
    assert int(trainer.mle_optimizer.iterations) == iterations
    for value, variable in zip(before, trainer.generator.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_bfloat16_rewards_stay_near_float32_rewards(tmp_path):
    """--reward_precision changes only the precision D scores the same rollouts in."""
    rewards = {}
    for precision in ("float32", "bfloat16"):
        trainer = quiet_trainer(tmp_path / precision, reward_precision=precision)
        trainer.make_data()
        tokens = tokens_of(16, seed=3)
        rewards[precision] = trainer.objective.rewards(
            tokens, tf.constant([5, 6], tf.int64), trainer.objective.real_batch()
        ).numpy()
    assert trainer.objective.reward_dtype == tf.bfloat16
    difference = np.abs(rewards["bfloat16"] - rewards["float32"])
    assert difference.max() < 0.01 and difference.max() > 0  # bfloat16 round-off, not another computation
    assert np.std(rewards["float32"]) > 1e-3


def test_an_unknown_reward_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--reward_precision=float8"):
        quiet_trainer(tmp_path, reward_precision="float8")


def test_resume_of_a_directory_without_checkpoints_says_a_new_run_starts(tmp_path):
    lines = []
    run_dir = tmp_path / "mistyped"
    trainer = Trainer(*tiny_configs(run_dir, True), log=lines.append)
    assert trainer.restore_or_start() is None
    assert lines == [f"--resume: nothing to resume in {run_dir} (no checkpoint); a new run starts"]
    fresh = []
    Trainer(*tiny_configs(tmp_path / "fresh", False), log=fresh.append).restore_or_start()
    assert fresh == []  # without --resume there is nothing to say


def test_the_checkpoint_holds_the_objects_the_steps_train(tmp_path):
    trainer = quiet_trainer(tmp_path)
    seqgan = trainer.objective
    held = trainer.checkpointed
    for name, live in (
        ("generator", trainer.generator),
        ("discriminator", trainer.discriminator),
        ("mle_optimizer", trainer.mle_optimizer),
        ("discriminator_optimizer", trainer.discriminator_optimizer),
        ("rng", trainer.rng),
        ("rollout_policy", seqgan.rollout_policy),
        ("pg_optimizer", seqgan.pg_optimizer),
        ("reward_baseline", seqgan.reward_baseline),
        ("baseline_batches", seqgan.baseline_batches),
        ("rollout_started", seqgan.rollout_started),
    ):
        assert held[name] is live, name
    # The policy-gradient step updates what the checkpoint holds.
    before = [w.numpy().copy() for w in held["generator"].trainable_variables]
    seqgan.policy_gradient_step(tokens_of(8, seed=1), tf.fill([8, TIME], 0.5))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, held["generator"].trainable_variables))
    assert int(held["pg_optimizer"].iterations) == 1 and int(held["mle_optimizer"].iterations) == 0
