"""Monte-Carlo rollout rewards and the delayed-copy rollout policy G_beta.

Reference: Yu et al., AAAI 2017, eq. (4) and Algorithm 1 (rollout policy
G_beta). The paper's TF1 code builds the beta <- r*beta + (1-r)*theta ops but
never runs them inside the rollout graph, so its rollouts use the current
generator; here the copy is real and `update_rate = 0` reproduces that
behaviour. The copy starts from the pre-trained generator: the trainer sets
beta <- theta once, when the adversarial phase begins (as the paper's code
builds its rollout object after pre-training).
"""

import tensorflow as tf

from tfseqgan.generator import Generator
from tfseqgan.sampler import sample_sequences


def clone_generator(generator, name="rollout_policy"):
    """A new Generator with the same config and weights."""
    config = dict(generator.get_config(), name=name)
    copy = Generator.from_config(config)
    copy_weights(copy, generator)
    return copy


def copy_weights(rollout, generator):
    """beta <- theta exactly, per weight (the rollout policy starts from the
    generator it follows)."""
    for beta, theta in zip(rollout.weights, generator.weights, strict=True):
        beta.assign(tf.cast(theta, beta.dtype))


def update_rollout_weights(rollout, generator, update_rate):
    """beta <- update_rate * beta + (1 - update_rate) * theta, per weight."""
    update_rate = tf.cast(update_rate, tf.float32)
    for beta, theta in zip(rollout.weights, generator.weights, strict=True):
        beta.assign(update_rate * beta + (1.0 - update_rate) * tf.cast(theta, beta.dtype))


def rollout_completions(
    policy, sequences, num_rollouts, seed, chunk_size=None, batch_offset=0, global_batch=None, static_shapes=False
):
    """Completes every proper prefix of every sequence `num_rollouts` times.

    Args:
        policy: the rollout Generator (G_beta).
        sequences: (batch, time) int32 sampled sequences.
        num_rollouts: completions per prefix.
        seed: shape-(2,) int seed.
        chunk_size: rows decoded together; None: `sampler.default_chunk_size`.
        batch_offset, global_batch: `sequences` are rows batch_offset.. of a
            global batch of `global_batch` (default: all of it); completion
            [t - 1, n, b] draws the random numbers of global row
            ((t - 1) * num_rollouts + n) * global_batch + batch_offset + b,
            so a batch split across replicas draws what it draws whole.
        static_shapes: see `sampler.sample_sequences`.

    Returns:
        (time - 1, num_rollouts, batch, time) int32: entry [t - 1, n, b] keeps
        sequences[b, :t] and samples positions t..time-1.
    """
    sequences = tf.convert_to_tensor(sequences, tf.int32)
    batch = tf.shape(sequences)[0]
    time = sequences.shape[1]
    hidden, cell = policy.prefix_states(sequences)  # (batch, time, hidden) each
    prefix_lengths = tf.range(1, time)  # (time - 1,)
    repeats = num_rollouts * batch

    # Row order: prefix length, then rollout, then sequence.
    starts = tf.repeat(prefix_lengths, repeats)  # (rows,)
    given = tf.tile(sequences, [(time - 1) * num_rollouts, 1])  # (rows, time)

    def states_at_prefixes(states):  # (batch, time, hidden) -> (rows, hidden)
        per_prefix = tf.transpose(states[:, 1:], [1, 0, 2])  # (time - 1, batch, hidden)
        per_prefix = tf.tile(per_prefix[:, tf.newaxis], [1, num_rollouts, 1, 1])
        return tf.reshape(per_prefix, [-1, states.shape[-1]])

    if global_batch is None:
        global_batch = batch
    groups = (time - 1) * num_rollouts
    row_ids = tf.reshape(
        tf.range(groups)[:, tf.newaxis] * global_batch + batch_offset + tf.range(batch)[tf.newaxis], [-1]
    )  # (rows,) in the row order below
    completed = sample_sequences(
        policy.decoding_step(),
        given,
        starts,
        (states_at_prefixes(hidden), states_at_prefixes(cell)),
        policy.start_token,
        seed,
        chunk_size=chunk_size,
        vocabulary_size=policy.vocabulary_size,
        row_ids=row_ids,
        num_rows=groups * global_batch,
        static_shapes=static_shapes,
    )
    return tf.reshape(completed, [time - 1, num_rollouts, batch, time])


