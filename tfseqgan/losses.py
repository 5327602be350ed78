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


def policy_gradient_loss(generator, tokens, rewards, training=True, mask=None, total=None):
    """REINFORCE: -mean_{b,t} log G(y_t | y_<t) * Q_t, over unmasked positions.

    The paper's code sums over batch and time; a mean over both keeps the
    gradient on the same scale as the MLE loss, so one clip norm serves both
    (Adam is insensitive to the constant factor otherwise).
    """
    log_probs = generator.token_log_probs(tokens, training=training)  # (batch, time)
    return -masked_mean(log_probs * tf.stop_gradient(rewards), mask, total)


def discriminator_loss(discriminator, tokens, labels, training=True, dropout_seed=None, row_offset=0, num_replicas=1):
    """Softmax cross-entropy (labels: 1 real, 0 fake) plus the output-layer L2.

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
    per_row = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    cross_entropy = tf.reduce_sum(per_row) / tf.cast(rows, tf.float32)
    return cross_entropy + discriminator.regularization_loss() / num_replicas, cross_entropy, logits
