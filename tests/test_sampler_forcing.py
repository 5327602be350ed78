"""Sampler additions of the export: the portable (ONNX-convertible) inverse-CDF
draw, the "keep these given tokens" mask and per-position logit biases."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import softmax

from tfseqgan import sampler
from tfseqgan.generator import Generator

VOCAB, TIME = 11, 6


@pytest.fixture(scope="module")
def generator():
    return Generator(VOCAB, TIME, embedding_dim=4, hidden_dim=6, init_stddev=1.0, seed=3)


def reference_forced_greedy(generator, given, keep, bias=None):
    """Row by row, step by step: argmax, except where a given token is kept."""
    tokens = np.zeros(TIME, np.int32)
    state = generator.initial_state(1)
    previous = generator.start_token
    for position in range(TIME):
        logits, state = generator.step(tf.constant([previous], tf.int32), state)
        logits = logits.numpy()[0] + (0.0 if bias is None else bias[position])
        tokens[position] = given[position] if keep[position] else int(np.argmax(logits))
        previous = tokens[position]
    return tokens


@pytest.mark.parametrize("block_size", [None, 1, 4, 11])
def test_portable_inverse_cdf_equals_the_searchsorted_one(block_size):
    rng = np.random.default_rng(block_size or 0)
    logits = rng.normal(0, 3, (500, VOCAB)).astype(np.float32)
    logits[:50, 2] = -1e9  # zero-mass ids
    logits[50:60] = -np.inf
    logits[50:60, 7] = 0.0  # one possible id
    uniforms = rng.random((500, 2), dtype=np.float32)
    uniforms[:20] = np.float32(1.0 - 2**-24)  # u * total may round up to the total
    uniforms[20:30] = 0.0
    default = sampler.inverse_cdf_sample(logits, uniforms, block_size).numpy()
    portable = sampler.inverse_cdf_sample(logits, uniforms, block_size, portable=True).numpy()
    np.testing.assert_array_equal(portable, default)
    assert np.all(portable[50:60] == 7) and not np.any(portable[:50] == 2)


def test_categorical_sample_is_inverse_cdf_of_its_seeded_uniforms():
    logits = tf.random.stateless_normal([64, VOCAB], seed=[1, 2])
    seed = tf.constant([5, 9], tf.int64)
    uniforms = tf.random.stateless_uniform([64, 2], seed=seed)
    np.testing.assert_array_equal(
        sampler.categorical_sample(logits, seed).numpy(), sampler.inverse_cdf_sample(logits, uniforms).numpy()
    )


def test_keep_mask_keeps_given_tokens_anywhere_and_conditions_on_them(generator):
    rng = np.random.default_rng(0)
    given = rng.integers(0, VOCAB, (8, TIME)).astype(np.int32)
    keep = rng.random((8, TIME)) < 0.4
    keep[0] = False
    keep[1] = True
    greedy = sampler.sample_with_given_tokens(generator, given, keep, [1, 2], greedy=True).numpy()
    expected = np.stack([reference_forced_greedy(generator, g, k) for g, k in zip(given, keep)])
    np.testing.assert_array_equal(greedy, expected)
    sampled = sampler.sample_with_given_tokens(generator, given, keep, [3, 4]).numpy()
    np.testing.assert_array_equal(sampled[keep], given[keep])
    np.testing.assert_array_equal(sampled[1], given[1])


def test_logit_bias_bans_an_id_at_chosen_positions(generator):
    given = np.zeros((1, TIME), np.int32)
    keep = np.zeros((1, TIME), bool)
    free = sampler.sample_with_given_tokens(generator, given, keep, [0, 0], greedy=True).numpy()[0]
    bias = np.zeros((TIME, VOCAB), np.float32)
    bias[np.arange(TIME), free] = -1e9  # ban each position's greedy choice there
    banned = sampler.sample_with_given_tokens(generator, given, keep, [0, 0], greedy=True, logit_bias=bias).numpy()
    np.testing.assert_array_equal(banned[0], reference_forced_greedy(generator, given[0], keep[0], bias))
    assert np.all(banned[0] != free)
    sampled = sampler.sample_with_given_tokens(
        generator, np.zeros((2000, TIME), np.int32), np.zeros((2000, TIME), bool), [7, 7], logit_bias=bias
    ).numpy()
    assert not np.any(sampled == free[np.newaxis])


def test_first_forced_free_position_follows_the_model(generator):
    """After a kept first token, the second is drawn from the model given it."""
    rows = 20000
    given = np.full((rows, TIME), 5, np.int32)
    keep = np.zeros((rows, TIME), bool)
    keep[:, 0] = True
    samples = sampler.sample_with_given_tokens(generator, given, keep, [2, 3]).numpy()
    assert np.all(samples[:, 0] == 5)
    _, state = generator.step(tf.constant([generator.start_token]), generator.initial_state(1))
    logits, _ = generator.step(tf.constant([5]), state)
    expected = softmax(logits.numpy()[0])
    observed = np.bincount(samples[:, 1], minlength=VOCAB) / rows
    assert 0.5 * np.abs(observed - expected).sum() < 0.03
