"""The SavedModel: a `tf.Module` holding the generator and its vocabulary (an
asset), with one signature per use. Batch is dynamic everywhere.

Signatures (inputs -> outputs):

- `sample` (also `serving_default`): num_samples () int32, temperature ()
  float32, seed () int64 -> ids (n, time) int32, lengths (n,) int32, text (n,)
  string.
- `complete`: prefix (n, p) int32 with p <= time, prefix_length (n,) int32,
  temperature, seed -> ids, lengths, text: keeps prefix[i, :prefix_length[i]]
  and samples the rest.
- `greedy`: prefix, prefix_length -> ids, lengths, text: the same with argmax
  decoding (prefix_length 0: greedy decoding from the start).
- `score`: ids (n, time) int32 -> log_probs (n, time) float32 (0 after the end
  token), lengths (n,) int32, total (n,) float32.
- `acrostic` (character vocabularies whose sequence is a quatrain, time
  divisible by 4): heads (n,) string of 4 characters, temperature, seed ->
  ids, lengths, text: line k (tokens time/4 * k onwards) starts with the k-th
  character of the head, in the form of a quatrain (see export/acrostic.py).

Every input is checked by the signature itself (`tf.debugging` assertions with
a message): a bad call fails with InvalidArgumentError naming the input, and
never returns garbage. The number of rows (1 to MAX_SAMPLES, and
rows x time at most MAX_REQUEST_TOKENS, in every signature) and the widths
are checked first, before the ids are looked at
and before any decoding work (control dependencies), so an oversized request
is refused in the time of reading its shape. `score` runs in row chunks
whose logits fit SCORE_BUDGET_BYTES.
"""

import tensorflow as tf

from tfseqgan import sampler, text
from tfseqgan.export import acrostic, graph
from tfseqgan.export.limits import (
    ACROSTIC_LINES,
    MAX_REQUEST_TOKENS,
    MAX_SAMPLES,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    SCORE_BUDGET_BYTES,
)

SIGNATURES = ("serving_default", "sample", "complete", "greedy", "score", "acrostic")


def check_rows(rows, name, length):
    """Assertions that a request's row count is in [1, MAX_SAMPLES] and that its rows of `length`
    tokens hold at most MAX_REQUEST_TOKENS (the same limits in every signature)."""
    message = f"{name}: the number of rows must be in [1, {MAX_SAMPLES}]"
    return [
        tf.debugging.assert_positive(rows, message=message),
        tf.debugging.assert_less_equal(rows, tf.constant(MAX_SAMPLES, rows.dtype), message=message),
        tf.debugging.assert_less_equal(
            tf.cast(rows, tf.int64) * length,
            tf.constant(MAX_REQUEST_TOKENS, tf.int64),
            message=f"{name}: rows x {length} tokens must be at most {MAX_REQUEST_TOKENS} tokens per call",
        ),
    ]


def _seed_pair(seed):
    return tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])


