"""The TensorFlow computations the two artifacts are made of.

Both take the generator's own layers (`Generator.step`, its teacher-forced
call, its output layer and banned-token bias) and the library's sampler; none
restates the LSTM.

- `score_tokens`: per-token log-probabilities of given sequences, from
  `log_softmax` of the teacher-forced logits, 0 after a sequence's end token.
- `onnx_step_function`: one decoding step for ONNX, `(token, h, c,
  temperature, uniforms, bias, greedy) -> (next token, h, c)`; the draw is the
  library's inverse-CDF sample from the given uniforms, in its portable form.
- `sequence_lengths`, `finish`: lengths up to and including the end token,
  padding after it (text runs; synthetic runs have no end token).
"""

import tensorflow as tf

from tfseqgan import sampler, text


def finish(tokens, end_token):
    """Generated ids in the padded form of the training data: (batch, time)."""
    return tokens if end_token is None else text.pad_after_end(tokens, end_token)


def sequence_lengths(tokens, end_token):
    """Tokens up to and including the first end token (all when there is none): (batch,) int32."""
    tokens = tf.convert_to_tensor(tokens, tf.int32)
    if end_token is None:
        return tf.fill([tf.shape(tokens)[0]], tf.shape(tokens)[1])
    return tf.cast(tf.reduce_sum(text.valid_mask(tokens, end_token), axis=1), tf.int32)


def score_tokens(generator, tokens, end_token):
    """log G(tokens[:, t] | tokens[:, :t]), 0 at positions after the end token.

    Args:
        tokens: (batch, time) int32 ids, time = generator.sequence_length.

    Returns:
        dict: log_probs (batch, time) float32, lengths (batch,) int32 (the
        positions that count) and total (batch,) float32 (their sum).
    """
    logits = generator(tokens, training=False)  # (batch, time, vocab)
    log_probs = tf.gather(tf.nn.log_softmax(logits), tokens, batch_dims=2)  # (batch, time)
    if end_token is not None:
        log_probs = tf.where(text.valid_mask(tokens, end_token) > 0, log_probs, tf.zeros_like(log_probs))
    return {
        "log_probs": log_probs,
        "lengths": sequence_lengths(tokens, end_token),
        "total": tf.reduce_sum(log_probs, axis=1),
    }


def onnx_step_function(generator):
    """The tf.function of the ONNX sampler step (see the module docstring).

    Inputs: token (batch,) int32, the id fed at this position; h, c (batch,
    hidden) float32; temperature () float32 > 0; uniforms (batch, 2) float32 in
    [0, 1); bias (vocab,) float32 added to the logits (-1e9 bans an id);
    greedy () bool, argmax instead of sampling. Outputs: next_token (batch,)
    int32, next_h, next_c.

    The temperature divides the output layer's kernel and bias (vocab x hidden
    values) rather than every logit (batch x vocab); argmax is only computed on
    the greedy branch (an ONNX If), as ONNX Runtime's ArgMax over the whole
    vocabulary costs more than the rest of a sampling step.
    """
    hidden_dim, vocab = generator.hidden_dim, generator.vocabulary_size

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32, name="token"),
            tf.TensorSpec([None, hidden_dim], tf.float32, name="h"),
            tf.TensorSpec([None, hidden_dim], tf.float32, name="c"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([None, 2], tf.float32, name="uniforms"),
            tf.TensorSpec([vocab], tf.float32, name="bias"),
            tf.TensorSpec([], tf.bool, name="greedy"),
        ]
    )
    def step(token, h, c, temperature, uniforms, bias, greedy):
        _, (next_h, next_c) = generator.step(token, (h, c))  # its own logits are pruned from the graph
        scale = 1.0 / temperature
        kernel = tf.convert_to_tensor(generator.output_layer.kernel) * scale  # (hidden, vocab)
        logits = tf.nn.bias_add(tf.matmul(next_h, kernel), (generator.output_bias() + bias) * scale)  # (batch, vocab)
        next_token = tf.cond(
            greedy,
            lambda: tf.argmax(logits, axis=1, output_type=tf.int32),
            lambda: sampler.inverse_cdf_sample(logits, uniforms, portable=True),
        )
        return {"next_token": next_token, "next_h": next_h, "next_c": next_c}

    return step


def onnx_score_function(generator, end_token):
    """The tf.function of the ONNX scorer: ids (batch, time) int32 -> `score_tokens`."""

    @tf.function(input_signature=[tf.TensorSpec([None, generator.sequence_length], tf.int32, name="ids")])
    def score(ids):
        return score_tokens(generator, ids, end_token)

    return score
