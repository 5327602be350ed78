"""The one sampling loop: free sampling, Monte-Carlo rollout from prefixes and
prefix-conditioned generation are all `sample_sequences` with different given
tokens and start positions."""

import math

import tensorflow as tf


def default_block_size(vocab):
    """Ids per block of `categorical_sample`: about sqrt(vocab).

    The smallest divisor of `vocab` not below sqrt(vocab) (as close in ratio
    as any divisor) when it is at most 2 sqrt(vocab), so the probabilities
    reshape into blocks without a padding copy; otherwise ceil(sqrt(vocab))
    with the last block padded.
    """
    smallest = max(1, math.isqrt(vocab - 1) + 1)  # ceil(sqrt(vocab))
    for size in range(smallest, 2 * smallest + 1):
        if vocab % size == 0 and size * size <= 4 * vocab:
            return size
    return smallest


def _last_index_at_most(cdf, target):
    """Per row, the index of the first entry of the non-decreasing `cdf`
    (rows, n) above `target` (rows,), but never past the first entry that
    reaches the row total: the same as target < total always held. A NaN row
    (NaN logits) gives 0, as the old count of entries <= target did."""
    total = cdf[:, -1]
    target = tf.minimum(target, tf.math.nextafter(total, tf.zeros_like(total)))
    index = tf.searchsorted(cdf, target[:, tf.newaxis], side="right", out_type=tf.int32)[:, 0]
    return tf.where(index < cdf.shape[1], index, tf.zeros_like(index))


