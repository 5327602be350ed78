"""The discriminator D_phi: a CNN text classifier with a highway layer.

Reference: Yu et al., AAAI 2017, "The Discriminative Model for Sequences";
Kim, "Convolutional Neural Networks for Sentence Classification", 2014;
Srivastava et al., "Highway Networks", 2015.
"""

import functools

import keras
import tensorflow as tf

from tfseqgan import losses
from tfseqgan.config import PAPER_NUM_FILTERS, PAPER_WINDOW_SIZES  # noqa: F401 (re-exported)


@keras.saving.register_keras_serializable(package="tfseqgan")
class Highway(keras.layers.Layer):
    """y = g * relu(x W_t + b_t) + (1 - g) * x, with g = sigmoid(x W_g + b_g).

    Args:
        gate_bias: initial value of b_g (0 in the paper's code).
    """

    def __init__(self, gate_bias=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.gate_bias = gate_bias
        self.seed = seed

    def build(self, input_shape):
        units = input_shape[-1]
        seed = self.seed
        self.transform = keras.layers.Dense(
            units,
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed),
            dtype=self.dtype_policy,
            name="transform",
        )
        self.gate = keras.layers.Dense(
            units,
            activation="sigmoid",
            kernel_initializer=keras.initializers.GlorotUniform(None if seed is None else seed + 1),
            bias_initializer=keras.initializers.Constant(self.gate_bias),
            dtype=self.dtype_policy,
            name="gate",
        )
        self.transform.build(input_shape)
        self.gate.build(input_shape)

    def call(self, inputs):
        # In the inputs' dtype when called directly (`Highway.call`): the
        # rewards may run the highway in bfloat16 under a float32 policy.
        gate = _dense(self.gate, inputs)
        return gate * _dense(self.transform, inputs) + (1.0 - gate) * inputs

    def get_config(self):
        config = super().get_config()
        config.update(gate_bias=self.gate_bias, seed=self.seed)
        return config


def _conv_outputs(conv, embedded):
    """A VALID Conv1D's ReLU outputs at every window position, (rows,
    positions, filters), computed in `embedded`'s dtype: the layer itself when
    that is its compute dtype, else one MatMul over the windows' taps
    (im2col) with the kernel cast, which oneDNN runs on bfloat16 matrix units."""
    if embedded.dtype == conv.compute_dtype:
        return conv(embedded)
    width = conv.kernel_size[0]
    positions = embedded.shape[1] - width + 1
    windows = tf.concat([embedded[:, tap : tap + positions] for tap in range(width)], axis=2)
    kernel = tf.reshape(tf.cast(conv.kernel, embedded.dtype), [width * embedded.shape[2], conv.filters])
    outputs = tf.einsum("bpk,kf->bpf", windows, kernel)
    return conv.activation(tf.nn.bias_add(outputs, tf.cast(conv.bias, embedded.dtype)))


def _max_over_time(conv, embedded):
    """Max over window positions of a VALID Conv1D's outputs, (rows, filters).

    An input exactly one window long is a single MatMul, several times faster
    on CPU than the convolution kernel for so short an input.
    """
    width = conv.kernel_size[0]
    if embedded.shape[1] != width:
        return tf.reduce_max(_conv_outputs(conv, embedded), axis=1)
    kernel = tf.cast(conv.kernel, embedded.dtype)  # (width, embed, filters)
    flat = tf.reshape(embedded, [-1, width * embedded.shape[2]])  # (rows, width * embed)
    outputs = tf.matmul(flat, tf.reshape(kernel, [width * embedded.shape[2], conv.filters]))
    return conv.activation(tf.nn.bias_add(outputs, tf.cast(conv.bias, embedded.dtype)))


def _dense(layer, inputs):
    """A Dense layer in `inputs`' dtype (its weights cast), activation included."""
    if inputs.dtype == layer.compute_dtype:
        return layer(inputs)
    outputs = tf.matmul(inputs, tf.cast(layer.kernel, inputs.dtype))
    return layer.activation(tf.nn.bias_add(outputs, tf.cast(layer.bias, inputs.dtype)))


