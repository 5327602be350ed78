"""The generator G_theta: an LSTM language model over a fixed-length sequence.

Reference: Yu et al., "SeqGAN: Sequence Generative Adversarial Nets with Policy
Gradient", AAAI 2017, section "The Generative Model for Sequences".
"""

import keras
import tensorflow as tf


def fold_bias(kernel, bias):
    """The (hidden + 1, vocab) weights of `affine`: the kernel with the bias
    as its last row."""
    return tf.concat([kernel, bias[tf.newaxis]], axis=0)


def affine(rows, weights):
    """rows @ kernel + bias as one MatMul, [rows, 1] @ fold_bias(kernel, bias).

    On CPU a BiasAdd (even one grappler fuses into the MatMul) costs another
    pass over the (rows, vocab) output, about a third of the output layer's
    time at vocabulary 5,000; the folded bias costs one extra input column.
    """
    ones = tf.ones_like(rows[:, :1])
    return tf.matmul(tf.concat([rows, ones], axis=1), weights)


# Below this a float32 probability loses precision (subnormals from 1.2e-38)
# or flushes to zero, and its log is taken the long way (`output_log_probs`).
_SMALLEST_DIRECT_PROBABILITY = 1e-30


@tf.custom_gradient
def output_log_probs(hidden, kernel, bias, targets):
    """log softmax(hidden @ kernel + bias)[row, targets[row]] for each row.

    One fused softmax instead of the chain of ops that autodiff of
    `logits - logsumexp(logits)` builds, and a hand-written gradient that
    only reads the saved softmax (two matmuls) instead of writing a
    (rows, vocab) gradient of the logits. This is the hot spot of MLE and
    policy-gradient steps.

    Args:
        hidden: (rows, hidden) float32.
        kernel: (hidden, vocab); bias: (vocab,).
        targets: (rows,) int32 ids.

    Returns:
        (rows,) float32 log-probabilities.
    """
    logits = affine(hidden, fold_bias(kernel, bias))  # (rows, vocab)
    probs = tf.nn.softmax(logits)
    target_probs = tf.gather(probs, targets, batch_dims=1)

    def via_most_likely():
        # log Z = logit - log p at the most likely id, whose p >= 1/vocab
        # never underflows. The ArgMax costs a sixth of an MLE step on CPU,
        # so it only runs when some target's probability is too small for
        # its log to be read off directly.
        top = tf.argmax(logits, axis=1, output_type=tf.int32)
        log_normalizer = tf.gather(logits, top, batch_dims=1) - tf.math.log(tf.gather(probs, top, batch_dims=1))
        return tf.gather(logits, targets, batch_dims=1) - log_normalizer

    log_probs = tf.cond(
        tf.reduce_all(target_probs >= _SMALLEST_DIRECT_PROBABILITY),
        lambda: tf.math.log(target_probs),
        via_most_likely,
    )

    def gradient(upstream):  # upstream: (rows,)
        # d_logits = upstream * (one_hot(targets) - probs) is never formed: its
        # dense part is read straight from `probs` by two matmuls, its one-hot
        # part is a sparse scatter of rows x (hidden + 1) values.
        vocab = tf.shape(probs)[1]
        weighted = tf.concat([hidden * upstream[:, tf.newaxis], upstream[:, tf.newaxis]], axis=1)  # (rows, hidden + 1)
        dense = tf.matmul(weighted, probs, transpose_a=True)  # (hidden + 1, vocab)
        sparse = tf.transpose(tf.math.unsorted_segment_sum(weighted, targets, vocab))  # (hidden + 1, vocab)
        d_kernel_and_bias = sparse - dense
        d_hidden = upstream[:, tf.newaxis] * (
            tf.transpose(tf.gather(kernel, targets, axis=1)) - tf.matmul(probs, kernel, transpose_b=True)
        )  # (rows, hidden)
        return d_hidden, d_kernel_and_bias[:-1], d_kernel_and_bias[-1], None

    return log_probs, gradient


