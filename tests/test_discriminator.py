"""Discriminator: shapes, P(real), dropout only in training, validation, serialization."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import softmax

from tfseqgan.discriminator import Discriminator, Highway

VOCAB, TIME, BATCH = 12, 6, 5
WINDOWS, FILTERS = (1, 2, 3), (4, 6, 8)


def new_discriminator(seed=1, **kwargs):
    kwargs = dict(embedding_dim=8, window_sizes=WINDOWS, num_filters=FILTERS, seed=seed) | kwargs
    return Discriminator(VOCAB, TIME, **kwargs)


def random_tokens(seed=0, batch=BATCH):
    return tf.constant(np.random.default_rng(seed).integers(0, VOCAB, (batch, TIME)).astype(np.int32))


def test_call_shape_and_real_probability():
    discriminator = new_discriminator()
    tokens = random_tokens()
    logits = discriminator(tokens)
    assert tuple(logits.shape) == (BATCH, 2)
    assert logits.dtype == tf.float32
    probability = discriminator.real_probability(tokens).numpy()
    assert probability.shape == (BATCH,)
    assert np.all((probability >= 0.0) & (probability <= 1.0))
    # Index 1 of the softmax is "real".
    np.testing.assert_allclose(probability, softmax(logits.numpy())[:, 1], atol=1e-6)


def test_real_probability_stays_in_unit_interval_with_huge_logits():
    discriminator = new_discriminator()
    discriminator.output_layer.kernel.assign(tf.zeros_like(discriminator.output_layer.kernel))
    for bias, expected in (([0.0, 1e4], 1.0), ([1e4, 0.0], 0.0)):
        discriminator.output_layer.bias.assign(bias)
        probability = discriminator.real_probability(random_tokens()).numpy()
        assert np.all(np.isfinite(probability))
        np.testing.assert_allclose(probability, expected, atol=1e-6)


def test_dropout_only_in_training():
    discriminator = new_discriminator(dropout_rate=0.5)
    tokens = random_tokens(batch=8)
    inference = [discriminator(tokens, training=False).numpy() for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    training = [discriminator(tokens, training=True).numpy() for _ in range(2)]
    assert not np.allclose(training[0], inference[0])
    assert not np.allclose(training[0], training[1])


def test_output_depends_on_tokens():
    discriminator = new_discriminator()
    a = discriminator.real_probability(random_tokens(seed=1)).numpy()
    b = discriminator.real_probability(random_tokens(seed=2)).numpy()
    assert not np.allclose(a, b)


def test_window_as_long_as_the_sequence_is_allowed():
    discriminator = Discriminator(VOCAB, TIME, embedding_dim=4, window_sizes=(TIME,), num_filters=(3,), seed=0)
    assert tuple(discriminator(random_tokens()).shape) == (BATCH, 2)


@pytest.mark.parametrize(
    "window_sizes, num_filters, message",
    [((1, 2), (4,), "num_filters"), ((1, TIME + 1), (4, 4), "exceeds sequence_length")],
)
def test_invalid_windows_raise(window_sizes, num_filters, message):
    with pytest.raises(ValueError, match=message):
        Discriminator(VOCAB, TIME, window_sizes=window_sizes, num_filters=num_filters)


def test_regularization_loss_is_half_l2_of_output_layer():
    discriminator = new_discriminator(l2_weight=0.2)
    kernel = np.arange(discriminator.output_layer.kernel.shape[0] * 2, dtype=np.float32).reshape(-1, 2) / 10
    discriminator.output_layer.kernel.assign(kernel)
    discriminator.output_layer.bias.assign([1.0, -3.0])
    expected = 0.2 * (np.sum(kernel.astype(np.float64) ** 2) + 1.0 + 9.0) / 2
    np.testing.assert_allclose(float(discriminator.regularization_loss()), expected, rtol=1e-6)


def test_get_config_round_trip():
    discriminator = new_discriminator(dropout_rate=0.3, l2_weight=0.5)
    config = discriminator.get_config()
    assert tuple(config["window_sizes"]) == WINDOWS
    assert tuple(config["num_filters"]) == FILTERS
    assert config["dropout_rate"] == 0.3 and config["l2_weight"] == 0.5
    copy = Discriminator.from_config(config)
    assert isinstance(copy, Discriminator)
    assert [tuple(w.shape) for w in copy.weights] == [tuple(w.shape) for w in discriminator.weights]
    assert tuple(copy(random_tokens()).shape) == (BATCH, 2)
    assert copy.window_sizes == WINDOWS and copy.num_filters == FILTERS
    # Same seed: the same initial weights and outputs.
    np.testing.assert_allclose(copy(random_tokens()).numpy(), discriminator(random_tokens()).numpy(), atol=1e-6)


def test_highway_get_config_round_trip():
    layer = Highway(gate_bias=-2.0, seed=3)
    layer.build((None, 5))
    copy = Highway.from_config(layer.get_config())
    copy.build((None, 5))
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32))
    np.testing.assert_allclose(copy(x).numpy(), layer(x).numpy(), atol=1e-6)
    np.testing.assert_array_equal(copy.gate.bias.numpy(), -2.0)


def test_checkpoint_round_trip(tmp_path):
    discriminator = new_discriminator(seed=1)
    tokens = random_tokens()
    path = tf.train.Checkpoint(model=discriminator).save(str(tmp_path / "ckpt"))
    fresh = new_discriminator(seed=2)
    tf.train.Checkpoint(model=fresh).restore(path)
    for conv, fresh_conv in zip(discriminator.convolutions, fresh.convolutions):
        np.testing.assert_array_equal(fresh_conv.kernel.numpy(), conv.kernel.numpy())
    np.testing.assert_array_equal(fresh(tokens).numpy(), discriminator(tokens).numpy())


@pytest.mark.parametrize("window_sizes, num_filters", [(WINDOWS, FILTERS), ((1, 4, TIME), (3, 5, 7))])
def test_real_probability_of_completions_matches_scoring_each_completion(window_sizes, num_filters):
    """Prefix reuse (and the one-window MatMul when a window spans the input) changes round-off only."""
    discriminator = new_discriminator(window_sizes=window_sizes, num_filters=num_filters)
    num_rollouts, batch = 3, 4
    rng = np.random.default_rng(7)
    sequences = rng.integers(0, VOCAB, (batch, TIME)).astype(np.int32)
    completions = rng.integers(0, VOCAB, (TIME - 1, num_rollouts, batch, TIME)).astype(np.int32)
    for t in range(1, TIME):
        completions[t - 1, :, :, :t] = sequences[:, :t]
    fast = discriminator.real_probability_of_completions(sequences, completions).numpy()
    assert fast.shape == (TIME - 1, num_rollouts, batch)
    plain = discriminator.real_probability(tf.constant(completions.reshape(-1, TIME))).numpy()
    np.testing.assert_allclose(fast, plain.reshape(fast.shape), rtol=1e-5, atol=1e-6)
    # The check has power: completions score differently from each other.
    assert np.std(plain) > 1e-3


def test_real_probability_of_completions_inside_tf_function():
    discriminator = new_discriminator()
    spec = tf.TensorSpec([None, None, None, TIME], tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, TIME], tf.int32), spec])
    def scores(sequences, completions):
        return discriminator.real_probability_of_completions(sequences, completions)

    sequences = random_tokens(seed=3, batch=2)
    completions = tf.tile(sequences[tf.newaxis, tf.newaxis], [TIME - 1, 2, 1, 1])
    expected = discriminator.real_probability(sequences).numpy()
    np.testing.assert_allclose(
        scores(sequences, completions).numpy(), np.broadcast_to(expected, (TIME - 1, 2, 2)), rtol=1e-5
    )


def test_reward_scoring_in_float64_equals_the_float32_layers():
    """The precision-cast path (embeddings gathered, windows as one im2col
    MatMul, the highway's Dense layers by hand) computes the same function
    as the Keras layers; float64 makes it exact up to float32 round-off."""
    discriminator = new_discriminator(window_sizes=(1, 4, TIME), num_filters=(3, 5, 7))
    sequences = random_tokens(seed=4, batch=BATCH)
    np.testing.assert_allclose(
        discriminator.real_probability(sequences, tf.float64).numpy(),
        discriminator.real_probability(sequences).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    rng = np.random.default_rng(5)
    completions = rng.integers(0, VOCAB, (TIME - 1, 2, BATCH, TIME)).astype(np.int32)
    for t in range(1, TIME):
        completions[t - 1, :, :, :t] = sequences.numpy()[:, :t]
    np.testing.assert_allclose(
        discriminator.critic_of_completions(sequences, completions, tf.float64).numpy(),
        discriminator.critic_of_completions(sequences, completions).numpy(),
        rtol=1e-4,
        atol=1e-5,
    )


def test_bfloat16_reward_scoring_stays_near_float32():
    """--reward_precision=bfloat16: the rewards move by bfloat16 round-off
    (8-bit mantissas, float32 accumulation), not by more."""
    discriminator = new_discriminator(window_sizes=(1, 4, TIME), num_filters=(3, 5, 7))
    sequences = random_tokens(seed=6, batch=64)
    exact = discriminator.real_probability(sequences).numpy()
    fast = discriminator.real_probability(sequences, tf.bfloat16)
    assert fast.dtype == tf.float32
    assert np.abs(fast.numpy() - exact).max() < 0.02
    assert np.std(exact) > 1e-2  # the rewards differ from row to row, so the bound has power
