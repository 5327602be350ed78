"""Rollout: Monte-Carlo completions, rewards in the right (batch, time) cell, the G_beta update."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import dominate, new_generator, softmax

from tfseqgan import rollout
from tfseqgan.discriminator import Discriminator
from tfseqgan.generator import Generator

VOCAB, TIME, EMBED, HIDDEN = 8, 5, 4, 6


@pytest.fixture
def policy():
    return new_generator(VOCAB, TIME, EMBED, HIDDEN, init_stddev=1.0, seed=2)


def random_sequences(batch, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, TIME)).astype(np.int32)


def test_rollout_completions_shape_and_prefixes(policy):
    batch, num_rollouts = 3, 4
    sequences = random_sequences(batch)
    completions = rollout.rollout_completions(policy, sequences, num_rollouts, tf.constant([1, 2], tf.int64))
    completions = completions.numpy()
    assert completions.shape == (TIME - 1, num_rollouts, batch, TIME)
    assert completions.min() >= 0 and completions.max() < VOCAB
    for t in range(1, TIME):
        for n in range(num_rollouts):
            for b in range(batch):
                np.testing.assert_array_equal(completions[t - 1, n, b, :t], sequences[b, :t])
    # The completions are samples: the shortest prefixes are not all completed alike.
    assert len({tuple(row) for row in completions[0].reshape(-1, TIME)}) > 1


def test_rollout_continues_from_the_prefix_state(policy):
    """The first completed token after prefix sequences[:t] follows the policy's conditional at position t."""
    num_rollouts = 3000
    sequences = np.array([[6, 1, 7, 2, 0]], np.int32)
    completions = rollout.rollout_completions(policy, sequences, num_rollouts, [9, 9]).numpy()
    teacher = policy(tf.constant(sequences)).numpy()[0]
    for t in (1, 3):
        frequencies = np.bincount(completions[t - 1, :, 0, t], minlength=VOCAB) / num_rollouts
        conditional = softmax(teacher[t])
        assert 0.5 * np.abs(frequencies - conditional).sum() < 0.05, f"prefix length {t}"
    # Different prefixes give visibly different conditionals (the check has power).
    assert 0.5 * np.abs(softmax(teacher[1]) - softmax(teacher[3])).sum() > 0.15


def test_rollout_completions_with_dominant_policy(policy):
    dominate(policy, 5)
    sequences = random_sequences(4, seed=1)
    completions = rollout.rollout_completions(policy, sequences, 2, [0, 0]).numpy()
    for t in range(1, TIME):
        expected = np.concatenate([sequences[:, :t], np.full((4, TIME - t), 5)], axis=1)
        for n in range(2):
            np.testing.assert_array_equal(completions[t - 1, n], expected)


def test_rollout_completions_deterministic_per_seed(policy):
    sequences = random_sequences(3, seed=2)
    a = rollout.rollout_completions(policy, sequences, 3, [4, 4]).numpy()
    b = rollout.rollout_completions(policy, sequences, 3, [4, 4]).numpy()
    c = rollout.rollout_completions(policy, sequences, 3, [4, 5]).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# Position weights: each (prefix, completion) scores differently, so a reward
# put in the wrong (batch, time) cell shows.
WEIGHTS = np.array([1.0, 2.0, 4.0, 8.0, 16.0], np.float32)


def reward_of_threes(tokens):
    """(rows, time) -> (rows,): weighted count of the positions holding token 3."""
    return tf.reduce_sum(tf.cast(tf.equal(tokens, 3), tf.float32) * WEIGHTS, axis=1)


def test_rewards_land_in_the_right_cell(policy):
    """With a policy that always completes with 3, rewards[b, t] is known exactly from sequences[b, :t+1]."""
    dominate(policy, 3)
    sequences = np.array(
        [
            [3, 0, 3, 1, 2],
            [1, 3, 3, 0, 0],
            [0, 0, 0, 0, 3],
            [3, 3, 3, 3, 3],
            [2, 1, 0, 4, 5],
            [0, 3, 1, 3, 7],
        ],
        np.int32,
    )
    rewards = rollout.compute_rewards(policy, reward_of_threes, sequences, 3, tf.constant([8, 1], tf.int64)).numpy()
    assert rewards.shape == (6, TIME)
    assert rewards.dtype == np.float32
    for b in range(6):
        for t in range(TIME):
            completed = np.concatenate([sequences[b, : t + 1], np.full(TIME - t - 1, 3)])
            expected = float(np.sum((completed == 3) * WEIGHTS))
            assert rewards[b, t] == pytest.approx(expected, abs=1e-5), f"rewards[{b}, {t}]"


def test_last_reward_is_reward_of_full_sequence_exactly(policy):
    sequences = random_sequences(5, seed=3)

    def reward_fn(tokens):
        return tf.cast(tf.reduce_sum(tokens * np.arange(1, TIME + 1, dtype=np.int32), axis=1), tf.float32) / 7.0

    rewards = rollout.compute_rewards(policy, reward_fn, sequences, 2, [3, 3]).numpy()
    np.testing.assert_array_equal(rewards[:, -1], reward_fn(tf.constant(sequences)).numpy())


def test_prefix_rewards_average_the_rollouts(policy):
    """Prefix rewards are means over the rollouts: with a 0/1 reward they are multiples of 1/N."""
    num_rollouts = 4
    sequences = random_sequences(6, seed=4)

    def reward_fn(tokens):
        return tf.cast(tf.equal(tokens[:, -1], 2), tf.float32)

    rewards = rollout.compute_rewards(policy, reward_fn, sequences, num_rollouts, [5, 5]).numpy()
    scaled = rewards[:, :-1] * num_rollouts
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-5)
    assert np.all((rewards >= 0) & (rewards <= 1))
    # The last-but-one prefix leaves only the last token to chance, so not all prefix rewards are 0/1.
    assert np.any((rewards[:, :-1] > 0) & (rewards[:, :-1] < 1))


