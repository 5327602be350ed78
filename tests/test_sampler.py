"""Sampler: the exact categorical draw and the one decoding loop (free, prefix, rollout)."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import dominate, new_generator, softmax

from tfseqgan import sampler
from tfseqgan.generator import Generator

ROWS = 20000


def empirical(ids, vocab):
    ids = np.asarray(ids)
    assert ids.min() >= 0 and ids.max() < vocab
    return np.bincount(ids, minlength=vocab) / ids.size


def total_variation(p, q):
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum()


def chi_square(frequencies, probabilities, rows):
    expected = probabilities * rows
    return np.sum((frequencies * rows - expected) ** 2 / expected)


# Chi-square 99.99th percentiles (6, 11 and 22 degrees of freedom): a correct sampler
# fails the bound with probability 1e-4 for a given seed, and the seeds are fixed.
CHI2_BOUND = {7: 27.9, 12: 37.4, 23: 53.0}


@pytest.mark.parametrize("vocab, block_size", [(7, None), (12, None), (23, 5), (23, None), (7, 1), (7, 7)])
def test_categorical_sample_matches_softmax(vocab, block_size):
    logits = np.random.default_rng(vocab).normal(scale=1.5, size=vocab).astype(np.float32)
    ids = sampler.categorical_sample(np.tile(logits, (ROWS, 1)), tf.constant([4, 2], tf.int64), block_size)
    assert tuple(ids.shape) == (ROWS,)
    frequencies = empirical(ids.numpy(), vocab)
    p = softmax(logits)
    assert total_variation(frequencies, p) < 0.02
    assert chi_square(frequencies, p, ROWS) < CHI2_BOUND[vocab]
    # The bound has power: the same draws are far from a wrong temperature.
    wrong = softmax(logits / 2.0)
    assert total_variation(p, wrong) > 0.1
    assert total_variation(frequencies, wrong) > 0.08
    assert chi_square(frequencies, wrong, ROWS) > 10 * CHI2_BOUND[vocab]


@pytest.mark.parametrize(
    "vocab, block_size",
    [(5000, 100), (10000, 100), (12, 4), (8, 4), (7, 3), (23, 5), (5003, 71), (1, 1), (2, 2)],
)
def test_default_block_size_prefers_a_divisor_near_the_square_root(vocab, block_size):
    """A divisor of the vocabulary avoids padding the probabilities; a prime vocabulary pads."""
    assert sampler.default_block_size(vocab) == block_size


def test_categorical_sample_per_row_logits():
    """Each row draws from its own logits (rows are not mixed up)."""
    vocab, rows = 9, 6000
    dominant = np.arange(rows) % vocab
    logits = np.zeros((rows, vocab), np.float32)
    logits[np.arange(rows), dominant] = 50.0
    ids = sampler.categorical_sample(logits, tf.constant([1, 1], tf.int64), 4).numpy()
    np.testing.assert_array_equal(ids, dominant)


@pytest.mark.parametrize("block_size", [None, 1, 2, 3, 5, 23])
def test_categorical_sample_never_out_of_range_with_minus_inf(block_size):
    vocab = 23
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, vocab)).astype(np.float32)
    logits[:, 19:] = -np.inf  # the padded last block holds only impossible ids
    logits[:, :3] = -np.inf  # so does the first block for small block sizes
    logits[::2, 3:18] = -np.inf  # even rows: a single possible id (18)
    logits[1::4, 3] = 80.0  # some rows: one huge logit
    ids = sampler.categorical_sample(logits, tf.constant([7, 3], tf.int64), block_size).numpy()
    assert ids.min() >= 0 and ids.max() < vocab
    assert np.all(np.isfinite(logits[np.arange(len(ids)), ids])), "sampled an id of probability 0"
    np.testing.assert_array_equal(ids[::2], 18)
    np.testing.assert_array_equal(ids[1::4], 3)


@pytest.mark.parametrize("block_size", [None, 1, 4, 11])
def test_categorical_sample_stays_in_range_with_nan_logits(block_size):
    """NaN weights must not crash sampling (the trainer reports them afterwards)."""
    logits = np.full((8, 11), np.nan, np.float32)
    ids = sampler.categorical_sample(logits, tf.constant([0, 1], tf.int64), block_size).numpy()
    np.testing.assert_array_equal(ids, 0)


def test_categorical_sample_single_possible_id_in_every_position():
    vocab = 11
    logits = np.full((vocab, vocab), -np.inf, np.float32)
    logits[np.arange(vocab), np.arange(vocab)] = 0.0
    for block_size in (None, 1, 4, 11):
        ids = sampler.categorical_sample(logits, tf.constant([0, 9], tf.int64), block_size).numpy()
        np.testing.assert_array_equal(ids, np.arange(vocab))


def test_categorical_sample_seed_determinism():
    logits = np.tile(np.zeros(13, np.float32), (500, 1))
    a = sampler.categorical_sample(logits, tf.constant([1, 2], tf.int64)).numpy()
    b = sampler.categorical_sample(logits, tf.constant([1, 2], tf.int64)).numpy()
    c = sampler.categorical_sample(logits, tf.constant([1, 3], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.5


# --------------------------------------------------------------- the decoding loop
VOCAB, TIME, EMBED, HIDDEN = 11, 6, 5, 7


@pytest.fixture
def generator():
    # Large initial weights: the next-token distribution depends visibly on the prefix.
    return new_generator(VOCAB, TIME, EMBED, HIDDEN, init_stddev=1.0, seed=3)


def reference_greedy(generator, prefix, length):
    """Greedy decoding one row at a time with `step`, keeping prefix[:length]."""
    state = generator.initial_state(1)
    token = tf.constant([generator.start_token])
    out = []
    for t in range(generator.sequence_length):
        logits, state = generator.step(token, state)
        next_token = int(prefix[t]) if t < length else int(tf.argmax(logits[0]))
        out.append(next_token)
        token = tf.constant([next_token], tf.int32)
    return np.array(out)


def random_prefixes(rows, seed=0):
    rng = np.random.default_rng(seed)
    prefixes = rng.integers(0, VOCAB, (rows, TIME)).astype(np.int32)
    lengths = rng.integers(0, TIME + 1, rows).astype(np.int32)
    lengths[:2] = [0, TIME]  # always both extremes
    return prefixes, lengths


def prefix_state(generator, prefixes, lengths):
    hidden, cell = generator.prefix_states(tf.constant(prefixes))
    index = np.minimum(lengths, TIME - 1)
    return tf.gather(hidden, index, batch_dims=1), tf.gather(cell, index, batch_dims=1)


def assert_prefix_kept(samples, prefixes, lengths):
    samples = np.asarray(samples)
    assert samples.shape == prefixes.shape
    assert samples.dtype == np.int32
    assert samples.min() >= 0 and samples.max() < VOCAB
    for row, length in enumerate(lengths):
        np.testing.assert_array_equal(samples[row, :length], prefixes[row, :length], err_msg=f"row {row}")


def test_complete_prefixes_keeps_every_prefix(generator):
    prefixes, lengths = random_prefixes(64)
    samples = sampler.complete_prefixes(generator, prefixes, lengths, tf.constant([5, 6], tf.int64)).numpy()
    assert_prefix_kept(samples, prefixes, lengths)
    # The sampled part is really sampled: rows with length 0 are not all alike.
    free = samples[lengths == 0]
    assert len(free) >= 2 and len({tuple(row) for row in free}) > 1


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 384])
def test_sample_sequences_keeps_prefix_in_every_chunking(generator, chunk_size):
    prefixes, lengths = random_prefixes(21, seed=chunk_size)
    state = prefix_state(generator, prefixes, lengths)
    samples = sampler.sample_sequences(
        generator.step, prefixes, lengths, state, generator.start_token, [3, 4], chunk_size=chunk_size
    )
    assert_prefix_kept(samples, prefixes, lengths)


@pytest.mark.parametrize("chunk_size", [1, 4, 384])
def test_greedy_matches_row_by_row_reference_in_any_order(generator, chunk_size):
    """Rows with mixed start positions, in any order, each decode as that row alone would."""
    prefixes, lengths = random_prefixes(9, seed=11)
    expected = np.stack([reference_greedy(generator, p, n) for p, n in zip(prefixes, lengths)])
    assert len({tuple(row) for row in expected}) > 3  # the check is not vacuous
    for order in (np.arange(9), np.arange(9)[::-1], np.random.default_rng(1).permutation(9)):
        p, n = prefixes[order], lengths[order]
        samples = sampler.sample_sequences(
            generator.step, p, n, prefix_state(generator, p, n), 0, [1, 2], greedy=True, chunk_size=chunk_size
        )
        np.testing.assert_array_equal(samples.numpy(), expected[order])
    alone = [
        sampler.complete_prefixes(generator, prefixes[i : i + 1], lengths[i : i + 1], [1, 2], greedy=True).numpy()[0]
        for i in range(9)
    ]
    np.testing.assert_array_equal(np.stack(alone), expected)


def test_greedy_free_sampling_feeds_the_start_token():
    generator = Generator(VOCAB, TIME, embedding_dim=EMBED, hidden_dim=HIDDEN, start_token=4, init_stddev=1.0, seed=8)
    expected = reference_greedy(generator, np.zeros(TIME, np.int32), 0)
    samples = sampler.sample_free(generator, 3, tf.constant([0, 0], tf.int64), greedy=True).numpy()
    np.testing.assert_array_equal(samples, np.tile(expected, (3, 1)))
    # With start token 0 the same weights decode differently (the start token matters).
    other = Generator(VOCAB, TIME, embedding_dim=EMBED, hidden_dim=HIDDEN, start_token=0, init_stddev=1.0, seed=8)
    assert not np.array_equal(reference_greedy(other, np.zeros(TIME, np.int32), 0), expected)


@pytest.mark.parametrize("token", [0, 4, 10])
def test_greedy_with_dominant_token_fills_after_prefix(generator, token):
    dominate(generator, token)
    prefixes, lengths = random_prefixes(16, seed=token)
    for greedy in (True, False):
        samples = sampler.complete_prefixes(generator, prefixes, lengths, [2, 2], greedy=greedy).numpy()
        assert_prefix_kept(samples, prefixes, lengths)
        for row, length in enumerate(lengths):
            np.testing.assert_array_equal(samples[row, length:], token)


def test_sample_free_with_dominant_token(generator):
    dominate(generator, 6)
    samples = sampler.sample_free(generator, 5, tf.constant([0, 1], tf.int64)).numpy()
    np.testing.assert_array_equal(samples, np.full((5, TIME), 6))


@pytest.mark.parametrize("temperature,greedy", [(1.0, False), (0.7, False), (1.0, True)])
def test_sample_free_draws_what_the_loop_draws_from_position_zero(generator, temperature, greedy):
    """The first position, computed once for all rows, gives each row the token the general loop gives it."""
    seed = tf.constant([5, 8], tf.int64)
    batch = 300
    free = sampler.sample_free(generator, batch, seed, temperature=temperature, greedy=greedy).numpy()
    loop = sampler.sample_sequences(
        generator.decoding_step(),
        tf.zeros([batch, TIME], tf.int32),
        tf.zeros([batch], tf.int32),
        generator.initial_state(batch),
        generator.start_token,
        seed,
        temperature=temperature,
        greedy=greedy,
        vocabulary_size=generator.vocabulary_size,
    ).numpy()
    np.testing.assert_array_equal(free, loop)
    if not greedy:
        assert len(np.unique(free[:, 0])) > 1  # the first tokens are drawn per row, not shared


def test_one_distribution_for_many_rows_samples_as_the_rows_would():
    logits = tf.random.stateless_normal([37], [1, 2]) * 3.0
    uniforms = tf.random.stateless_uniform([500, 2], [3, 4])
    shared = sampler.inverse_cdf_sample_shared(logits, uniforms, block_size=5)
    per_row = sampler.inverse_cdf_sample(tf.tile(logits[tf.newaxis], [500, 1]), uniforms, block_size=5)
    np.testing.assert_array_equal(shared.numpy(), per_row.numpy())


def test_sample_free_shape_range_and_determinism(generator):
    a = sampler.sample_free(generator, 32, tf.constant([9, 9], tf.int64)).numpy()
    b = sampler.sample_free(generator, 32, tf.constant([9, 9], tf.int64)).numpy()
    c = sampler.sample_free(generator, 32, tf.constant([9, 10], tf.int64)).numpy()
    assert a.shape == (32, TIME) and a.dtype == np.int32
    assert a.min() >= 0 and a.max() < VOCAB
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_complete_prefixes_determinism(generator):
    prefixes, lengths = random_prefixes(32, seed=5)
    a = sampler.complete_prefixes(generator, prefixes, lengths, [7, 7]).numpy()
    b = sampler.complete_prefixes(generator, prefixes, lengths, [7, 7]).numpy()
    c = sampler.complete_prefixes(generator, prefixes, lengths, [7, 8]).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_first_sampled_token_follows_the_model_given_the_prefix(generator):
    """The token sampled right after a kept prefix has the model's conditional distribution."""
    rows, length = 6000, 2
    prefix = np.array([3, 8, 0, 0, 0, 0], np.int32)
    prefixes = np.tile(prefix, (rows, 1))
    lengths = np.full(rows, length, np.int32)
    samples = sampler.complete_prefixes(generator, prefixes, lengths, [4, 5]).numpy()
    conditional = softmax(generator(tf.constant(prefix[None])).numpy()[0, length])
    frequencies = empirical(samples[:, length], VOCAB)
    assert total_variation(frequencies, conditional) < 0.04
    # Not the unconditional first-position distribution (the state really is the prefix's).
    first = softmax(generator(tf.constant(prefix[None])).numpy()[0, 0])
    assert total_variation(conditional, first) > 0.15