@keras.saving.register_keras_serializable(package="tfseqgan")
class Discriminator(keras.Model):
    """Embedding -> per-window VALID conv + ReLU + max over time -> concat ->
    highway -> dropout -> 2 logits (index 1 = real).

    Args:
        vocabulary_size: number of token ids.
        sequence_length: length of every sequence (windows must not exceed it).
        embedding_dim: token embedding size (uniform(-1, 1) initializer).
        window_sizes: conv window widths in tokens.
        num_filters: filters per window, same length as window_sizes.
        dropout_rate: dropout before the output layer in training (1 - keep).
        l2_weight: weight of the L2 penalty (sum of squares / 2) of the output
            layer's kernel and bias, added by `regularization_loss`.
        seed: seed of the initializers.
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim=64,
        window_sizes=PAPER_WINDOW_SIZES,
        num_filters=PAPER_NUM_FILTERS,
        dropout_rate=0.25,
        l2_weight=0.2,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        window_sizes = tuple(int(w) for w in window_sizes)
        num_filters = tuple(int(f) for f in num_filters)
        if len(window_sizes) != len(num_filters):
            raise ValueError(f"window_sizes has {len(window_sizes)} entries but num_filters has {len(num_filters)}")
        if max(window_sizes) > sequence_length:
            raise ValueError(f"window size {max(window_sizes)} exceeds sequence_length {sequence_length}")
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.window_sizes = window_sizes
        self.num_filters = num_filters
        self.dropout_rate = dropout_rate
        self.l2_weight = l2_weight
        self.seed = seed

        def seeded(offset):
            return None if seed is None else seed + offset

        # Sublayers share the model's dtype policy (mixed precision computes the
        # CNN and highway in bfloat16/float16); the output layer stays float32.
        policy = self.dtype_policy
        self.embedding = keras.layers.Embedding(
            vocabulary_size,
            embedding_dim,
            embeddings_initializer=keras.initializers.RandomUniform(-1.0, 1.0, seed=seeded(0)),
            dtype=policy,
            name="embedding",
        )
        convolutions = [
            keras.layers.Conv1D(
                filters,
                width,
                padding="valid",
                activation="relu",
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.1, seed=seeded(10 + i)),
                bias_initializer=keras.initializers.Constant(0.1),
                dtype=policy,
                name=f"conv_{width}",
            )
            for i, (width, filters) in enumerate(zip(window_sizes, num_filters))
        ]
        # Plain attributes, so tf.train.Checkpoint of the model alone tracks each
        # conv (it does not follow Keras' list wrapper).
        for index, conv in enumerate(convolutions):
            setattr(self, f"conv_{index}", conv)
        self.convolutions = convolutions
        self.highway = Highway(seed=seeded(1), dtype=policy, name="highway")
        self.dropout = keras.layers.Dropout(dropout_rate, seed=seeded(2), dtype=policy)
        self.output_layer = keras.layers.Dense(
            2,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.1, seed=seeded(3)),
            bias_initializer=keras.initializers.Constant(0.1),
            dtype="float32",
            name="logits",
        )
        total = sum(num_filters)
        self.embedding.build((None, sequence_length))
        for conv in self.convolutions:
            conv.build((None, sequence_length, embedding_dim))
        self.highway.build((None, total))
        self.output_layer.build((None, total))
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            embedding_dim=self.embedding_dim,
            window_sizes=list(self.window_sizes),
            num_filters=list(self.num_filters),
            dropout_rate=self.dropout_rate,
            l2_weight=self.l2_weight,
            seed=self.seed,
        )
        return config

    def call(self, tokens, training=False, dropout_seed=None, row_offset=0, num_rows=None):
        """Logits (batch, 2) for (fake, real) of token ids (batch, time) or of
        distributions over the vocabulary (batch, time, vocabulary).

        With `dropout_seed` (shape-(2,) int) training uses stateless dropout
        driven by the caller's seed, so the trainer's checkpointed RNG owns
        all randomness; without it, the Keras Dropout layer's own seed. The
        mask of row b is row row_offset + b of a (num_rows, features) draw,
        so a batch split across replicas drops what it drops whole.
        """
        embedded = self._embed(tokens)  # (batch, time, embed)
        pooled = [tf.reduce_max(conv(embedded), axis=1) for conv in self.convolutions]
        return self._logits_of_pooled(pooled, training, dropout_seed, row_offset, num_rows)

    def _embed(self, tokens, dtype=None):
        """Embeddings (batch, time, embed) in `dtype` (default: the compute
        dtype) of token ids (batch, time), or of distributions over the
        vocabulary (batch, time, vocabulary), a float tensor: a vector v
        embeds as v @ E, so a one-hot vector gives its id's embedding (what
        the Gumbel-softmax and WGAN-GP objectives feed D)."""
        tokens = tf.convert_to_tensor(tokens)
        if tokens.dtype.is_floating:
            dtype = self.embedding.compute_dtype if dtype is None else dtype
            table = tf.cast(self.embedding.embeddings, dtype)
            return tf.einsum("btv,ve->bte", tf.cast(tokens, dtype), table)
        if dtype is None or tf.as_dtype(dtype) == self.embedding.compute_dtype:
            return self.embedding(tokens)
        return tf.gather(tf.cast(self.embedding.embeddings, dtype), tokens)

    def _logits(self, tokens, dtype=None):
        """Logits with dropout off, the CNN and highway computed in `dtype`
        (default: the model's compute dtype); the output layer stays float32."""
        if dtype is None or tf.as_dtype(dtype) == self.compute_dtype:
            return self(tokens, training=False)
        embedded = self._embed(tokens, dtype)
        return self._logits_of_pooled(
            [tf.reduce_max(_conv_outputs(conv, embedded), axis=1) for conv in self.convolutions]
        )

    def _logits_of_pooled(self, pooled, training=False, dropout_seed=None, row_offset=0, num_rows=None):
        """Highway, dropout and output layer over the per-window max-pooled
        features, the highway in the features' dtype."""
        features = tf.concat(pooled, axis=1)  # (batch, sum(filters))
        if features.dtype == self.highway.compute_dtype:
            features = self.highway(features)
        else:  # skips the layer's cast of its inputs to its policy's dtype
            features = self.highway.call(features)
        if training and dropout_seed is not None and self.dropout_rate > 0:
            batch = tf.shape(features)[0]
            num_rows = batch if num_rows is None else num_rows
            noise = tf.random.stateless_uniform([num_rows, features.shape[1]], dropout_seed)
            keep = tf.slice(noise, [row_offset, 0], [batch, -1]) >= self.dropout_rate  # (batch, features)
            kept = features / tf.cast(1.0 - self.dropout_rate, features.dtype)
            features = tf.where(keep, kept, tf.zeros_like(features))
        else:
            features = self.dropout(features, training=training)
        return tf.cast(self.output_layer(features), tf.float32)

    def regularization_loss(self):
        """l2_weight * (||W||^2 + ||b||^2) / 2 of the output layer."""
        return self.l2_weight * tf.add_n([tf.nn.l2_loss(w) for w in self.output_layer.trainable_weights])

    def real_probability(self, tokens, dtype=None):
        """P(real | tokens), (batch,), with dropout off: the reward. `dtype`:
        the precision of the CNN and highway (default: the compute dtype;
        `tf.bfloat16` is the rewards' fast path on hardware with bfloat16
        matrix units)."""
        return tf.nn.softmax(self._logits(tokens, dtype))[:, 1]

    def critic(self, tokens, dtype=None):
        """C(x) = logit(real) - logit(fake), (batch,), dropout off: P(real) =
        sigmoid(C); the relativistic rewards compare it with real sequences'."""
        return losses.critic_of_logits(self._logits(tokens, dtype))

    def critic_of_completions(self, sequences, completions, dtype=None):
        """`critic` of every rollout completion (the layout and the reuse of
        `real_probability_of_completions`): (time - 1, num_rollouts, batch)."""
        return self._score_completions(sequences, completions, losses.critic_of_logits, dtype)

    def real_probability_of_completions(self, sequences, completions, dtype=None):
        """P(real) of every rollout completion; see `_score_completions`."""
        return self._score_completions(sequences, completions, lambda logits: tf.nn.softmax(logits)[:, 1], dtype)

    def _score_completions(self, sequences, completions, score, dtype=None):
        """score(logits) of every rollout completion, reusing the conv work on the prefixes.

        A completion of prefix length t shares tokens 0..t-1 with its
        sequence. Windows inside the prefix have the sequence's conv outputs,
        so their max is a running max over those, computed once for the
        batch. A window straddling the boundary adds the sequence's partial
        sum over its prefix taps (also computed once) to a MatMul of its
        suffix taps only. Only windows inside the suffix are convolved in
        full. Each prefix length is one dense batch of num_rollouts * batch
        rows. Equals score(D's logits) of each completion up to float
        round-off.

        Args:
            sequences: (batch, time) int tokens.
            completions: (time - 1, num_rollouts, batch, time) int tokens whose
                entry [t - 1, n, b] keeps sequences[b, :t]; what follows the
                prefix is arbitrary (rollout_completions' layout).
            score: (rows, 2) logits -> (rows,) float32.
            dtype: the precision of the CNN and highway (see `real_probability`).

        Returns:
            (time - 1, num_rollouts, batch) float32.
        """
        sequences = tf.convert_to_tensor(sequences)
        completions = tf.convert_to_tensor(completions)
        time = sequences.shape[1]
        batch = tf.shape(sequences)[0]
        num_rollouts = tf.shape(completions)[1]
        embedded = self._embed(sequences, dtype)  # (batch, time, embed)
        embed = embedded.shape[2]
        running, partial = [], []
        for width, conv in zip(self.window_sizes, self.convolutions):
            # running[i][s]: max of conv i's (ReLU) outputs over window starts 0..s, (batch, filters).
            outputs = tf.unstack(_conv_outputs(conv, embedded), axis=1)  # time - width + 1 of (batch, filters)
            maxima = [outputs[0]]
            for output in outputs[1:]:
                maxima.append(tf.maximum(maxima[-1], output))
            running.append(maxima)
            # partial[i][q][:, s]: the window at s summed over its first q taps only (no bias),
            # (batch, time - width + 1, filters), for q = 1..width - 1.
            kernel = tf.cast(conv.kernel, embedded.dtype)  # (width, embed, filters)
            positions = time - width + 1
            sums, total = [None], None
            for tap in range(width - 1):
                term = tf.einsum("bte,ef->btf", embedded[:, tap : tap + positions], kernel[tap])
                total = term if total is None else total + term
                sums.append(total)
            partial.append(sums)
        scores = []
        for prefix_length in range(1, time):
            rows = tf.reshape(completions[prefix_length - 1], [-1, time])  # (num_rollouts * batch, time)
            first = max(0, prefix_length - max(self.window_sizes) + 1)
            rows_embedded = self._embed(rows[:, first:], dtype)  # (rows, time - first, embed)
            pooled = []
            for width, conv, maxima, sums in zip(self.window_sizes, self.convolutions, running, partial):
                kernel = tf.cast(conv.kernel, embedded.dtype)
                bias = tf.cast(conv.bias, embedded.dtype)
                # Windows start before `start` inside the prefix, from `start` up to the
                # prefix length across its end, and from the prefix length on inside the suffix.
                start = max(0, prefix_length - width + 1)
                maxima_here = []
                if start > 0:
                    maxima_here.append(tf.tile(maxima[start - 1], [num_rollouts, 1]))
                for window in range(start, min(prefix_length, time - width + 1)):
                    taps = prefix_length - window  # taps on the prefix, 1..width - 1
                    suffix = rows_embedded[:, prefix_length - first : window + width - first]
                    suffix = tf.reshape(suffix, [-1, (width - taps) * embed])  # (rows, suffix taps * embed)
                    output = tf.matmul(suffix, tf.reshape(kernel[taps:], [(width - taps) * embed, conv.filters]))
                    output = output + tf.tile(sums[taps][:, window], [num_rollouts, 1]) + bias
                    maxima_here.append(conv.activation(output))
                if prefix_length <= time - width:
                    maxima_here.append(_max_over_time(conv, rows_embedded[:, prefix_length - first :]))
                pooled.append(functools.reduce(tf.maximum, maxima_here))  # (rows, filters)
            scores.append(score(self._logits_of_pooled(pooled)))
        return tf.reshape(tf.stack(scores), [time - 1, num_rollouts, batch])
