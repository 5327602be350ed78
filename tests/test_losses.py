"""Losses: values against hand computation, gradient routing, and that training moves them the right way."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import log_softmax, new_generator

from tfseqgan import losses
from tfseqgan.discriminator import Discriminator

VOCAB, TIME = 10, 5


@pytest.fixture
def generator():
    return new_generator(VOCAB, TIME, 4, 6, init_stddev=0.5, seed=7)


def tokens_of(seed, batch=4):
    return tf.constant(np.random.default_rng(seed).integers(0, VOCAB, (batch, TIME)).astype(np.int32))


def hand_log_probs(generator, tokens):
    """log softmax of a `step` loop (start token, then tokens[:, :-1]) gathered at tokens, in NumPy."""
    tokens = np.asarray(tokens)
    state = generator.initial_state(tokens.shape[0])
    inputs = tf.fill([tokens.shape[0]], generator.start_token)
    out = []
    for t in range(tokens.shape[1]):
        logits, state = generator.step(inputs, state)
        out.append(log_softmax(logits.numpy())[np.arange(tokens.shape[0]), tokens[:, t]])
        inputs = tf.constant(tokens[:, t])
    return np.stack(out, 1)


def test_mle_loss_is_mean_negative_log_softmax(generator):
    tokens = tokens_of(0)
    expected = -hand_log_probs(generator, tokens).mean()
    np.testing.assert_allclose(float(losses.mle_loss(generator, tokens)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(losses.mle_loss(generator, tokens, training=False)), expected, rtol=1e-5)


def test_mle_loss_of_uniform_model_is_log_vocab(generator):
    generator.output_layer.kernel.assign(tf.zeros_like(generator.output_layer.kernel))
    generator.output_layer.bias.assign(tf.zeros_like(generator.output_layer.bias))
    np.testing.assert_allclose(float(losses.mle_loss(generator, tokens_of(1))), np.log(VOCAB), rtol=1e-6)


def test_policy_gradient_loss_value(generator):
    tokens = tokens_of(2)
    rewards = np.random.default_rng(3).uniform(-1, 1, (4, TIME)).astype(np.float32)
    expected = -np.mean(hand_log_probs(generator, tokens) * rewards)
    np.testing.assert_allclose(
        float(losses.policy_gradient_loss(generator, tokens, tf.constant(rewards))), expected, rtol=1e-5
    )


def test_policy_gradient_loss_gradient_does_not_flow_into_rewards(generator):
    tokens = tokens_of(4)
    rewards = tf.Variable(np.full((4, TIME), 0.5, np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(rewards)
        loss = losses.policy_gradient_loss(generator, tokens, rewards * 1.0)
    assert tape.gradient(loss, rewards) is None
    gradients = tape.gradient(loss, generator.trainable_variables)
    assert all(g is not None for g in gradients)
    assert any(float(tf.reduce_max(tf.abs(tf.convert_to_tensor(g)))) > 0 for g in gradients)


def test_policy_gradient_loss_with_unit_rewards_is_mle_loss(generator):
    tokens = tokens_of(5)
    np.testing.assert_allclose(
        float(losses.policy_gradient_loss(generator, tokens, tf.ones([4, TIME]))),
        float(losses.mle_loss(generator, tokens)),
        rtol=1e-6,
    )


def small_discriminator(l2_weight=0.2):
    return Discriminator(
        VOCAB, TIME, embedding_dim=6, window_sizes=(1, 2, 3), num_filters=(4, 4, 4), seed=3, l2_weight=l2_weight
    )


def test_discriminator_loss_includes_output_layer_l2():
    discriminator = small_discriminator(l2_weight=0.2)
    kernel = np.linspace(-1.0, 1.0, discriminator.output_layer.kernel.shape[0] * 2, dtype=np.float32).reshape(-1, 2)
    discriminator.output_layer.kernel.assign(kernel)
    discriminator.output_layer.bias.assign([0.5, -1.5])
    tokens = tokens_of(6, batch=6)
    labels = tf.constant([1, 0, 1, 1, 0, 0])
    total, cross_entropy, logits = losses.discriminator_loss(discriminator, tokens, labels, training=False)
    l2 = 0.2 * (np.sum(kernel.astype(np.float64) ** 2) + 0.25 + 2.25) / 2
    np.testing.assert_allclose(float(total) - float(cross_entropy), l2, rtol=1e-5)
    expected_ce = -np.mean(log_softmax(logits.numpy())[np.arange(6), labels.numpy()])
    np.testing.assert_allclose(float(cross_entropy), expected_ce, rtol=1e-5)


def test_discriminator_loss_with_known_logits():
    """Zero kernel: the logits are the bias, so the whole loss is computable by hand."""
    discriminator = small_discriminator(l2_weight=0.2)
    discriminator.output_layer.kernel.assign(tf.zeros_like(discriminator.output_layer.kernel))
    discriminator.output_layer.bias.assign([1.0, -2.0])
    labels = tf.constant([1, 1, 0, 1])
    total, cross_entropy, logits = losses.discriminator_loss(discriminator, tokens_of(7), labels, training=True)
    np.testing.assert_allclose(logits.numpy(), np.tile([1.0, -2.0], (4, 1)), atol=1e-6)
    row = log_softmax(np.array([1.0, -2.0]))
    expected_ce = -(3 * row[1] + row[0]) / 4
    np.testing.assert_allclose(float(cross_entropy), expected_ce, rtol=1e-6)
    np.testing.assert_allclose(float(total), expected_ce + 0.2 * (1.0 + 4.0) / 2, rtol=1e-6)


def test_discriminator_loss_is_finite_with_huge_logits():
    discriminator = small_discriminator(l2_weight=0.0)
    discriminator.output_layer.kernel.assign(tf.zeros_like(discriminator.output_layer.kernel))
    discriminator.output_layer.bias.assign([1e4, -1e4])
    labels = tf.constant([1, 0])
    with tf.GradientTape() as tape:
        total, cross_entropy, _ = losses.discriminator_loss(discriminator, tokens_of(8, batch=2), labels)
    assert np.isfinite(float(total))
    # One row is confidently wrong by 2e4 nats, the other right: mean 1e4 (log(softmax) would give inf).
    np.testing.assert_allclose(float(cross_entropy), 1e4, rtol=1e-6)
    gradients = tape.gradient(total, discriminator.trainable_variables)
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in gradients if g is not None)


# ------------------------------------------------------------------ learning
CORPUS = np.array([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [7, 7, 8, 8, 9], [0, 9, 0, 9, 0]], np.int32)


def test_mle_training_lowers_the_loss(generator):
    optimizer = keras.optimizers.Adam(0.05)
    tokens = tf.constant(CORPUS)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = losses.mle_loss(generator, tokens)
        optimizer.apply_gradients(
            zip(tape.gradient(loss, generator.trainable_variables), generator.trainable_variables)
        )
        return loss

    initial = float(losses.mle_loss(generator, tokens))
    for _ in range(60):
        train_step()
    final = float(losses.mle_loss(generator, tokens))
    assert initial > 2.0  # about log(10) at the start
    assert final < 0.5 * initial


@pytest.mark.parametrize("reward, direction", [(1.0, +1), (-1.0, -1)])
def test_policy_gradient_step_moves_log_probability_with_the_reward(generator, reward, direction):
    tokens = tf.constant(CORPUS[:1])
    rewards = tf.fill([1, TIME], reward)
    optimizer = keras.optimizers.SGD(0.5)
    before = float(tf.reduce_sum(generator.token_log_probs(tokens)))
    with tf.GradientTape() as tape:
        loss = losses.policy_gradient_loss(generator, tokens, rewards)
    optimizer.apply_gradients(zip(tape.gradient(loss, generator.trainable_variables), generator.trainable_variables))
    after = float(tf.reduce_sum(generator.token_log_probs(tokens)))
    assert direction * (after - before) > 0.05