class SamplerModule(tf.Module):
    """The exported generator with its signatures (see the module docstring).

    Args:
        run_model: a `restore.RunModel`.
        vocabulary_path: the vocabulary file (one token a line, in id order),
            saved into the SavedModel's assets.
        score_budget_bytes: `score` decodes rows in chunks whose logits
            (rows x time x vocab float32) fit this.
    """

    def __init__(self, run_model, vocabulary_path, score_budget_bytes=SCORE_BUDGET_BYTES):
        super().__init__(name="tfseqgan_sampler")
        # The signatures read the generator's tf.Variables; those are what is
        # saved (as keras.export.ExportArchive does). Saving the Keras model as
        # a tracked child instead stores Keras variable wrappers, and TF1-style
        # loaders (saved_model_cli run, TF Serving) then find no variables.
        object.__setattr__(self, "generator", run_model.generator)
        self.weights = [weight.value for weight in run_model.generator.weights]  # tf.Variables
        self.sequence_length = run_model.sequence_length
        self.vocabulary_size = run_model.vocabulary_size
        self.end_token = run_model.end_token
        self.score_chunk_rows = max(1, score_budget_bytes // (4 * self.sequence_length * self.vocabulary_size))
        self.separator = "" if run_model.tokenizer == "char" else " "
        self.has_acrostic = run_model.tokenizer == "char" and self.sequence_length % ACROSTIC_LINES == 0
        self.vocabulary = tf.saved_model.Asset(vocabulary_path)
        lines = tf.lookup.TextFileIndex
        self.id_to_token = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.vocabulary, tf.int64, lines.LINE_NUMBER, tf.string, lines.WHOLE_LINE, self.vocabulary_size
            ),
            default_value=text.UNKNOWN,
        )
        self.token_to_id = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.vocabulary, tf.string, lines.WHOLE_LINE, tf.int64, lines.LINE_NUMBER, self.vocabulary_size
            ),
            default_value=-1,
        )
        if self.has_acrostic:
            self.acrostic_bias = acrostic.acrostic_bias(run_model.tokens, self.sequence_length, self.end_token)
            self.acrostic = tf.function(
                self._acrostic,
                input_signature=[
                    tf.TensorSpec([None], tf.string, name="heads"),
                    tf.TensorSpec([], tf.float32, name="temperature"),
                    tf.TensorSpec([], tf.int64, name="seed"),
                ],
            )

    # ------------------------------------------------------------ helpers
    def _outputs(self, tokens):
        tokens = graph.finish(tokens, self.end_token)
        return {
            "ids": tokens,
            "lengths": graph.sequence_lengths(tokens, self.end_token),
            "text": self._decode(tokens),
        }

    def _decode(self, tokens):
        """Display strings: tokens up to (without) the end token, <pad> and <s> skipped."""
        strings = self.id_to_token.lookup(tf.cast(tokens, tf.int64))  # (batch, time)
        if self.end_token is None:
            shown = tf.ones_like(tokens, tf.bool)
        else:
            before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(tokens, self.end_token), tf.int32), axis=1), 0)
            shown = before_end & tf.not_equal(tokens, text.PAD_ID) & tf.not_equal(tokens, text.START_ID)
        return tf.strings.reduce_join(tf.ragged.boolean_mask(strings, shown), axis=1, separator=self.separator)

    def _check_temperature(self, temperature):
        return [
            tf.debugging.assert_greater_equal(
                temperature,
                tf.constant(MIN_TEMPERATURE, tf.float32),
                message=f"temperature must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}] "
                "(for argmax decoding use the greedy signature)",
            ),
            tf.debugging.assert_less_equal(
                temperature,
                tf.constant(MAX_TEMPERATURE, tf.float32),
                message=f"temperature must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]",
            ),
        ]

    def _check_ids(self, ids, name):
        return [
            tf.debugging.assert_non_negative(ids, message=f"{name}: ids must be >= 0"),
            tf.debugging.assert_less(
                ids,
                tf.constant(self.vocabulary_size, tf.int32),
                message=f"{name}: ids must be < the vocabulary size {self.vocabulary_size}",
            ),
        ]

    def _padded_prefix(self, prefix, prefix_length):
        """Checks a (batch, p) prefix and its lengths (shapes first); pads it to (batch, time)."""
        length = self.sequence_length
        shape_checks = check_rows(tf.shape(prefix)[0], "prefix", length) + [
            tf.debugging.assert_less_equal(
                tf.shape(prefix)[1],
                length,
                message=f"prefix: more tokens than the sequence length {length}",
            ),
            tf.debugging.assert_equal(
                tf.shape(prefix_length)[0],
                tf.shape(prefix)[0],
                message="prefix_length: one length per prefix row",
            ),
        ]
        with tf.control_dependencies(shape_checks):
            checks = self._check_ids(prefix, "prefix") + [
                tf.debugging.assert_non_negative(prefix_length, message="prefix_length: must be >= 0"),
                tf.debugging.assert_less_equal(
                    prefix_length,
                    tf.shape(prefix)[1],
                    message="prefix_length: longer than the prefix given",
                ),
            ]
        with tf.control_dependencies(checks):
            padded = tf.pad(prefix, [[0, 0], [0, length - tf.shape(prefix)[1]]])
            prefix_length = tf.identity(prefix_length)
        return tf.ensure_shape(padded, [None, length]), prefix_length

    # --------------------------------------------------------- signatures
    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
    )
    def sample(self, num_samples, temperature, seed):
        checks = check_rows(num_samples, "num_samples", self.sequence_length) + self._check_temperature(temperature)
        with tf.control_dependencies(checks):
            num_samples = tf.identity(num_samples)
        tokens = sampler.sample_free(self.generator, num_samples, _seed_pair(seed), temperature=temperature)
        return self._outputs(tokens)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="prefix"),
            tf.TensorSpec([None], tf.int32, name="prefix_length"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
    )
    def complete(self, prefix, prefix_length, temperature, seed):
        with tf.control_dependencies(self._check_temperature(temperature)):
            padded, prefix_length = self._padded_prefix(prefix, prefix_length)
        tokens = sampler.complete_prefixes(
            self.generator, padded, prefix_length, _seed_pair(seed), temperature=temperature
        )
        return self._outputs(tokens)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="prefix"),
            tf.TensorSpec([None], tf.int32, name="prefix_length"),
        ]
    )
    def greedy(self, prefix, prefix_length):
        padded, prefix_length = self._padded_prefix(prefix, prefix_length)
        seed = tf.zeros([2], tf.int64)  # unused by argmax decoding
        return self._outputs(sampler.complete_prefixes(self.generator, padded, prefix_length, seed, greedy=True))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")])
    def score(self, ids):
        length = self.sequence_length
        shape_checks = check_rows(tf.shape(ids)[0], "ids", length) + [
            tf.debugging.assert_equal(
                tf.shape(ids)[1], length, message=f"ids: every sequence must have {length} tokens"
            )
        ]
        with tf.control_dependencies(shape_checks):
            checks = self._check_ids(ids, "ids")
        with tf.control_dependencies(checks):
            ids = tf.ensure_shape(tf.identity(ids), [None, length])
        # Row chunks of at most score_chunk_rows (and no more rows than asked), scored one after the other.
        rows = tf.shape(ids)[0]
        chunk = tf.minimum(rows, self.score_chunk_rows)
        chunks = (rows + chunk - 1) // chunk
        blocks = tf.reshape(tf.pad(ids, [[0, chunks * chunk - rows], [0, 0]]), [chunks, chunk, length])
        scored = tf.map_fn(
            lambda block: graph.score_tokens(self.generator, tf.ensure_shape(block, [None, length]), self.end_token),
            blocks,
            fn_output_signature={
                "log_probs": tf.TensorSpec([None, length], tf.float32),
                "lengths": tf.TensorSpec([None], tf.int32),
                "total": tf.TensorSpec([None], tf.float32),
            },
            parallel_iterations=1,
        )
        return {
            "log_probs": tf.reshape(scored["log_probs"], [-1, length])[:rows],
            "lengths": tf.reshape(scored["lengths"], [-1])[:rows],
            "total": tf.reshape(scored["total"], [-1])[:rows],
        }

    def _acrostic(self, heads, temperature, seed):
        length, lines = self.sequence_length, ACROSTIC_LINES
        # The rows and each head's length come first: nothing is split or looked up for a
        # request of a million heads or of one head of a billion characters.
        head_message = f"heads: each head must be exactly {lines} characters, one per line of the quatrain"
        shape_checks = check_rows(tf.size(heads), "heads", length) + [
            tf.debugging.assert_equal(
                tf.strings.length(heads, unit="UTF8_CHAR"), tf.constant(lines, tf.int32), message=head_message
            )
        ]
        with tf.control_dependencies(shape_checks):
            heads = tf.identity(heads)
        characters = tf.strings.unicode_split(heads, "UTF-8")  # ragged (batch, None)
        head_ids = self.token_to_id.lookup(characters.flat_values)  # (batch * lines,) int64, -1 if unknown
        unknown = tf.boolean_mask(characters.flat_values, head_ids < 0)
        checks = self._check_temperature(temperature) + [
            tf.debugging.assert_equal(  # invalid UTF-8 is split into replacement characters: still 4 a head
                characters.row_lengths(), tf.constant(lines, tf.int64), message=head_message
            ),
            tf.debugging.Assert(
                tf.equal(tf.size(unknown), 0),
                ["heads: characters not in the vocabulary:", unknown],
                summarize=20,
            ),
        ]
        with tf.control_dependencies(checks):
            head_ids = tf.reshape(tf.cast(head_ids, tf.int32), [-1, lines])  # (batch, lines)
        batch = tf.shape(head_ids)[0]
        line_starts = tf.constant(acrostic.line_starts(length), tf.int32)  # (lines,)
        is_head = tf.reduce_any(tf.equal(tf.range(length)[:, tf.newaxis], line_starts), axis=1)  # (time,)
        head_index = tf.cumsum(tf.cast(is_head, tf.int32)) - 1  # line of each position
        given = tf.gather(head_ids, head_index, axis=1)  # (batch, time): the line's head everywhere
        keep = tf.tile(is_head[tf.newaxis], [batch, 1])
        bias = tf.constant(self.acrostic_bias)  # (time, vocab): the quatrain's form
        tokens = sampler.sample_with_given_tokens(
            self.generator, given, keep, _seed_pair(seed), temperature=temperature, logit_bias=bias
        )
        return self._outputs(tokens)

    def signatures(self):
        """The signatures to save, by name."""
        result = {
            "serving_default": self.sample,
            "sample": self.sample,
            "complete": self.complete,
            "greedy": self.greedy,
            "score": self.score,
        }
        if self.has_acrostic:
            result["acrostic"] = self.acrostic
        return result


def write_saved_model(run_model, vocabulary_path, path):
    """Writes the SavedModel into `path`; returns the names of its signatures."""
    module = SamplerModule(run_model, vocabulary_path)
    signatures = module.signatures()
    tf.saved_model.save(module, path, signatures=signatures)
    return sorted(signatures)