def test_score_chunking_does_not_change_rewards(policy):
    sequences = random_sequences(3, seed=5)
    big = rollout.compute_rewards(policy, reward_of_threes, sequences, 2, [6, 6]).numpy()
    small = rollout.compute_rewards(policy, reward_of_threes, sequences, 2, [6, 6], score_chunk_size=5).numpy()
    np.testing.assert_array_equal(big, small)


def test_discriminator_reward_last_column_is_d_of_full_sequence(policy):
    discriminator = Discriminator(VOCAB, TIME, embedding_dim=6, window_sizes=(1, 2, 3), num_filters=(4, 4, 4), seed=0)
    sequences = random_sequences(4, seed=6)
    rewards = rollout.compute_rewards(policy, discriminator.real_probability, sequences, 2, [7, 7]).numpy()
    assert rewards.shape == (4, TIME)
    assert np.all((rewards >= 0) & (rewards <= 1))
    np.testing.assert_allclose(
        rewards[:, -1], discriminator.real_probability(tf.constant(sequences)).numpy(), rtol=1e-6, atol=1e-7
    )


def test_completion_reward_fn_gives_the_rewards_of_scoring_each_completion(policy):
    """The trainer's fast path: the discriminator scores all completions reusing the prefixes' conv outputs."""
    discriminator = Discriminator(
        VOCAB, TIME, embedding_dim=6, window_sizes=(1, 2, 3, TIME), num_filters=(4, 4, 4, 3), seed=0
    )
    sequences = random_sequences(4, seed=7)
    plain = rollout.compute_rewards(policy, discriminator.real_probability, sequences, 3, [8, 8]).numpy()
    fast = rollout.compute_rewards(
        policy,
        discriminator.real_probability,
        sequences,
        3,
        [8, 8],
        completion_reward_fn=discriminator.real_probability_of_completions,
    ).numpy()
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6)
    assert np.std(plain[:, :-1]) > 1e-3


# ------------------------------------------------------------- G_beta and cloning
def perturb(generator, seed):
    rng = np.random.default_rng(seed)
    for weight in generator.weights:
        weight.assign(rng.normal(size=weight.shape).astype(np.float32))


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.8, 1.0])
def test_update_rollout_weights_math(policy, rate):
    beta = rollout.clone_generator(policy)
    perturb(policy, seed=1)  # theta moves away from beta
    old_beta = [w.numpy() for w in beta.weights]
    theta = [w.numpy() for w in policy.weights]
    assert not np.allclose(old_beta[0], theta[0])
    rollout.update_rollout_weights(beta, policy, rate)
    for new, old, current in zip(beta.weights, old_beta, theta):
        np.testing.assert_allclose(new.numpy(), rate * old + (1.0 - rate) * current, rtol=1e-6, atol=1e-6)
    if rate == 0.0:
        for new, current in zip(beta.weights, theta):
            np.testing.assert_array_equal(new.numpy(), current)
    if rate == 1.0:
        for new, old in zip(beta.weights, old_beta):
            np.testing.assert_array_equal(new.numpy(), old)
    # The generator itself is never touched by the update.
    for weight, current in zip(policy.weights, theta):
        np.testing.assert_array_equal(weight.numpy(), current)


def test_update_rollout_weights_inside_tf_function(policy):
    beta = rollout.clone_generator(policy)
    perturb(policy, seed=2)
    old_beta = [w.numpy() for w in beta.weights]

    @tf.function
    def update():
        rollout.update_rollout_weights(beta, policy, 0.25)

    update()
    for new, old, current in zip(beta.weights, old_beta, policy.weights):
        np.testing.assert_allclose(new.numpy(), 0.25 * old + 0.75 * current.numpy(), rtol=1e-6, atol=1e-6)


def test_clone_generator_copies_exactly_and_is_independent(policy):
    clone = rollout.clone_generator(policy)
    assert isinstance(clone, Generator)
    assert clone is not policy
    assert clone.name == "rollout_policy"
    assert clone.get_config() | {"name": None} == policy.get_config() | {"name": None}
    assert len(clone.weights) == len(policy.weights) > 0
    tokens = tf.constant(random_sequences(2, seed=7))
    for a, b in zip(clone.weights, policy.weights):
        assert a is not b
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(clone(tokens).numpy(), policy(tokens).numpy())
    saved = [w.numpy() for w in clone.weights]
    perturb(policy, seed=3)
    for a, b in zip(clone.weights, saved):
        np.testing.assert_array_equal(a.numpy(), b)
    assert not np.allclose(clone(tokens).numpy(), policy(tokens).numpy())


def test_rollouts_of_a_split_batch_equal_those_of_the_whole_batch(policy):
    """Each replica completes its rows of the global batch with the global batch's random numbers."""
    sequences = random_sequences(6, seed=4)
    seed = tf.constant([3, 8], tf.int64)
    whole = rollout.rollout_completions(policy, sequences, 3, seed).numpy()
    parts = [
        rollout.rollout_completions(policy, sequences[lo:hi], 3, seed, batch_offset=lo, global_batch=6).numpy()
        for lo, hi in [(0, 2), (2, 6)]
    ]
    np.testing.assert_array_equal(np.concatenate(parts, axis=2), whole)