@keras.saving.register_keras_serializable(package="tfseqgan")
class Generator(keras.Model):
    """Embedding -> LSTM -> logits over the vocabulary.

    Two entry points share one `keras.layers.LSTMCell`:
    `step(tokens, state) -> (logits, state)` for sampling, and the
    teacher-forced `call(tokens)` for maximum likelihood and for the
    log-probability of given sequences. Position 0 is fed `start_token`.

    Args:
        vocabulary_size: number of token ids.
        sequence_length: length of every sequence.
        embedding_dim: token embedding size.
        hidden_dim: LSTM state size.
        start_token: id fed as the input of position 0 (an ordinary id).
        init_stddev: standard deviation of the N(0, s) initializer of every
            weight and bias, as in the paper's code.
        seed: seed of the initializers.
        banned_tokens: ids the model never emits (text corpora ban <pad> and
            <s>): their logits get -1e9 added, so sampling never draws them
            and their probabilities are 0 in every log-probability.
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim=32,
        hidden_dim=32,
        start_token=0,
        init_stddev=0.1,
        seed=None,
        banned_tokens=(),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.start_token = start_token
        self.init_stddev = init_stddev
        self.seed = seed
        self.banned_tokens = tuple(int(token) for token in banned_tokens)
        mask = [0.0] * vocabulary_size
        for token in self.banned_tokens:
            mask[token] = -1e9
        self._logit_mask = tf.constant(mask, tf.float32) if self.banned_tokens else None

        def init(offset):
            s = None if seed is None else seed + offset
            return keras.initializers.RandomNormal(stddev=init_stddev, seed=s)

        # Sublayers share the model's dtype policy: under mixed precision the
        # embedding and LSTM compute in bfloat16/float16, variables stay float32.
        policy = self.dtype_policy
        self.embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim, embeddings_initializer=init(0), dtype=policy, name="embedding"
        )
        self.cell = keras.layers.LSTMCell(
            hidden_dim,
            kernel_initializer=init(1),
            recurrent_initializer=init(2),
            bias_initializer=init(3),
            unit_forget_bias=False,
            dtype=policy,
            name="lstm_cell",
        )
        self.output_layer = keras.layers.Dense(
            vocabulary_size, kernel_initializer=init(4), bias_initializer=init(5), dtype="float32", name="logits"
        )
        self.embedding.build((None,))
        self.cell.build((None, embedding_dim))
        self.output_layer.build((None, hidden_dim))
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            start_token=self.start_token,
            init_stddev=self.init_stddev,
            seed=self.seed,
            banned_tokens=list(self.banned_tokens),
        )
        return config

    def initial_state(self, batch_size):
        """Zero (h, c), each (batch, hidden)."""
        zeros = tf.zeros([batch_size, self.hidden_dim], self.compute_dtype)
        return (zeros, zeros)

    def step(self, tokens, state, training=False, output_weights=None):
        """One decoding step.

        Args:
            tokens: (batch,) int ids fed at this position.
            state: (h, c), each (batch, hidden).
            output_weights: `output_weights()` read once before a decoding
                loop (see `decoding_step`); None reads them here.

        Returns:
            logits (batch, vocab) in float32 and the next (h, c).
        """
        inputs = self.embedding(tokens)  # (batch, embed)
        hidden, (hidden, cell) = self.cell(inputs, [state[0], state[1]], training=training)
        return self.logits(hidden, output_weights), (hidden, cell)

    def step_vectors(self, vectors, state, training=False, output_weights=None):
        """`step` fed distributions over the vocabulary (batch, vocab) instead
        of ids: the input embeds as vectors @ E (a one-hot vector gives its
        id's embedding). The Gumbel-softmax generator feeds its relaxed
        samples back this way, so gradients flow through them."""
        table = tf.cast(self.embedding.embeddings, self.compute_dtype)
        inputs = tf.matmul(tf.cast(vectors, self.compute_dtype), table)  # (batch, embed)
        hidden, (hidden, cell) = self.cell(inputs, [state[0], state[1]], training=training)
        return self.logits(hidden, output_weights), (hidden, cell)

    def decoding_step(self):
        """`step` with the output layer's weights read (and their bias folded
        in) once, for a decoding loop: `fn(tokens, state) -> (logits, state)`."""
        weights = self.output_weights()
        return lambda tokens, state: self.step(tokens, state, output_weights=weights)

    def output_bias(self):
        """The output layer's bias, with the banned tokens' mask added."""
        bias = tf.convert_to_tensor(self.output_layer.bias)
        if self._logit_mask is not None:
            bias = bias + tf.cast(self._logit_mask, bias.dtype)
        return bias

    def output_weights(self):
        """The output layer as `affine` weights, (hidden + 1, vocab) float32."""
        # Cast, not read: inside a mixed-precision call Keras autocasts variable reads.
        return fold_bias(tf.cast(self.output_layer.kernel, tf.float32), tf.cast(self.output_bias(), tf.float32))

    def logits(self, hidden, output_weights=None):
        """Output layer as one MatMul with the bias folded in (`affine`), in
        float32 under any dtype policy: sampling reads these logits."""
        weights = self.output_weights() if output_weights is None else output_weights
        flat = tf.reshape(tf.cast(hidden, tf.float32), [-1, hidden.shape[-1]])  # (rows, hidden): one 2-D MatMul
        logits = affine(flat, weights)
        return tf.reshape(logits, tf.concat([tf.shape(hidden)[:-1], [self.vocabulary_size]], axis=0))

    def _shifted_inputs(self, tokens):
        """Inputs of each position: start token, then tokens[:, :-1]."""
        batch = tf.shape(tokens)[0]
        start = tf.fill([batch, 1], tf.cast(self.start_token, tokens.dtype))
        return tf.concat([start, tokens[:, :-1]], axis=1)  # (batch, time)

    def run_states(self, tokens, training=False):
        """Teacher-forced LSTM pass.

        Returns:
            (h, c), each (batch, time, hidden): the state *after* the input of
            each position, i.e. the state that produced that position's logits.
        """
        inputs = self.embedding(self._shifted_inputs(tokens))  # (batch, time, embed)
        state = self.initial_state(tf.shape(tokens)[0])
        hidden, cell = [], []
        # Unrolled over the (static) length: no while-loop overhead, and the
        # backward pass is plain graph code.
        # One Unpack (whose gradient is one Pack) rather than a slice per
        # position: each slice's gradient writes a whole (batch, time, embed)
        # tensor of zeros.
        for step_inputs in tf.unstack(inputs, num=tokens.shape[1], axis=1):
            _, state = self.cell(step_inputs, list(state), training=training)
            hidden.append(state[0])
            cell.append(state[1])
        return tf.stack(hidden, axis=1), tf.stack(cell, axis=1)

    def call(self, tokens, training=False):
        """Teacher-forced logits (batch, time, vocab) of the next token."""
        hidden, _ = self.run_states(tokens, training=training)
        return self.logits(hidden)  # (batch, time, vocab)

    def prefix_states(self, tokens):
        """State before each position, for continuing a sequence from there.

        Returns:
            (h, c), each (batch, time, hidden): entry t is the state after the
            inputs of positions 0..t-1, the state to resume from at position t
            (zero for t = 0). Position t's own input is then tokens[:, t-1].
        """
        hidden, cell = self.run_states(tokens)
        zeros = tf.zeros_like(hidden[:, :1])
        return (
            tf.concat([zeros, hidden[:, :-1]], axis=1),
            tf.concat([zeros, cell[:, :-1]], axis=1),
        )

    def token_log_probs(self, tokens, training=False, temperature=1.0):
        """log G(tokens[:, t] | tokens[:, :t]) for every position, (batch, time);
        with a Python `temperature` other than 1, of softmax(logits / temperature)
        (the distribution the samplers draw from at that temperature)."""
        hidden, _ = self.run_states(tokens, training=training)  # (batch, time, hidden)
        flat_hidden = tf.reshape(hidden, [-1, self.hidden_dim])
        kernel = tf.cast(tf.convert_to_tensor(self.output_layer.kernel), tf.float32)
        bias = tf.cast(self.output_bias(), tf.float32)
        if temperature != 1.0:  # (h @ K + b) / T = h @ (K / T) + b / T
            kernel, bias = kernel / temperature, bias / temperature
        log_probs = output_log_probs(
            tf.cast(flat_hidden, tf.float32), kernel, bias, tf.reshape(tf.cast(tokens, tf.int32), [-1])
        )
        return tf.reshape(log_probs, tf.shape(tokens))