def test_temperature_scales_the_logits():
    vocab, rows = 7, ROWS
    logits = np.array([0.0, 1.0, 2.0, 3.0, -1.0, 0.5, 2.5], np.float32)

    def step_fn(tokens, state):
        return tf.tile(tf.constant(logits)[None], [tf.shape(tokens)[0], 1]), state

    def first_column(temperature):
        state = (tf.zeros([rows, 1]),)
        samples = sampler.sample_sequences(
            step_fn,
            tf.zeros([rows, 1], tf.int32),
            tf.zeros([rows], tf.int32),
            state,
            0,
            [3, 3],
            temperature=temperature,
            chunk_size=4096,
        )
        return empirical(samples.numpy()[:, 0], vocab)

    hot = first_column(2.0)
    assert total_variation(hot, softmax(logits / 2.0)) < 0.02
    assert total_variation(hot, softmax(logits)) > 0.1
    plain = first_column(1.0)
    assert total_variation(plain, softmax(logits)) < 0.02


def test_categorical_sample_never_picks_zero_mass_ids_even_at_u_close_to_one():
    # Only ids 0 and 7 have mass; the rest (and the padding of the last block)
    # must never be drawn, whatever the uniforms are.
    logits = np.full((4096, 9), -np.inf, np.float32)
    logits[:, 0] = 0.0
    logits[:, 7] = 3.0
    for seed in range(5):
        ids = sampler.categorical_sample(tf.constant(logits), tf.constant([seed, 1], tf.int64), block_size=4).numpy()
        assert set(np.unique(ids)) <= {0, 7}


