"""Generator: shapes, teacher forcing against the decoding step, serialization."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import log_softmax, new_generator

from tfseqgan.generator import Generator

VOCAB, TIME, BATCH, EMBED, HIDDEN = 10, 5, 3, 4, 6


def random_tokens(batch=BATCH, time=TIME, vocab=VOCAB, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, (batch, time)).astype(np.int32)


def step_loop(generator, tokens):
    """Reference: feed start token, then tokens[:, :-1], one `step` at a time.

    Returns the logits (batch, time, vocab) and the states after each input,
    hidden and cell each (batch, time, hidden).
    """
    batch = tokens.shape[0]
    state = generator.initial_state(batch)
    inputs = tf.fill([batch], generator.start_token)
    logits, hidden, cell = [], [], []
    for t in range(tokens.shape[1]):
        step_logits, state = generator.step(inputs, state)
        logits.append(step_logits.numpy())
        hidden.append(state[0].numpy())
        cell.append(state[1].numpy())
        inputs = tf.constant(tokens[:, t])
    return np.stack(logits, 1), np.stack(hidden, 1), np.stack(cell, 1)


@pytest.fixture
def generator():
    # A larger init scale than the default so the logits differ visibly between positions.
    return new_generator(VOCAB, TIME, EMBED, HIDDEN, init_stddev=0.5, seed=3)


def test_step_shapes(generator):
    state = generator.initial_state(BATCH)
    assert [tuple(s.shape) for s in state] == [(BATCH, HIDDEN), (BATCH, HIDDEN)]
    np.testing.assert_array_equal(state[0], 0.0)
    logits, (hidden, cell) = generator.step(tf.constant([0, 3, 9]), state)
    assert tuple(logits.shape) == (BATCH, VOCAB)
    assert logits.dtype == tf.float32
    assert tuple(hidden.shape) == (BATCH, HIDDEN)
    assert tuple(cell.shape) == (BATCH, HIDDEN)
    # The state moved away from zero: the cell really ran.
    assert np.abs(hidden.numpy()).max() > 0


def test_call_shape(generator):
    logits = generator(tf.constant(random_tokens()))
    assert tuple(logits.shape) == (BATCH, TIME, VOCAB)
    assert logits.dtype == tf.float32


def test_teacher_forced_logits_equal_step_loop(generator):
    tokens = random_tokens()
    expected, _, _ = step_loop(generator, tokens)
    np.testing.assert_allclose(generator(tf.constant(tokens)).numpy(), expected, atol=1e-5)
    # Position 0 does not depend on the tokens (it is fed the start token) ...
    other = tokens.copy()
    other[:, 1:] = (other[:, 1:] + 1) % VOCAB
    np.testing.assert_allclose(generator(tf.constant(other)).numpy()[:, 0], expected[:, 0], atol=1e-6)
    # ... while position 2 depends on tokens[:, 1] (and not on tokens[:, 2]).
    assert not np.allclose(generator(tf.constant(other)).numpy()[:, 2], expected[:, 2], atol=1e-4)


def test_teacher_forced_logits_with_other_start_token():
    generator = Generator(VOCAB, TIME, embedding_dim=EMBED, hidden_dim=HIDDEN, start_token=7, init_stddev=0.5, seed=4)
    tokens = random_tokens(seed=1)
    expected, _, _ = step_loop(generator, tokens)
    np.testing.assert_allclose(generator(tf.constant(tokens)).numpy(), expected, atol=1e-5)


def test_token_log_probs_equal_gathered_log_softmax(generator):
    tokens = random_tokens(seed=2)
    log_probs = generator.token_log_probs(tf.constant(tokens)).numpy()
    assert log_probs.shape == (BATCH, TIME)
    full = log_softmax(generator(tf.constant(tokens)).numpy(), axis=2)
    expected = np.take_along_axis(full, tokens[:, :, None], axis=2)[:, :, 0]
    np.testing.assert_allclose(log_probs, expected, atol=1e-5)
    assert np.all(log_probs < 0)


def test_prefix_states_are_states_before_each_position(generator):
    tokens = random_tokens(seed=3)
    hidden, cell = generator.prefix_states(tf.constant(tokens))
    assert tuple(hidden.shape) == (BATCH, TIME, HIDDEN)
    assert tuple(cell.shape) == (BATCH, TIME, HIDDEN)
    np.testing.assert_array_equal(hidden[:, 0], 0.0)
    np.testing.assert_array_equal(cell[:, 0], 0.0)
    # Entry t: the state after feeding the start token, then tokens[:, :t-1].
    _, loop_hidden, loop_cell = step_loop(generator, tokens)
    np.testing.assert_allclose(hidden[:, 1:].numpy(), loop_hidden[:, :-1], atol=1e-5)
    np.testing.assert_allclose(cell[:, 1:].numpy(), loop_cell[:, :-1], atol=1e-5)


def test_prefix_state_continues_the_sequence(generator):
    """Resuming from prefix_states[:, t] with input tokens[:, t-1] gives the teacher-forced logits of position t."""
    tokens = random_tokens(seed=4)
    hidden, cell = generator.prefix_states(tf.constant(tokens))
    teacher = generator(tf.constant(tokens)).numpy()
    for t in range(1, TIME):
        logits, _ = generator.step(tf.constant(tokens[:, t - 1]), (hidden[:, t], cell[:, t]))
        np.testing.assert_allclose(logits.numpy(), teacher[:, t], atol=1e-5)


def test_get_config_round_trip(generator):
    config = generator.get_config()
    for key, value in dict(
        vocabulary_size=VOCAB, sequence_length=TIME, embedding_dim=EMBED, hidden_dim=HIDDEN, start_token=0
    ).items():
        assert config[key] == value
    copy = Generator.from_config(config)
    assert isinstance(copy, Generator)
    assert [tuple(w.shape) for w in copy.weights] == [tuple(w.shape) for w in generator.weights]
    tokens = tf.constant(random_tokens(seed=5))
    assert tuple(copy(tokens).shape) == (BATCH, TIME, VOCAB)
    # Same seed in the config: the same initial weights.
    for a, b in zip(copy.weights, generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_checkpoint_round_trip(generator, tmp_path):
    tokens = tf.constant(random_tokens(seed=6))
    path = tf.train.Checkpoint(model=generator).save(str(tmp_path / "ckpt"))
    fresh = new_generator(VOCAB, TIME, EMBED, HIDDEN, init_stddev=0.5, seed=99)
    assert not np.allclose(fresh(tokens).numpy(), generator(tokens).numpy())
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(fresh(tokens).numpy(), generator(tokens).numpy())


def test_seeded_initialization_is_deterministic():
    a = new_generator(seed=5)
    b = new_generator(seed=5)
    c = new_generator(seed=6)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert any(not np.array_equal(x.numpy(), z.numpy()) for x, z in zip(a.weights, c.weights))


def test_output_log_probs_gradient_matches_autodiff_of_log_softmax():
    from tfseqgan.generator import output_log_probs

    rng = np.random.default_rng(0)
    hidden = tf.constant(rng.normal(size=(6, 4)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(4, 9)).astype(np.float32) * 3.0)
    bias = tf.constant(rng.normal(size=(9,)).astype(np.float32))
    targets = tf.constant([0, 3, 8, 8, 1, 5], tf.int32)
    upstream = tf.constant(rng.normal(size=(6,)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([hidden, kernel, bias])
        fused = output_log_probs(hidden, kernel, bias, targets)
        reference = tf.gather(tf.nn.log_softmax(tf.matmul(hidden, kernel) + bias), targets, batch_dims=1)
        fused_sum = tf.reduce_sum(fused * upstream)
        reference_sum = tf.reduce_sum(reference * upstream)
    np.testing.assert_allclose(fused.numpy(), reference.numpy(), atol=1e-5)
    for got, want in zip(
        tape.gradient(fused_sum, [hidden, kernel, bias]), tape.gradient(reference_sum, [hidden, kernel, bias])
    ):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_output_log_probs_stays_finite_for_very_unlikely_targets():
    from tfseqgan.generator import output_log_probs

    hidden = tf.ones([1, 2])
    kernel = tf.constant([[200.0, -200.0], [200.0, -200.0]])
    log_probs = output_log_probs(hidden, kernel, tf.zeros([2]), tf.constant([1], tf.int32))
    np.testing.assert_allclose(log_probs.numpy(), [-800.0], rtol=1e-5)


def test_output_log_probs_is_exact_whichever_way_the_normalizer_is_read():
    """Targets likely enough read log p off the softmax; one too unlikely
    sends the whole batch through the most likely id. Both give log_softmax."""
    from tfseqgan.generator import output_log_probs

    hidden = tf.constant([[1.0, 0.5], [0.3, -0.2]])
    kernel = tf.constant([[60.0, -60.0, 1.0], [3.0, 2.0, -1.0]])
    bias = tf.constant([0.1, 0.2, 0.3])
    logits = tf.matmul(hidden, kernel) + bias
    reference = tf.nn.log_softmax(tf.cast(logits, tf.float64))
    for targets in ([2, 0], [1, 0]):  # [1, 0]: row 0's target has p ~ 1e-52, 0 in float32
        got = output_log_probs(hidden, kernel, bias, tf.constant(targets, tf.int32)).numpy()
        want = tf.gather(reference, targets, batch_dims=1).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_decoding_step_matches_step_and_a_numpy_output_layer(generator):
    """The decoding loops' step (output weights read once, bias folded into the
    MatMul) gives `step`'s logits and state, and the logits are h @ W + b."""
    state = (tf.constant(np.linspace(-1, 1, BATCH * HIDDEN).reshape(BATCH, HIDDEN), tf.float32),) * 2
    tokens = tf.constant([0, 3, 9])
    logits, (hidden, cell) = generator.step(tokens, state)
    fast_logits, (fast_hidden, fast_cell) = generator.decoding_step()(tokens, state)
    np.testing.assert_allclose(fast_logits, logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(fast_hidden, hidden)
    np.testing.assert_array_equal(fast_cell, cell)
    kernel, bias = generator.output_layer.kernel.numpy(), generator.output_layer.bias.numpy()
    np.testing.assert_allclose(logits, hidden.numpy() @ kernel + bias, rtol=1e-5, atol=1e-5)
