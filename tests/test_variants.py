"""The training variants: relativistic D losses and rewards, reward baselines,
the entropy bonus and teacher forcing, on hand-made inputs and in tiny runs."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import log_softmax, tiny_configs

from tfseqgan import losses
from tfseqgan.discriminator import Discriminator
from tfseqgan.generator import Generator
from tfseqgan.training.loop import Trainer

TIME = 6  # conftest.TINY_MODEL.sequence_length


def softplus(x):
    return np.log1p(np.exp(x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


# ------------------------------------------------------------ D losses
def test_rsgan_loss_of_hand_made_pairs():
    real, fake = np.array([2.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    expected = (softplus(0 - 2) + softplus(1 - 0)) / 2  # -log sigmoid(C(real) - C(fake)), per pair
    loss = losses.relativistic_discriminator_loss(real, fake, average=False)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # A replica's share: its sum over the global number of pairs.
    assert float(losses.relativistic_discriminator_loss(real, fake, False, total=4)) == pytest.approx(expected / 2)


def test_rasgan_loss_of_hand_made_pairs():
    real, fake = np.array([2.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    mean_real, mean_fake = 1.0, 0.5
    expected = (
        softplus(-(2 - mean_fake)) + softplus(-(0 - mean_fake)) + softplus(0 - mean_real) + softplus(1 - mean_real)
    ) / 4
    loss = losses.relativistic_discriminator_loss(real, fake, average=True)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_relativistic_losses_fall_as_real_is_ranked_higher():
    fake = np.zeros(3, np.float32)
    for average in (False, True):
        values = [
            float(losses.relativistic_discriminator_loss(fake + gap, fake, average)) for gap in (-2.0, 0.0, 2.0, 8.0)
        ]
        assert values == sorted(values, reverse=True)
        assert values[1] == pytest.approx(np.log(2.0), rel=1e-6)  # no preference: log 2


def test_relativistic_losses_are_finite_for_huge_critic_values():
    real, fake = np.array([-1e4, 1e4], np.float32), np.array([1e4, -1e4], np.float32)
    for average in (False, True):
        assert np.isfinite(float(losses.relativistic_discriminator_loss(real, fake, average)))


def test_discriminator_loss_pairs_alternate_real_and_fake():
    discriminator = Discriminator(20, TIME, embedding_dim=8, window_sizes=(2, 3), num_filters=(4, 4), l2_weight=0.1)
    tokens = tf.constant(np.random.default_rng(0).integers(0, 20, (8, TIME)), tf.int32)
    labels = tf.constant([1, 0] * 4, tf.int32)
    critic = discriminator.critic(tokens).numpy()
    for kind, average in (("relativistic", False), ("relativistic_average", True)):
        total, relativistic, _ = losses.discriminator_loss(discriminator, tokens, labels, training=False, kind=kind)
        expected = losses.relativistic_discriminator_loss(critic[0::2], critic[1::2], average)
        assert float(relativistic) == pytest.approx(float(expected), rel=1e-5)
        assert float(total) == pytest.approx(float(expected) + float(discriminator.regularization_loss()), rel=1e-5)


def test_critic_is_the_log_odds_of_real():
    discriminator = Discriminator(20, TIME, embedding_dim=8, window_sizes=(2, 3), num_filters=(4, 4))
    tokens = tf.constant(np.random.default_rng(1).integers(0, 20, (5, TIME)), tf.int32)
    np.testing.assert_allclose(
        sigmoid(discriminator.critic(tokens).numpy()), discriminator.real_probability(tokens).numpy(), rtol=1e-5
    )


def test_critic_of_completions_matches_the_critic_of_each_completion():
    discriminator = Discriminator(20, TIME, embedding_dim=8, window_sizes=(1, 2, 4), num_filters=(3, 4, 5))
    rng = np.random.default_rng(2)
    sequences = rng.integers(0, 20, (4, TIME)).astype(np.int32)
    completions = rng.integers(0, 20, (TIME - 1, 3, 4, TIME)).astype(np.int32)
    for t in range(1, TIME):
        completions[t - 1, :, :, :t] = sequences[:, :t]
    fast = discriminator.critic_of_completions(sequences, completions).numpy()
    plain = discriminator.critic(tf.constant(completions.reshape(-1, TIME))).numpy().reshape(fast.shape)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------- rewards
def test_standard_reward_is_p_real():
    critic = np.array([-1.0, 0.0, 3.0], np.float32)
    np.testing.assert_allclose(losses.rewards_from_critic("standard", critic, np.zeros(0, np.float32)), sigmoid(critic))


def test_relativistic_reward_compares_with_each_real_sequence_of_the_batch():
    critic = np.array([[0.0, 1.0]], np.float32)  # any shape: here (1, 2)
    real = np.array([0.0, 2.0], np.float32)
    expected = [[np.mean(sigmoid([0 - 0, 0 - 2])), np.mean(sigmoid([1 - 0, 1 - 2]))]]
    np.testing.assert_allclose(losses.rewards_from_critic("relativistic", critic, real), expected, rtol=1e-6)


def test_relativistic_average_reward_compares_with_the_mean_real_critic():
    critic = np.array([0.0, 1.0], np.float32)
    real = np.array([0.0, 2.0], np.float32)
    np.testing.assert_allclose(
        losses.rewards_from_critic("relativistic_average", critic, real), sigmoid([0 - 1, 1 - 1]), rtol=1e-6
    )


def test_unknown_d_loss_is_refused():
    with pytest.raises(ValueError, match="d_loss must be one of"):
        losses.rewards_from_critic("wasserstein", np.zeros(2, np.float32), np.zeros(2, np.float32))


# ----------------------------------------------------------- baselines
def test_batch_mean_per_position_skips_masked_rows():
    rewards = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    mask = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)
    np.testing.assert_allclose(losses.batch_mean_per_position(rewards, mask), [2.0, 2.0])
    np.testing.assert_allclose(losses.batch_mean_per_position(rewards), [2.0, 3.0])
    # The sums hook (an all-reduce over replicas) scales numerator and denominator alike.
    np.testing.assert_allclose(losses.batch_mean_per_position(rewards, mask, sums=lambda x: 3 * x), [2.0, 2.0])
    # A position no row reaches gets 0, not NaN.
    np.testing.assert_allclose(losses.batch_mean_per_position(rewards, np.zeros_like(mask)), [0.0, 0.0])


def test_moving_average_baseline_starts_at_the_first_batch_then_lags_it():
    batch_mean = np.array([3.0, 5.0], np.float32)
    used, average = losses.moving_average_baseline(np.zeros(2, np.float32), 0, batch_mean, 0.5)
    np.testing.assert_allclose(used, batch_mean)
    np.testing.assert_allclose(average, batch_mean)
    used, average = losses.moving_average_baseline(np.array([1.0, 1.0], np.float32), 3, batch_mean, 0.5)
    np.testing.assert_allclose(used, [1.0, 1.0])  # the batches before this one
    np.testing.assert_allclose(average, [2.0, 3.0])


# ------------------------------------------------------- entropy bonus
def test_entropy_of_logits():
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [50.0, 0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(losses.entropy_of_logits(logits), [np.log(4.0), 0.0], atol=1e-6)


@pytest.fixture(scope="module")
def small_generator():
    return Generator(12, TIME, embedding_dim=4, hidden_dim=8, seed=3)


def test_entropy_bonus_subtracts_the_mean_entropy(small_generator):
    tokens = tf.constant(np.random.default_rng(4).integers(0, 12, (3, TIME)), tf.int32)
    rewards = tf.constant(np.random.default_rng(5).random((3, TIME)), tf.float32)
    plain = float(losses.policy_gradient_loss(small_generator, tokens, rewards, training=False))
    with_bonus = float(losses.policy_gradient_loss(small_generator, tokens, rewards, False, entropy_bonus=0.3))
    log_probs = log_softmax(small_generator(tokens).numpy())
    entropy = -(np.exp(log_probs) * log_probs).sum(axis=-1).mean()
    assert with_bonus == pytest.approx(plain - 0.3 * entropy, rel=1e-5)


def test_entropy_bonus_alone_raises_the_entropy(small_generator):
    tokens = tf.constant(np.random.default_rng(6).integers(0, 12, (4, TIME)), tf.int32)
    zero = tf.zeros([4, TIME])
    generator = Generator.from_config(small_generator.get_config())
    for target, source in zip(generator.weights, small_generator.weights, strict=True):
        target.assign(source)

    def mean_entropy():
        return float(tf.reduce_mean(losses.entropy_of_logits(generator(tokens))))

    before = mean_entropy()
    with tf.GradientTape() as tape:
        loss = losses.policy_gradient_loss(generator, tokens, zero, training=False, entropy_bonus=1.0)
    gradients = tape.gradient(loss, generator.trainable_variables)
    for variable, gradient in zip(generator.trainable_variables, gradients, strict=True):
        variable.assign_sub(0.5 * tf.convert_to_tensor(gradient))
    assert mean_entropy() > before


# ------------------------------------------------------ in the trainer
def quiet_trainer(run_dir, **overrides):
    return Trainer(*tiny_configs(run_dir, **overrides), log=lambda *args: None)


def test_paired_batches_hold_whole_real_fake_pairs(tmp_path):
    trainer = quiet_trainer(tmp_path, d_loss="relativistic")
    positives = tf.fill([40, TIME], 1)
    negatives = tf.fill([50, TIME], 2)
    batches, count = trainer._paired_batches(positives, negatives)
    assert count == 80 // trainer.train_config.batch_size
    for tokens, labels in batches:
        np.testing.assert_array_equal(labels.numpy(), np.tile([1, 0], len(labels) // 2))
        np.testing.assert_array_equal(tokens.numpy()[:, 0], np.tile([1, 2], len(labels) // 2))


@pytest.mark.parametrize("d_loss", ["relativistic", "relativistic_average"])
def test_relativistic_runs_train_and_reward_in_unit_interval(tmp_path, d_loss):
    trainer = quiet_trainer(tmp_path, d_loss=d_loss, adversarial_iterations=1, reward_precision="float32")
    history = trainer.run()
    assert np.isfinite(history[-1]["d_loss"])
    samples = trainer.generate(tf.constant(8, tf.int32), tf.constant([1, 2], tf.int64))
    reals = trainer.objective.real_batch()
    assert reals.shape[0] == trainer.train_config.batch_size
    rewards = trainer.objective.rewards(samples, tf.constant([3, 4], tf.int64), reals).numpy()
    assert rewards.shape == (8, TIME) and np.all((rewards >= 0) & (rewards <= 1))
    # The last position's reward is the whole sequence's, relative to the same reals.
    critic = trainer.discriminator.critic(samples)
    expected = losses.rewards_from_critic(d_loss, critic, trainer.discriminator.critic(reals))
    np.testing.assert_allclose(rewards[:, -1], expected.numpy(), rtol=1e-5)


def test_moving_average_baseline_is_updated_by_each_policy_gradient_step(tmp_path):
    trainer = quiet_trainer(tmp_path, reward_baseline="moving_average", baseline_decay=0.5)
    tokens = tf.constant(np.random.default_rng(7).integers(0, 20, (8, TIME)), tf.int32)
    first, second = tf.fill([8, TIME], 0.2), tf.fill([8, TIME], 0.6)
    trainer.objective.policy_gradient_step(tokens, first)
    np.testing.assert_allclose(trainer.objective.reward_baseline.numpy(), np.full(TIME, 0.2), rtol=1e-6)
    trainer.objective.policy_gradient_step(tokens, second)
    np.testing.assert_allclose(trainer.objective.reward_baseline.numpy(), np.full(TIME, 0.4), rtol=1e-6)
    assert int(trainer.objective.baseline_batches) == 2
    trainer.mle_step(tokens)  # MLE steps leave it alone
    assert int(trainer.objective.baseline_batches) == 2


def test_a_batch_mean_baseline_makes_constant_rewards_a_zero_step(tmp_path):
    trainer = quiet_trainer(tmp_path, reward_baseline="batch_mean")
    before = [v.numpy().copy() for v in trainer.generator.trainable_variables]
    tokens = tf.constant(np.random.default_rng(8).integers(0, 20, (8, TIME)), tf.int32)
    loss = float(trainer.objective.policy_gradient_step(tokens, tf.fill([8, TIME], 0.5)))  # an exact mean
    assert loss == pytest.approx(0.0, abs=1e-6)  # every advantage is 0
    for old, variable in zip(before, trainer.generator.trainable_variables, strict=True):
        np.testing.assert_array_equal(variable.numpy(), old)


def test_teacher_forcing_runs_mle_steps_between_policy_gradient_steps(tmp_path):
    trainer = quiet_trainer(tmp_path, teacher_forcing_steps=2, adversarial_iterations=2)
    history = trainer.run()
    pretraining_steps = trainer.train_config.mle_epochs * (
        trainer.oracle_config.num_real_samples // trainer.train_config.batch_size
    )
    iterations = trainer.train_config.adversarial_iterations * trainer.train_config.generator_steps
    assert int(trainer.mle_optimizer.iterations) == pretraining_steps + 2 * iterations
    assert np.isfinite(history[-1]["teacher_forcing_loss"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"d_loss": "wasserstein"}, "--d_loss=wasserstein"),
        ({"reward_baseline": "median"}, "--reward_baseline=median"),
        ({"baseline_decay": 1.0}, "--baseline_decay=1.0"),
        ({"d_loss": "relativistic", "batch_size": 7}, "even number of rows"),
    ],
)
def test_impossible_variant_settings_are_refused(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        quiet_trainer(tmp_path, **overrides)