@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
def test_draws_are_keyed_by_row_not_by_chunking(generator, chunk_size):
    """A row's random numbers depend on its id alone: any chunk size gives the same samples."""
    prefixes, lengths = random_prefixes(40, seed=3)
    state = prefix_state(generator, prefixes, lengths)
    seed = tf.constant([2, 9], tf.int64)
    reference = sampler.sample_sequences(generator.step, prefixes, lengths, state, 0, seed, chunk_size=64).numpy()
    samples = sampler.sample_sequences(generator.step, prefixes, lengths, state, 0, seed, chunk_size=chunk_size)
    np.testing.assert_array_equal(samples.numpy(), reference)


def test_a_batch_split_in_parts_samples_what_it_samples_whole(generator):
    """Rows offset.. of a global batch (as one replica decodes them) equal those rows of the whole batch."""
    seed = tf.constant([7, 1], tf.int64)
    whole = sampler.sample_free(generator, 10, seed).numpy()
    first = sampler.sample_free(generator, 4, seed, row_offset=0, num_rows=10).numpy()
    rest = sampler.sample_free(generator, 6, seed, row_offset=4, num_rows=10).numpy()
    np.testing.assert_array_equal(np.concatenate([first, rest]), whole)
    assert not np.array_equal(sampler.sample_free(generator, 6, seed).numpy(), rest)  # the offset matters


