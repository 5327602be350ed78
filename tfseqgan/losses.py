"""Losses, all computed from logits."""

import tensorflow as tf


def masked_mean(values, mask=None):
    """Mean of `values` over the positions where `mask` is 1 (all when None)."""
    if mask is None:
        return tf.reduce_mean(values)
    mask = tf.cast(mask, values.dtype)
    return tf.reduce_sum(values * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def mle_loss(generator, tokens, training=True, mask=None):
    """Mean per-token negative log-likelihood of `tokens` under `generator`,
    over the positions where `mask` (batch, time) is 1 (text: up to the end token)."""
    return -masked_mean(generator.token_log_probs(tokens, training=training), mask)


def policy_gradient_loss(generator, tokens, rewards, training=True, mask=None):
    """REINFORCE: -mean_{b,t} log G(y_t | y_<t) * Q_t, over unmasked positions.

    The paper's code sums over batch and time; a mean over both keeps the
    gradient on the same scale as the MLE loss, so one clip norm serves both
    (Adam is insensitive to the constant factor otherwise).
    """
    log_probs = generator.token_log_probs(tokens, training=training)  # (batch, time)
    return -masked_mean(log_probs * tf.stop_gradient(rewards), mask)


def discriminator_loss(discriminator, tokens, labels, training=True, dropout_seed=None):
    """Softmax cross-entropy (labels: 1 real, 0 fake) plus the output-layer L2.

    `dropout_seed` (shape-(2,) int) seeds the dropout mask when training.

    Returns:
        (total loss, cross-entropy, logits).
    """
    logits = discriminator(tokens, training=training, dropout_seed=dropout_seed)  # (batch, 2)
    cross_entropy = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    return cross_entropy + discriminator.regularization_loss(), cross_entropy, logits
