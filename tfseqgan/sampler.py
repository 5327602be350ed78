"""The one sampling loop: free sampling, Monte-Carlo rollout from prefixes,
prefix-conditioned and constrained generation are all `sample_sequences` with
different given tokens, start positions and "keep these given tokens" masks."""

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
    if uniforms is None:
        uniforms = tf.random.stateless_uniform([tf.shape(logits)[0], 2], seed=seed)  # (batch, 2)
    return inverse_cdf_sample(logits, uniforms, block_size)


def _last_index_at_most_by_counting(cdf, target):
    """`_last_index_at_most` from comparisons and sums only (no searchsorted,
    no nextafter, which tf2onnx cannot convert): the same index."""
    at_most = tf.reduce_sum(tf.cast(cdf <= target[:, tf.newaxis], tf.int32), axis=1)
    below_total = tf.reduce_sum(tf.cast(cdf < cdf[:, -1:], tf.int32), axis=1)  # first entry reaching the total
    return tf.minimum(at_most, below_total)


def _cumsum_rows(values):
    """Inclusive prefix sums along axis 1 of (rows, n) with a static n, as a
    MatMul by the upper-triangular ones: on CPU several times faster than
    the Cumsum kernel for rows this short, and the same sums (each column
    adds the same terms in the same order; the zeros add nothing)."""
    n = values.shape[1]
    return tf.matmul(values, tf.linalg.band_part(tf.ones([n, n], values.dtype), 0, -1))