def test_static_shape_decoding_equals_the_sliced_loop(generator):
    """The XLA-ready path (every row computed, given tokens kept by masking) decodes the same tokens."""
    prefixes, lengths = random_prefixes(48, seed=4)
    state = prefix_state(generator, prefixes, lengths)
    seed = tf.constant([3, 3], tf.int64)
    sliced = sampler.sample_sequences(generator.step, prefixes, lengths, state, 0, seed, chunk_size=16)
    static = sampler.sample_sequences(
        generator.step, prefixes, lengths, state, 0, seed, chunk_size=16, static_shapes=True
    )
    assert_prefix_kept(static, prefixes, lengths)
    np.testing.assert_array_equal(static.numpy(), sliced.numpy())


def test_static_shape_decoding_compiles_under_xla(generator):
    prefixes, lengths = random_prefixes(24, seed=5)

    @tf.function(jit_compile=True)
    def complete(prefixes, lengths, seed):
        return sampler.complete_prefixes(generator, prefixes, lengths, seed, static_shapes=True, chunk_size=8)

    samples = complete(tf.constant(prefixes), tf.constant(lengths), tf.constant([1, 2], tf.int64))
    assert_prefix_kept(samples, prefixes, lengths)


def test_cumsum_rows_is_the_cumulative_sum_and_never_decreases():
    """The sampler's prefix sums (a MatMul by the upper-triangular ones) equal
    tf.cumsum and stay non-decreasing, as the inverse-CDF search needs."""
    values = tf.constant(np.random.default_rng(0).exponential(size=(257, 71)) ** 4, tf.float32)
    sums = sampler._cumsum_rows(values).numpy()
    np.testing.assert_allclose(sums, tf.cumsum(values, axis=1).numpy(), rtol=1e-6)
    assert (np.diff(sums, axis=1) >= 0).all()