def scores_in_chunks(score_fn, sequences, chunk_size):
    """score_fn over the rows of `sequences` (rows, time) in equal chunks of at
    most `chunk_size` rows (no padding beyond rounding): (rows,)."""
    rows = tf.shape(sequences)[0]
    num_chunks = tf.maximum(1, (rows + chunk_size - 1) // chunk_size)
    size = (rows + num_chunks - 1) // num_chunks
    padded = tf.pad(sequences, [[0, num_chunks * size - rows], [0, 0]])
    chunks = tf.reshape(padded, [num_chunks, size, sequences.shape[1]])
    scores = tf.map_fn(score_fn, chunks, fn_output_signature=tf.TensorSpec([None], tf.float32), parallel_iterations=1)
    return tf.reshape(scores, [-1])[:rows]


def compute_rewards(
    policy,
    reward_fn,
    sequences,
    num_rollouts,
    seed,
    score_chunk_size=4096,
    completion_reward_fn=None,
    postprocess=None,
    **rollout_options,
):
    """Q(y_<t, y_t) for every token: rewards[b, t] belongs to sequences[b, t].

    For t < time - 1 it is the mean of reward_fn over `num_rollouts`
    completions of the prefix sequences[b, :t + 1] by `policy`; for the last
    token it is reward_fn of the whole sequence.

    Args:
        policy: the rollout Generator.
        reward_fn: (rows, time) int32 -> (rows,) float32 reward, e.g. the
            discriminator's P(real).
        sequences: (batch, time) int32.
        num_rollouts: Monte-Carlo samples per prefix.
        seed: shape-(2,) int seed.
        score_chunk_size: rows per call of reward_fn.
        completion_reward_fn: optional faster scorer of all completions at
            once, (sequences (batch, time), completions (time - 1,
            num_rollouts, batch, time)) -> (time - 1, num_rollouts, batch),
            equal to reward_fn of each completion; it may rely on every
            completion keeping its prefix, e.g. the discriminator's
            `real_probability_of_completions`. reward_fn still scores the
            whole sequences.
        postprocess: optional (rows, time) -> (rows, time) applied to the
            completions before scoring (text: padding after the end token);
            it must leave the given prefix as it is.
        **rollout_options: batch_offset, global_batch, static_shapes of
            `rollout_completions`.

    Returns:
        (batch, time) float32.
    """
    sequences = tf.convert_to_tensor(sequences, tf.int32)
    batch = tf.shape(sequences)[0]
    time = sequences.shape[1]
    completions = rollout_completions(
        policy, sequences, num_rollouts, seed, **rollout_options
    )  # (time - 1, rollouts, batch, time)
    if postprocess is not None:
        completions = tf.reshape(postprocess(tf.reshape(completions, [-1, time])), [time - 1, num_rollouts, -1, time])
    if completion_reward_fn is None:
        flat = tf.concat([tf.reshape(completions, [-1, time]), sequences], axis=0)
        scores = scores_in_chunks(reward_fn, flat, score_chunk_size)
        rollout_scores = tf.reshape(scores[:-batch], [time - 1, num_rollouts, batch])
        final_scores = scores[-batch:]
    else:
        rollout_scores = tf.reshape(completion_reward_fn(sequences, completions), [time - 1, num_rollouts, batch])
        final_scores = scores_in_chunks(reward_fn, sequences, score_chunk_size)
    prefix_rewards = tf.transpose(tf.reduce_mean(rollout_scores, axis=1))  # (batch, time - 1)
    return tf.concat([prefix_rewards, final_scores[:, tf.newaxis]], axis=1)