def inverse_cdf_sample(logits, uniforms, block_size=None, portable=False):
    """The draw of `categorical_sample` from given uniforms.

    Args:
        logits: (batch, vocab) float32.
        uniforms: (batch, 2) float32 in [0, 1): the block's and the id's.
        block_size: ids per block; None picks `default_block_size(vocab)`.
        portable: find the index in each CDF by counting entries instead of
            `tf.searchsorted`, so the graph converts to ONNX; same ids.

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
    find = _last_index_at_most_by_counting if portable else _last_index_at_most

    # If u * total rounds up to total, stop at the last block (id) with mass,
    # never past it (nor into padding).
    block_cdf = _cumsum_rows(tf.reduce_sum(probs, axis=2))  # (batch, blocks)
    block = find(block_cdf, uniforms[:, 0] * block_cdf[:, -1])
    inner_cdf = _cumsum_rows(tf.gather(probs, block, batch_dims=1))  # (batch, block_size)
    offset = find(inner_cdf, uniforms[:, 1] * inner_cdf[:, -1])
    return block * block_size + offset


def inverse_cdf_sample_shared(logits, uniforms, block_size=None):
    """`inverse_cdf_sample` of every row of `uniforms` from one distribution,
    softmax(logits) with logits (vocab,): the softmax, block masses and
    cumulative sums are computed once, not once per row.

    Args:
        logits: (vocab,) float32.
        uniforms: (batch, 2) float32 in [0, 1): the block's and the id's.
        block_size: ids per block; None picks `default_block_size(vocab)`.

    Returns:
        (batch,) int32 ids.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    vocab = logits.shape[-1]
    if block_size is None:
        block_size = default_block_size(vocab)
    num_blocks = -(-vocab // block_size)
    batch = tf.shape(uniforms)[0]
    probs = tf.pad(tf.nn.softmax(logits), [[0, num_blocks * block_size - vocab]])
    probs = tf.reshape(probs, [num_blocks, block_size])
    block_cdf = _cumsum_rows(tf.reduce_sum(probs, axis=1)[tf.newaxis])  # (1, blocks)
    block = _last_index_at_most(tf.tile(block_cdf, [batch, 1]), uniforms[:, 0] * block_cdf[0, -1])
    inner_cdf = tf.gather(_cumsum_rows(probs), block)  # (batch, block_size)
    offset = _last_index_at_most(inner_cdf, uniforms[:, 1] * inner_cdf[:, -1])
    return block * block_size + offset


# Bytes of one step's float32 logits that `sample_sequences` lets a chunk of
# rows take (a few tensors of that size are alive at once).
CHUNK_LOGITS_BYTES = 256 * 2**20


# At most this many rows per chunk with static shapes (see `sample_sequences`).
STATIC_CHUNK_ROWS = 1024


def default_chunk_size(rows, vocab, logits_bytes=None, most_rows=None):
    """Rows `sample_sequences` decodes together: all of them when one step's
    (rows, vocab) float32 logits fit in `logits_bytes` (default
    CHUNK_LOGITS_BYTES) and they are at most `most_rows`, else equal chunks
    that are. Each step of each chunk costs a few dozen small ops besides the
    full-vocabulary ones, so fewer, larger chunks are faster (9,984 samples
    at vocabulary 5,000: 0.95 s in one chunk, 1.1 s in chunks of 1,024); the
    budget bounds memory. `rows` may be a tensor; the result is then an int32
    scalar tensor."""
    logits_bytes = CHUNK_LOGITS_BYTES if logits_bytes is None else logits_bytes
    most = max(1, logits_bytes // (4 * vocab))
    if most_rows is not None:
        most = min(most, most_rows)
    num_chunks = (rows + most - 1) // most
    num_chunks = tf.maximum(num_chunks, 1) if isinstance(num_chunks, tf.Tensor) else max(num_chunks, 1)
    return (rows + num_chunks - 1) // num_chunks


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
    chunk_size=None,
    row_ids=None,
    num_rows=None,
    static_shapes=False,
    keep_mask=None,
    logit_bias=None,
    vocabulary_size=None,
):
    """Runs the decoding loop, keeping given tokens before each row's start.

    Row n keeps given_tokens[n, :start_positions[n]] and samples the rest,
    except where `keep_mask` asks to keep a given token later on too.
    Rows are sorted by start position and decoded in chunks of `chunk_size`
    rows, by default as few as a memory budget allows (`default_chunk_size`:
    a step's logits outgrow the cache at any useful size, and every step of
    every chunk costs a few dozen small ops); inside a chunk a step computes
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
        chunk_size: rows decoded together; None: `default_chunk_size` of
            the batch and `vocabulary_size`, at most STATIC_CHUNK_ROWS with
            static shapes (where a chunk's rows all run from its earliest
            start, so a rollout in few chunks would compute most rows at
            every step).
        row_ids: (batch,) int32 global ids of the rows; default 0..batch-1.
        num_rows: number of global rows (> every id); default batch.
        static_shapes: compute every row of a chunk at every step and keep
            the given tokens by masking, instead of slicing out the rows
            that are sampling: every shape is static, as XLA needs.
        keep_mask: None or (batch, time) bool: where True, the given token is
            kept (and fed to the next step) instead of a sampled one, at any
            position (constrained generation, e.g. the first character of
            each line of an acrostic).
        logit_bias: None or (time, vocab) float32 added to the logits of each
            position before temperature and argmax (-1e9 bans an id there).
        vocabulary_size: the width of step_fn's logits; needed when
            chunk_size is None.

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

    if chunk_size is None:
        if vocabulary_size is None:
            raise ValueError("sample_sequences: pass chunk_size, or vocabulary_size for the default chunk size")
        static_batch = given_tokens.shape[0]
        chunk_size = default_chunk_size(
            batch if static_batch is None else static_batch,
            vocabulary_size,
            # every row runs every step from its chunk's earliest start: keep chunks small
            most_rows=STATIC_CHUNK_ROWS if static_shapes else None,
        )
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
    keep = () if keep_mask is None else (chunked(tf.convert_to_tensor(keep_mask, tf.bool), False),)

    def next_tokens(logits, position, ids):
        if logit_bias is not None:
            logits = logits + logit_bias[position]
        if greedy:
            return tf.argmax(logits, axis=1, output_type=tf.int32)
        if not (isinstance(temperature, float) and temperature == 1.0):
            logits = logits / temperature
        return categorical_sample(logits, uniforms=tf.gather(noise[position], ids))

    def decode_chunk(elements):
        starts, ids, tokens, state, *keep_chunk = elements
        tokens_tm = tf.transpose(tokens)  # (time, chunk)
        keep_tm = tf.transpose(keep_chunk[0]) if keep_chunk else None  # (time, chunk)
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
                drawn = sampling if keep_tm is None else tf.logical_and(sampling, tf.logical_not(keep_tm[position]))
                column = tf.where(drawn, next_tokens(logits, position, ids), tokens_tm[position])
            else:  # rows are sorted by start: the first `active` ones are sampling
                active = tf.reduce_sum(tf.cast(starts <= position, tf.int32))
                logits, new_state = step_fn(inputs[:active], tuple(s[:active] for s in state))
                state = tuple(
                    tf.ensure_shape(tf.concat([tf.cast(new, old.dtype), old[active:]], axis=0), old.shape)
                    for new, old in zip(new_state, state)
                )
                sampled = next_tokens(logits, position, ids[:active])
                if keep_tm is not None:
                    sampled = tf.where(keep_tm[position, :active], tokens_tm[position, :active], sampled)
                column = tf.concat([sampled, tokens_tm[position, active:]], axis=0)
            tokens_tm = tf.tensor_scatter_nd_update(tokens_tm, [[position]], column[tf.newaxis])
            return position + 1, tokens_tm, state

        _, tokens_tm, _ = tf.while_loop(
            lambda position, *_: position < sequence_length, body, (first, tokens_tm, state)
        )
        return tf.transpose(tokens_tm)

    decoded = tf.map_fn(
        decode_chunk,
        (starts, ids, tokens, state, *keep),
        fn_output_signature=tf.TensorSpec(
            [chunk_size if isinstance(chunk_size, int) else None, sequence_length], tf.int32
        ),
        parallel_iterations=1,
    )
    decoded = tf.reshape(decoded, [-1, sequence_length])[:batch]
    return tf.gather(decoded, tf.math.invert_permutation(order))


def sample_free(generator, batch_size, seed, temperature=1.0, greedy=False, row_offset=0, num_rows=None, **kwargs):
    """Samples `batch_size` whole sequences from `generator`: rows
    row_offset.. of a batch of `num_rows` (default batch_size) drawn with
    `seed` (see `sample_sequences`).

    Every row starts from the same state and start token, so the first
    position's distribution is computed once and each row draws its first
    token from it (with the uniforms `sample_sequences` would give it); the
    loop samples the rest, one position less of full-vocabulary work.
    """
    time = generator.sequence_length
    step = generator.decoding_step()
    row_ids = row_offset + tf.range(batch_size)
    num_rows = batch_size if num_rows is None else num_rows
    logits, state = step(tf.fill([1], tf.cast(generator.start_token, tf.int32)), generator.initial_state(1))
    logit_bias = kwargs.get("logit_bias")
    if logit_bias is not None:
        logits = logits + logit_bias[0]
    if greedy:
        first = tf.fill([batch_size], tf.argmax(logits[0], output_type=tf.int32))
    else:
        if not (isinstance(temperature, float) and temperature == 1.0):
            logits = logits / temperature
        seed = tf.cast(seed, tf.int64)
        noise = tf.random.stateless_uniform([num_rows, 2], tf.random.experimental.stateless_fold_in(seed, 0))
        first = inverse_cdf_sample_shared(logits[0], tf.gather(noise, row_ids))
    given = tf.pad(first[:, tf.newaxis], [[0, 0], [0, time - 1]])
    return sample_sequences(
        step,
        given,
        tf.ones([batch_size], tf.int32),
        tuple(tf.repeat(s, batch_size, axis=0) for s in state),
        generator.start_token,
        seed,
        vocabulary_size=generator.vocabulary_size,
        temperature=temperature,
        greedy=greedy,
        row_ids=row_ids,
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
        generator.decoding_step(),
        prefixes,
        prefix_lengths,
        state,
        generator.start_token,
        seed,
        vocabulary_size=generator.vocabulary_size,
        temperature=temperature,
        greedy=greedy,
        **kwargs,
    )


def sample_with_given_tokens(
    generator, given_tokens, keep_mask, seed, temperature=1.0, greedy=False, logit_bias=None, **kwargs
):
    """Samples whole sequences from `generator`, keeping given_tokens[n, t]
    wherever keep_mask[n, t] (constrained generation: the kept tokens are fed
    on, so what follows them is conditioned on them)."""
    given_tokens = tf.convert_to_tensor(given_tokens, tf.int32)
    batch = tf.shape(given_tokens)[0]
    return sample_sequences(
        generator.decoding_step(),
        given_tokens,
        tf.zeros([batch], tf.int32),
        generator.initial_state(batch),
        generator.start_token,
        seed,
        vocabulary_size=generator.vocabulary_size,
        temperature=temperature,
        greedy=greedy,
        keep_mask=keep_mask,
        logit_bias=logit_bias,
        **kwargs,
    )