def categorical_sample(logits, seed=None, block_size=None, uniforms=None):
    """Draws one id per row from softmax(logits), exactly, by inverse CDF.

    The vocabulary is cut into blocks of `block_size` ids (about sqrt(vocab)):
    one uniform picks the block from the block masses, a second picks the id
    inside it. Only the softmax and one block sum touch every logit, which on
    CPU is several times faster than `tf.random.categorical`.

    Args:
        logits: (batch, vocab) float32.
        seed: shape-(2,) int seed of the stateless uniforms.
        block_size: ids per block; None picks `default_block_size(vocab)`.
        uniforms: (batch, 2) float32 uniforms in [0, 1) to use instead of
            drawing them from `seed`.

    Returns:
        (batch,) int32 ids.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    vocab = logits.shape[-1]
    if block_size is None:
        block_size = default_block_size(vocab)
    num_blocks = -(-vocab // block_size)
    pad = num_blocks * block_size - vocab
    batch = tf.shape(logits)[0]
    probs = tf.nn.softmax(logits)  # (batch, vocab); one fused kernel on CPU
    if pad:
        probs = tf.pad(probs, [[0, 0], [0, pad]])
    probs = tf.reshape(probs, [batch, num_blocks, block_size])
    if uniforms is None:
        uniforms = tf.random.stateless_uniform([batch, 2], seed=seed)  # (batch, 2)

    # If u * total rounds up to total, stop at the last block (id) with mass,
    # never past it (nor into padding).
    block_cdf = tf.cumsum(tf.reduce_sum(probs, axis=2), axis=1)  # (batch, blocks)
    block = _last_index_at_most(block_cdf, uniforms[:, 0] * block_cdf[:, -1])
    inner_cdf = tf.cumsum(tf.gather(probs, block, batch_dims=1), axis=1)  # (batch, block_size)
    offset = _last_index_at_most(inner_cdf, uniforms[:, 1] * inner_cdf[:, -1])
    return block * block_size + offset


def row_noise(seed, num_rows, sequence_length):
    """The uniforms of every row and position, (time, num_rows, 2).

    Position t draws `stateless_uniform([num_rows, 2], fold_in(seed, t))`;
    a counter-based generator gives row g the same pair for any num_rows > g,
    so a row's draws depend on its id alone: not on the chunking, on the order
    rows are decoded in, or on how a batch is split across replicas.
    """
    seed = tf.cast(seed, tf.int64)
    return tf.stack(
        [
            tf.random.stateless_uniform([num_rows, 2], tf.random.experimental.stateless_fold_in(seed, position))
            for position in range(sequence_length)
        ]
    )


def sample_sequences(
    step_fn,
    given_tokens,
    start_positions,
    initial_state,
    start_token,
    seed,
    temperature=1.0,
    greedy=False,
    chunk_size=1024,
    row_ids=None,
    num_rows=None,
    static_shapes=False,
):
    """Runs the decoding loop, keeping given tokens before each row's start.

    Row n keeps given_tokens[n, :start_positions[n]] and samples the rest.
    Rows are sorted by start position and decoded in chunks of `chunk_size`
    rows (a step's logits, 20 MB at vocabulary 5000, outgrow the cache
    anyway, and larger chunks take fewer steps); inside a chunk a step computes
    only the rows that are already sampling, so a Monte-Carlo rollout from
    every prefix costs the tokens it samples, not T steps per row.

    Randomness is keyed by row id (see `row_noise`): row n uses the uniforms
    of id row_ids[n] among num_rows, so a replica that decodes rows
    [offset, offset + batch) of a global batch draws exactly what a single
    device decoding the whole batch draws for them.

    Args:
        step_fn: (tokens (batch,), state) -> (logits (batch, vocab), state);
            state is a tuple of (batch, ...) tensors.
        given_tokens: (batch, time) int32; entries at and after a row's start
            position are ignored.
        start_positions: (batch,) int32 in [0, time]; 0 samples the whole row.
        initial_state: the policy state before each row's start position
            (after feeding the start token and given tokens up to start - 2),
            a tuple of (batch, ...) tensors.
        start_token: id fed at position 0.
        seed: shape-(2,) int seed of `row_noise`.
        temperature: logits are divided by it before sampling (Python 1.0
            skips the division).
        greedy: take the argmax instead of sampling.
        chunk_size: rows decoded together.
        row_ids: (batch,) int32 global ids of the rows; default 0..batch-1.
        num_rows: number of global rows (> every id); default batch.
        static_shapes: compute every row of a chunk at every step and keep
            the given tokens by masking, instead of slicing out the rows
            that are sampling: every shape is static, as XLA needs.

    Returns:
        (batch, time) int32 tokens.
    """
    given_tokens = tf.convert_to_tensor(given_tokens, tf.int32)
    start_positions = tf.convert_to_tensor(start_positions, tf.int32)
    sequence_length = given_tokens.shape[1]
    batch = tf.shape(given_tokens)[0]
    if row_ids is None:
        row_ids = tf.range(batch)
    if num_rows is None:
        num_rows = batch
    noise = None if greedy else row_noise(seed, num_rows, sequence_length)  # (time, num_rows, 2)

    order = tf.argsort(start_positions, stable=True)
    num_chunks = (batch + chunk_size - 1) // chunk_size
    pad = num_chunks * chunk_size - batch

    def chunked(tensor, fill):
        tensor = tf.gather(tensor, order)
        paddings = [[0, pad]] + [[0, 0]] * (len(tensor.shape) - 1)
        tensor = tf.pad(tensor, paddings, constant_values=fill)
        return tf.reshape(tensor, tf.concat([[num_chunks, chunk_size], tf.shape(tensor)[1:]], 0))

    starts = chunked(start_positions, sequence_length)  # (chunks, chunk)
    ids = chunked(tf.cast(row_ids, tf.int32), 0)  # (chunks, chunk)
    tokens = chunked(given_tokens, 0)  # (chunks, chunk, time)
    state = tuple(chunked(s, 0) for s in initial_state)

    def next_tokens(logits, position, ids):
        if greedy:
            return tf.argmax(logits, axis=1, output_type=tf.int32)
        if not (isinstance(temperature, float) and temperature == 1.0):
            logits = logits / temperature
        return categorical_sample(logits, uniforms=tf.gather(noise[position], ids))

    def decode_chunk(elements):
        starts, ids, tokens, state = elements
        tokens_tm = tf.transpose(tokens)  # (time, chunk)
        first = tf.reduce_min(tf.concat([starts, [sequence_length]], axis=0))

        def body(position, tokens_tm, state):
            previous = tokens_tm[tf.maximum(position - 1, 0)]
            inputs = tf.where(position > 0, previous, tf.cast(start_token, tf.int32))
            if static_shapes:  # every row computed, the sampling ones kept
                sampling = starts <= position  # (chunk,)
                logits, new_state = step_fn(inputs, state)
                state = tuple(
                    tf.where(sampling[:, tf.newaxis], tf.cast(new, old.dtype), old)
                    for new, old in zip(new_state, state)
                )
                column = tf.where(sampling, next_tokens(logits, position, ids), tokens_tm[position])
            else:  # rows are sorted by start: the first `active` ones are sampling
                active = tf.reduce_sum(tf.cast(starts <= position, tf.int32))
                logits, new_state = step_fn(inputs[:active], tuple(s[:active] for s in state))
                state = tuple(
                    tf.ensure_shape(tf.concat([tf.cast(new, old.dtype), old[active:]], axis=0), old.shape)
                    for new, old in zip(new_state, state)
                )
                column = tf.concat([next_tokens(logits, position, ids[:active]), tokens_tm[position, active:]], axis=0)
            tokens_tm = tf.tensor_scatter_nd_update(tokens_tm, [[position]], column[tf.newaxis])
            return position + 1, tokens_tm, state

        _, tokens_tm, _ = tf.while_loop(
            lambda position, *_: position < sequence_length, body, (first, tokens_tm, state)
        )
        return tf.transpose(tokens_tm)

    decoded = tf.map_fn(
        decode_chunk,
        (starts, ids, tokens, state),
        fn_output_signature=tf.TensorSpec([chunk_size, sequence_length], tf.int32),
        parallel_iterations=1,
    )
    decoded = tf.reshape(decoded, [-1, sequence_length])[:batch]
    return tf.gather(decoded, tf.math.invert_permutation(order))


def sample_free(generator, batch_size, seed, temperature=1.0, greedy=False, row_offset=0, num_rows=None, **kwargs):
    """Samples `batch_size` whole sequences from `generator`: rows
    row_offset.. of a batch of `num_rows` (default batch_size) drawn with
    `seed` (see `sample_sequences`)."""
    time = generator.sequence_length
    return sample_sequences(
        generator.step,
        tf.zeros([batch_size, time], tf.int32),
        tf.zeros([batch_size], tf.int32),
        generator.initial_state(batch_size),
        generator.start_token,
        seed,
        temperature=temperature,
        greedy=greedy,
        row_ids=row_offset + tf.range(batch_size),
        num_rows=num_rows,
        **kwargs,
    )


def complete_prefixes(generator, prefixes, prefix_lengths, seed, temperature=1.0, greedy=False, **kwargs):
    """Keeps prefixes[n, :prefix_lengths[n]] and samples the rest from `generator`."""
    prefixes = tf.convert_to_tensor(prefixes, tf.int32)
    prefix_lengths = tf.convert_to_tensor(prefix_lengths, tf.int32)
    hidden, cell = generator.prefix_states(prefixes)  # (batch, time, hidden) each
    index = tf.minimum(prefix_lengths, generator.sequence_length - 1)
    state = (tf.gather(hidden, index, batch_dims=1), tf.gather(cell, index, batch_dims=1))
    return sample_sequences(
        generator.step,
        prefixes,
        prefix_lengths,
        state,
        generator.start_token,
        seed,
        temperature=temperature,
        greedy=greedy,
        **kwargs,
    )