def test_default_chunks_are_as_few_as_the_logits_budget_allows():
    budget = 4 * 100 * 50  # the logits of 50 rows at vocabulary 100
    assert sampler.default_chunk_size(40, 100, budget) == 40  # one chunk
    assert sampler.default_chunk_size(120, 100, budget) == 40  # three equal chunks of at most 50
    assert sampler.default_chunk_size(101, 100, budget) == 34
    assert int(sampler.default_chunk_size(tf.constant(101), 100, budget)) == 34
    assert sampler.default_chunk_size(5, 10**9, budget) == 1  # never below one row
    assert sampler.default_chunk_size(40, 100, budget, most_rows=16) == 14  # three chunks of at most 16
    with pytest.raises(ValueError, match="vocabulary_size"):
        sampler.sample_sequences(lambda t, s: None, tf.zeros([2, 3], tf.int32), [0, 0], (), 0, [1, 2])


def test_the_default_chunking_samples_what_small_chunks_sample(generator):
    """Rows are keyed by id: one chunk of every row draws what chunks of 7 draw."""
    prefixes = tf.random.stateless_uniform([50, TIME], [1, 1], 0, VOCAB, tf.int32)
    lengths = tf.random.stateless_uniform([50], [2, 2], 0, TIME + 1, tf.int32)
    seed = tf.constant([3, 9], tf.int64)
    whole = sampler.complete_prefixes(generator, prefixes, lengths, seed).numpy()
    chunked = sampler.complete_prefixes(generator, prefixes, lengths, seed, chunk_size=7).numpy()
    np.testing.assert_array_equal(whole, chunked)
