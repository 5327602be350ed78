"""Gumbel-softmax relaxation of the generator's samples (Jang et al. 2017;
Maddison et al. 2017), the training signal of GSGAN (Kusner and
Hernandez-Lobato 2016) and RelGAN (Nie et al. 2019).

At each position the generator's logits l get Gumbel noise g, the hard
sample is argmax(l + g) (the Gumbel-max trick: an exact draw from
softmax(l)), and its relaxation is softmax((l + g) * beta), which tends to
the hard sample's one-hot vector as the inverse temperature beta grows. The
relaxed vector is fed back as the next input (v @ E), so D's judgement of
the relaxed sequence has a gradient with respect to every generator weight.
"""

import tensorflow as tf

SCHEDULES = ("exponential", "linear", "constant")


def gumbel_noise(shape, seed):
    """Standard Gumbel noise -log(-log(u)), u ~ U(0, 1) drawn with `seed` (shape-(2,) int)."""
    tiny = 1e-20  # keeps both logs finite
    uniform = tf.random.stateless_uniform(shape, seed, minval=tiny, maxval=1.0)
    return -tf.math.log(-tf.math.log(uniform) + tiny)


def inverse_temperature(schedule, iteration, iterations, maximum):
    """beta at adversarial iteration `iteration` of `iterations` (0-based
    progress i / N), from 1 to `maximum`: RelGAN's `exponential` is
    maximum ** (i / N), `linear` is 1 + (maximum - 1) i / N, `constant` is
    `maximum` throughout."""
    if schedule not in SCHEDULES:
        raise ValueError(f"--gumbel_schedule={schedule}: expected one of {', '.join(SCHEDULES)}")
    if maximum < 1:
        raise ValueError(f"--gumbel_max_inverse_temperature={maximum}: expected a value >= 1")
    progress = min(max(iteration / max(iterations, 1), 0.0), 1.0)  # the loop's iteration i uses i - 1
    if schedule == "exponential":
        return float(maximum**progress)
    if schedule == "linear":
        return 1.0 + (maximum - 1.0) * progress
    return float(maximum)


FEEDBACKS = ("relaxed", "hard")


def relaxed_sequences(
    generator, batch_size, seed, beta, training=False, row_offset=0, num_rows=None, feedback="relaxed"
):
    """Free-running relaxed samples of `generator`.

    Args:
        generator: a `Generator`.
        batch_size: rows (a Python int or a scalar tensor).
        seed: shape-(2,) int seed of the Gumbel noise.
        beta: the inverse temperature (a float or a scalar tensor).
        row_offset, num_rows: these rows are rows row_offset.. of a batch of
            `num_rows` (default batch_size) drawn with `seed`, so a batch
            split across replicas draws the noise it draws whole.
        feedback: the next position's input: `relaxed`, the relaxed vector
            (v @ E, gradients flow through it: GSGAN), or `hard`, the id
            argmax(l + g) (RelGAN and TextGAN-PyTorch; gradients reach G
            through each position's relaxed output only).

    Returns:
        (relaxed, hard): (batch, time, vocab) float32 relaxed one-hot vectors
        softmax((l + g) * beta), and (batch, time) int32 ids argmax(l + g),
        one draw of the noise g for both.
    """
    time, vocabulary = generator.sequence_length, generator.vocabulary_size
    num_rows = batch_size if num_rows is None else num_rows
    noise = gumbel_noise([time, num_rows, vocabulary], seed)[:, row_offset : row_offset + batch_size]
    weights = generator.output_weights()
    start = tf.fill([batch_size], tf.cast(generator.start_token, tf.int32))
    logits, state = generator.step(start, generator.initial_state(batch_size), training, weights)
    relaxed, hard = [], []
    beta = tf.cast(beta, tf.float32)
    for position in range(time):
        if position and feedback == "hard":
            logits, state = generator.step(hard[-1], state, training, weights)
        elif position:
            logits, state = generator.step_vectors(relaxed[-1], state, training, weights)
        perturbed = logits + noise[position]
        relaxed.append(tf.nn.softmax(perturbed * beta))
        hard.append(tf.argmax(perturbed, axis=-1, output_type=tf.int32))
    return tf.stack(relaxed, axis=1), tf.stack(hard, axis=1)


def gumbel_max_sequences(generator, batch_size, seed):
    """Hard samples with the noise `relaxed_sequences` draws for `seed`: the
    id argmax(l + g) is fed back at each position. An exact draw from the
    generator (the Gumbel-max trick); the relaxed samples' argmax follows it
    as beta grows. (batch, time) int32."""
    time, vocabulary = generator.sequence_length, generator.vocabulary_size
    noise = gumbel_noise([time, batch_size, vocabulary], seed)
    weights = generator.output_weights()
    tokens = tf.fill([batch_size], tf.cast(generator.start_token, tf.int32))
    state = generator.initial_state(batch_size)
    hard = []
    for position in range(time):
        logits, state = generator.step(tokens, state, False, weights)
        tokens = tf.argmax(logits + noise[position], axis=-1, output_type=tf.int32)
        hard.append(tokens)
    return tf.stack(hard, axis=1)
