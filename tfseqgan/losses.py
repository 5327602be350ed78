"""Losses, all computed from logits.

Each loss can be one replica's share of a loss over a global batch split
across replicas: sums are divided by a global `total` (token positions or
rows), so the shares add up to the single-device loss.
"""

import tensorflow as tf


def masked_mean(values, mask=None, total=None):
    """Mean of `values` over the positions where `mask` is 1 (all when None);
    with `total`, the sum over those positions divided by `total` instead
    (this replica's share of a mean over all replicas' positions)."""
    if mask is None:
        mask = tf.ones_like(values)
    mask = tf.cast(mask, values.dtype)
    if total is None:
        total = tf.maximum(tf.reduce_sum(mask), 1.0)
    return tf.reduce_sum(values * mask) / tf.cast(total, values.dtype)


def mle_loss(generator, tokens, training=True, mask=None, total=None):
    """Mean per-token negative log-likelihood of `tokens` under `generator`,
    over the positions where `mask` (batch, time) is 1 (text: up to the end
    token); see `masked_mean` for `total`."""
    return -masked_mean(generator.token_log_probs(tokens, training=training), mask, total)


def policy_gradient_loss(generator, tokens, rewards, training=True, mask=None, total=None, entropy_bonus=0.0):
    """REINFORCE: -mean_{b,t} log G(y_t | y_<t) * Q_t, over unmasked positions.

    The paper's code sums over batch and time; a mean over both keeps the
    gradient on the same scale as the MLE loss, so one clip norm serves both
    (Adam is insensitive to the constant factor otherwise). `rewards` may be
    advantages (Q minus a baseline). With `entropy_bonus` > 0 the loss also
    subtracts entropy_bonus * mean_{b,t} H(G(. | y_<t)), the entropy of the
    whole next-token distribution at each position (a push against collapse).
    """
    if not entropy_bonus:
        log_probs = generator.token_log_probs(tokens, training=training)  # (batch, time)
        return -masked_mean(log_probs * tf.stop_gradient(rewards), mask, total)
    logits = generator(tokens, training=training)  # (batch, time, vocab)
    log_probs = tf.gather(tf.nn.log_softmax(logits), tokens, batch_dims=2)  # (batch, time)
    entropy = entropy_of_logits(logits)  # (batch, time)
    return -masked_mean(log_probs * tf.stop_gradient(rewards), mask, total) - entropy_bonus * masked_mean(
        entropy, mask, total
    )


def discriminator_loss(
    discriminator, tokens, labels, training=True, dropout_seed=None, row_offset=0, num_replicas=1, kind="standard"
):
    """Softmax cross-entropy (labels: 1 real, 0 fake) plus the output-layer L2.

    `kind` "relativistic" or "relativistic_average" replaces the
    cross-entropy by `relativistic_discriminator_loss` of the critic values;
    the rows must then alternate real, fake (labels 1, 0, 1, 0, ...), each
    real row paired with the fake row after it.

    `dropout_seed` (shape-(2,) int) seeds the dropout mask when training.
    With `num_replicas` > 1, `tokens` are rows row_offset.. of a global batch
    num_replicas times as large, and the result is this replica's share:
    the cross-entropy sum over the global batch size, plus 1/num_replicas of
    the L2 term.

    Returns:
        (total loss, cross-entropy, logits).
    """
    rows = tf.shape(tokens)[0] * num_replicas
    logits = discriminator(
        tokens, training=training, dropout_seed=dropout_seed, row_offset=row_offset, num_rows=rows
    )  # (batch, 2)
    if kind == "standard":
        per_row = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        cross_entropy = tf.reduce_sum(per_row) / tf.cast(rows, tf.float32)
    else:
        pairs = tf.reshape(critic_of_logits(logits), [-1, 2])  # (pairs, [real, fake])
        cross_entropy = relativistic_discriminator_loss(
            pairs[:, 0], pairs[:, 1], kind == "relativistic_average", total=rows // 2
        )
    return cross_entropy + discriminator.regularization_loss() / num_replicas, cross_entropy, logits


# ---------------------------------------------------------------- variants
D_LOSSES = ("standard", "relativistic", "relativistic_average")
REWARD_BASELINES = ("none", "batch_mean", "moving_average")


def critic_of_logits(logits):
    """C(x) = logit(real) - logit(fake) of D's two-class logits (batch, 2):
    sigmoid(C) is the softmax's P(real), and the relativistic losses compare
    C of real and generated sequences."""
    return logits[:, 1] - logits[:, 0]


def relativistic_discriminator_loss(real_critic, fake_critic, average, total=None):
    """The relativistic D losses (Jolicoeur-Martineau, 2018), from critic values.

    RSGAN (`average` False): real_critic[i] and fake_critic[i] are a pair,
        mean_i -log sigmoid(C(real_i) - C(fake_i)).
    RaSGAN (`average` True): each side against the other side's mean,
        (sum_i -log sigmoid(C(real_i) - mean C(fake))
         + sum_i -log(1 - sigmoid(C(fake_i) - mean C(real)))) / (2 * pairs).

    -log sigmoid(x) is softplus(-x), computed from the logits. With `total`,
    the sums are divided by `total` pairs instead of this batch's (a
    replica's share); RaSGAN's means stay over the rows given.
    """
    pairs = tf.cast(tf.shape(real_critic)[0] if total is None else total, tf.float32)
    if not average:
        return tf.reduce_sum(tf.nn.softplus(fake_critic - real_critic)) / pairs
    real_term = tf.nn.softplus(-(real_critic - tf.reduce_mean(fake_critic)))
    fake_term = tf.nn.softplus(fake_critic - tf.reduce_mean(real_critic))
    return (tf.reduce_sum(real_term) + tf.reduce_sum(fake_term)) / (2.0 * pairs)


def generator_adversarial_loss(d_loss, real_critic, fake_critic, total=None):
    """The generator's side of each D loss, from critic values (the
    objectives whose gradient passes through D):

    - standard: the non-saturating mean_i -log sigmoid(C(fake_i));
    - relativistic (RSGAN): mean_i -log sigmoid(C(fake_i) - C(real_i)), pairs;
    - relativistic_average (RaSGAN): the D loss with real and fake swapped.

    With `total`, sums are divided by `total` rows (pairs) instead of this
    batch's (a replica's share). real_critic is unused by `standard`.
    """
    if d_loss == "standard":
        rows = tf.cast(tf.shape(fake_critic)[0] if total is None else total, tf.float32)
        return tf.reduce_sum(tf.nn.softplus(-fake_critic)) / rows
    if d_loss in ("relativistic", "relativistic_average"):
        return relativistic_discriminator_loss(fake_critic, real_critic, d_loss == "relativistic_average", total)
    raise ValueError(f"d_loss must be one of {', '.join(D_LOSSES)}, got {d_loss!r}")


def rewards_from_critic(d_loss, critic, real_critic):
    """The reward of generated sequences with critic values `critic` (any
    shape), relative to the real sequences of the batch (real_critic (n,)):

    - standard: sigmoid(C), D's P(real) (real_critic unused);
    - relativistic: mean_j sigmoid(C - C(real_j)), the chance D ranks the
      sequence above a real one of the batch;
    - relativistic_average: sigmoid(C - mean_j C(real_j)).
    """
    if d_loss == "standard":
        return tf.sigmoid(critic)
    if d_loss == "relativistic_average":
        return tf.sigmoid(critic - tf.reduce_mean(real_critic))
    if d_loss == "relativistic":
        return tf.reduce_mean(tf.sigmoid(critic[..., tf.newaxis] - real_critic), axis=-1)
    raise ValueError(f"d_loss must be one of {', '.join(D_LOSSES)}, got {d_loss!r}")


def batch_mean_per_position(rewards, mask=None, sums=None):
    """mean_b rewards[b, t] over unmasked rows, (time,). `sums` (optional)
    turns a local (numerator, denominator) pair into global ones (the
    all-reduce of a replica's share); a position no row reaches gets 0."""
    mask = tf.ones_like(rewards) if mask is None else tf.cast(mask, rewards.dtype)
    numerator, denominator = tf.reduce_sum(rewards * mask, axis=0), tf.reduce_sum(mask, axis=0)
    if sums is not None:
        numerator, denominator = sums(numerator), sums(denominator)
    return numerator / tf.maximum(denominator, 1.0)


def moving_average_baseline(previous, steps, batch_mean, decay):
    """The baseline of this batch and the moving average after it.

    The first batch (steps == 0) is its own baseline; later batches use the
    average of the batches before them, b <- decay * b + (1 - decay) * mean.

    Returns:
        (baseline used now (time,), updated average (time,)).
    """
    first = tf.equal(steps, 0)
    used = tf.where(first, batch_mean, previous)
    return used, tf.where(first, batch_mean, decay * previous + (1.0 - decay) * batch_mean)


def entropy_of_logits(logits):
    """H(softmax(logits)) over the last axis, from log_softmax."""
    log_probs = tf.nn.log_softmax(logits)
    return -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)


def gradient_penalty(critic_fn, real, fake, epsilon, total=None):
    """WGAN-GP's penalty (Gulrajani et al. 2017): sum_i (||grad C(x_i)||_2 - 1)^2
    over the interpolates x_i = epsilon_i * real_i + (1 - epsilon_i) * fake_i,
    divided by `total` rows (default: these rows).

    Args:
        critic_fn: (rows, time, vocab) float -> (rows,) critic values.
        real, fake: (rows, time, vocab) float.
        epsilon: (rows,) in [0, 1].
    """
    epsilon = tf.cast(epsilon, real.dtype)[:, tf.newaxis, tf.newaxis]
    interpolates = epsilon * real + (1.0 - epsilon) * fake
    with tf.GradientTape() as tape:
        tape.watch(interpolates)
        critic = tf.reduce_sum(critic_fn(interpolates))  # rows are independent: each row's gradient
    gradients = tape.gradient(critic, interpolates)
    # The tiny term keeps the norm's gradient finite where the gradient is 0.
    norms = tf.sqrt(tf.reduce_sum(tf.square(tf.cast(gradients, tf.float32)), axis=[1, 2]) + 1e-12)
    rows = tf.cast(tf.shape(real)[0] if total is None else total, tf.float32)
    return tf.reduce_sum(tf.square(norms - 1.0)) / rows


def wasserstein_critic_loss(real_critic, fake_critic, total=None):
    """E[C(fake)] - E[C(real)], the critic's side of the Wasserstein loss
    (sums divided by `total` rows of each side when given)."""
    rows = tf.cast(tf.shape(real_critic)[0] if total is None else total, tf.float32)
    return (tf.reduce_sum(fake_critic) - tf.reduce_sum(real_critic)) / rows
