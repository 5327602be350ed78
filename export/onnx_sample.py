"""Samples from an exported tfseqgan generator with onnxruntime and NumPy only
(no TensorFlow):

    python -m export.onnx_sample RUN/export/onnx/sampler.onnx --num 5
    python -m export.onnx_sample MODEL.onnx --num 3 --prefix 春风 --temperature 0.8 --seed 1
    python -m export.onnx_sample MODEL.onnx --num 5 --acrostic 春夏秋冬
    python -m export.onnx_sample MODEL.onnx --num 1 --greedy

`sampler.onnx` is one decoding step, `(token, h, c, temperature, uniforms,
bias, greedy) -> (next_token, next_h, next_c)`, which draws the next id by
inverse CDF from the two uniforms of its row (block, then id in the block).
`OnnxSampler` drives it: rows in chunks, position by position, the previous
token and state fed back, and a given token kept wherever a prefix or an
acrostic asks (one loop with a keep mask, as in tfseqgan/sampler.py). Chunks
are decoded by as many threads as there are cores, each onnxruntime run
single-threaded (1.3-1.4x the throughput of one stream with two intra-op
threads on 2 cores: the step's small ops do not split well). A row's uniforms
depend only on the seed and its row index (`row_uniforms`), so the samples do
not depend on the chunking or the thread count. `scorer.onnx` gives per-token
log-probabilities of whole sequences. The vocabulary file lies beside them.

Bad arguments end with one line `error: ...` and exit status 2.
"""

import argparse
import concurrent.futures
import json
import os
import sys

import numpy as np
import onnxruntime

from export.acrostic import acrostic_bias, line_starts
from export.limits import ACROSTIC_LINES, MAX_SAMPLES, MAX_TEMPERATURE, MIN_TEMPERATURE, PAD_ID, START_ID

METADATA_KEY = "tfseqgan"
STEP_OUTPUTS = ["next_token", "next_h", "next_c"]
RNG_BLOCK = 256  # rows per seeded block of uniforms (see row_uniforms)


class SamplerInputError(ValueError):
    """A bad argument or model file; the message is one line."""


def read_vocabulary(path):
    """One token a line, in id order (split on newlines only, as tfseqgan writes it)."""
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise SamplerInputError(f"{path}: cannot read the vocabulary ({error})") from None
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def available_cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def row_uniforms(seed, start, stop, length):
    """The uniforms of rows [start, stop): (length, stop - start, 2) float32.

    Rows come in blocks of RNG_BLOCK; block i is drawn whole from
    `default_rng([seed, i])`, so a row's draws depend on the seed and its
    index only.
    """
    first, last = start // RNG_BLOCK, -(-stop // RNG_BLOCK)
    blocks = [
        np.random.default_rng([seed, block]).random([length, RNG_BLOCK, 2], dtype=np.float32)
        for block in range(first, last)
    ]
    offset = start - first * RNG_BLOCK
    return np.concatenate(blocks, axis=1)[:, offset : offset + stop - start]


class OnnxSampler:
    """Sampling, completion, acrostics and scoring with the exported ONNX models.

    Args:
        model_path: the exported sampler.onnx (the scorer and vocabulary are
            found beside it, named in its metadata).
        chunk_size: at most this many rows decoded together (256 keeps a
            step's logits, 5 MB at vocabulary 5,000, near the cache; 512 and
            1,024 measured slower with two threads).
        threads: CPU threads; 0 uses every core the process may run on. The
            sampler decodes that many chunks at once, each run on one
            thread; the scorer runs with that many intra-op threads.
    """

    def __init__(self, model_path, chunk_size=256, threads=0):
        threads = threads or available_cores()
        self.session = self._load(model_path, 1)
        custom = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in custom:
            raise SamplerInputError(f"{model_path}: not a tfseqgan export (no '{METADATA_KEY}' metadata)")
        info = json.loads(custom[METADATA_KEY])
        if info.get("role") != "sampler":
            raise SamplerInputError(f"{model_path}: this is the {info.get('role')} model; pass {info['sampler']}")
        self.info = info
        self.directory = os.path.dirname(os.path.abspath(model_path))
        self.threads = threads
        self.chunk_size = chunk_size
        self.sequence_length = info["sequence_length"]
        self.vocabulary_size = info["vocabulary_size"]
        self.hidden_dim = info["hidden_dim"]
        self.start_token = info["start_token"]
        self.end_token = info["end_token"]
        self.tokenizer = info["tokenizer"]
        self.tokens = read_vocabulary(os.path.join(self.directory, info["vocabulary"]))
        if len(self.tokens) != self.vocabulary_size:
            raise SamplerInputError(
                f"{os.path.join(self.directory, info['vocabulary'])}: {len(self.tokens)} tokens, "
                f"but the model has {self.vocabulary_size} ids"
            )
        self.ids = {token: index for index, token in enumerate(self.tokens)}
        self._scorer = None

    @staticmethod
    def _load(path, threads):
        if not os.path.isfile(path):
            raise SamplerInputError(f"{path}: no such file")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        # Idle worker threads would spin between the loop's many small runs,
        # taking the core the NumPy part of the loop needs (measured 1.6x
        # slower on a busy 2-core host).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise SamplerInputError(f"{path}: onnxruntime cannot load it ({message})") from None

    @property
    def has_acrostic(self):
        return self.tokenizer == "char" and self.sequence_length % ACROSTIC_LINES == 0

    # ---------------------------------------------------------- checks
    @staticmethod
    def _check_count(num_samples):
        if not isinstance(num_samples, int | np.integer) or not 1 <= num_samples <= MAX_SAMPLES:
            raise SamplerInputError(f"the number of samples must be in [1, {MAX_SAMPLES}], got {num_samples}")

    @staticmethod
    def _check_temperature(temperature):
        if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:  # False for NaN
            raise SamplerInputError(
                f"temperature must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], got {temperature} "
                "(for argmax decoding ask for greedy)"
            )

    def _check_ids(self, ids, name):
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocabulary_size):
            raise SamplerInputError(f"{name}: ids must be in [0, {self.vocabulary_size})")

    # ------------------------------------------------------- the loop
    def _decode(self, given, keep, temperature, seed, greedy, bias=None):
        """The one loop: (batch, time) given ids, kept where `keep`, the rest drawn."""
        batch, length = given.shape
        bias = np.zeros([length, self.vocabulary_size], np.float32) if bias is None else bias
        temperature = np.array(1.0 if greedy else temperature, np.float32)
        tokens = np.empty([batch, length], np.int32)

        def decode_rows(rows):
            count = rows.stop - rows.start
            feed = {
                "token": np.full([count], self.start_token, np.int32),
                "h": np.zeros([count, self.hidden_dim], np.float32),
                "c": np.zeros([count, self.hidden_dim], np.float32),
                "temperature": temperature,
                "greedy": np.array(bool(greedy)),
            }
            if greedy:
                uniforms = np.zeros([length, count, 2], np.float32)
            else:
                uniforms = row_uniforms(seed, rows.start, rows.stop, length)
            for position in range(length):
                feed["uniforms"], feed["bias"] = uniforms[position], bias[position]
                drawn, feed["h"], feed["c"] = self.session.run(STEP_OUTPUTS, feed)
                chosen = np.where(keep[rows, position], given[rows, position], drawn).astype(np.int32)
                tokens[rows, position] = chosen
                feed["token"] = chosen

        chunk = max(1, min(self.chunk_size, -(-batch // self.threads)))
        chunks = [slice(start, min(batch, start + chunk)) for start in range(0, batch, chunk)]
        if len(chunks) == 1:
            decode_rows(chunks[0])
        else:
            with concurrent.futures.ThreadPoolExecutor(min(self.threads, len(chunks))) as pool:
                list(pool.map(decode_rows, chunks))  # re-raises a chunk's error
        return self._outputs(tokens)

    def _ended_before(self, tokens):
        if self.end_token is None:
            return np.zeros(tokens.shape, bool)
        is_end = tokens == self.end_token
        return (np.cumsum(is_end, axis=1) - is_end) > 0

    def _outputs(self, tokens):
        tokens = np.where(self._ended_before(tokens), PAD_ID, tokens).astype(np.int32)
        lengths = (tokens.shape[1] - self._ended_before(tokens).sum(axis=1)).astype(np.int32)
        return {"ids": tokens, "lengths": lengths, "text": self.decode(tokens)}

    # ------------------------------------------------------ public API
    def decode(self, ids):
        """(batch, time) ids -> display strings: up to (without) the end token, <pad> and <s> skipped."""
        separator = "" if self.tokenizer == "char" else " "
        texts = []
        for row in np.asarray(ids).tolist():
            shown = []
            for index in row:
                if index == self.end_token:
                    break
                if self.end_token is not None and index in (PAD_ID, START_ID):
                    continue
                shown.append(self.tokens[index])
            texts.append(separator.join(shown))
        return texts

    def encode(self, line):
        """Text -> ids as the vocabulary spells tokens: characters (whitespace
        dropped) for char runs, whitespace-separated tokens for word runs,
        whitespace-separated ids for synthetic runs."""
        if self.tokenizer == "char":
            pieces = [character for character in line if not character.isspace()]
        else:
            pieces = line.split()
        if self.tokenizer == "ids":
            try:
                ids = [int(piece) for piece in pieces]
            except ValueError:
                raise SamplerInputError(f"prefix: expected space-separated ids, got {line!r}") from None
            self._check_ids(np.array(ids), "prefix")
            return ids
        unknown = [piece for piece in pieces if piece not in self.ids]
        if unknown:
            raise SamplerInputError(f"prefix: not in the vocabulary: {' '.join(unknown)}")
        return [self.ids[piece] for piece in pieces]

    def sample(self, num_samples, temperature=1.0, seed=0):
        """`num_samples` whole sequences: dict of ids, lengths, text."""
        self._check_count(num_samples)
        self._check_temperature(temperature)
        given = np.zeros([num_samples, self.sequence_length], np.int32)
        return self._decode(given, np.zeros(given.shape, bool), temperature, seed, greedy=False)

    def first_tokens(self, num_samples, temperature=1.0, seed=0):
        """The first token of `num_samples` samples: the first position of the
        same loop, without the rest (many draws for a distribution check)."""
        self._check_count(num_samples)
        self._check_temperature(temperature)
        given = np.zeros([num_samples, 1], np.int32)
        return self._decode(given, np.zeros(given.shape, bool), temperature, seed, greedy=False)["ids"][:, 0]

    def complete(self, prefix, prefix_length, temperature=1.0, seed=0, greedy=False):
        """Keeps prefix[n, :prefix_length[n]] and draws (or, greedy, argmaxes) the rest."""
        prefix = np.asarray(prefix, np.int64)
        prefix_length = np.asarray(prefix_length, np.int64)
        if prefix.ndim != 2 or prefix_length.shape != prefix.shape[:1]:
            raise SamplerInputError("prefix must be (rows, tokens) with one prefix_length per row")
        self._check_count(prefix.shape[0])
        if prefix.shape[1] > self.sequence_length:
            raise SamplerInputError(
                f"prefix: {prefix.shape[1]} tokens, more than the sequence length {self.sequence_length}"
            )
        if prefix_length.min() < 0 or prefix_length.max() > prefix.shape[1]:
            raise SamplerInputError(f"prefix_length must be in [0, {prefix.shape[1]}]")
        self._check_ids(prefix, "prefix")
        if not greedy:
            self._check_temperature(temperature)
        given = np.zeros([prefix.shape[0], self.sequence_length], np.int32)
        given[:, : prefix.shape[1]] = prefix
        keep = np.arange(self.sequence_length)[np.newaxis] < prefix_length[:, np.newaxis]
        return self._decode(given, keep, temperature, seed, greedy)

    def greedy(self, prefix, prefix_length):
        """Argmax decoding after the given prefixes (prefix_length 0: from the start)."""
        return self.complete(prefix, prefix_length, greedy=True)

    def acrostic(self, heads, temperature=1.0, seed=0):
        """Quatrains whose k-th line starts with the k-th character of the head
        (character vocabularies, sequence length divisible by 4), in the form
        of a quatrain (see export/acrostic.py)."""
        if not self.has_acrostic:
            raise SamplerInputError(
                f"acrostic needs a character vocabulary and a sequence length divisible by {ACROSTIC_LINES}; "
                f"this model has {self.tokenizer} tokens and length {self.sequence_length}"
            )
        heads = [heads] if isinstance(heads, str) else list(heads)
        self._check_count(len(heads))
        self._check_temperature(temperature)
        starts = line_starts(self.sequence_length)
        given = np.zeros([len(heads), self.sequence_length], np.int32)
        keep = np.zeros(given.shape, bool)
        for row, head in enumerate(heads):
            if len(head) != ACROSTIC_LINES:
                raise SamplerInputError(
                    f"acrostic: {head!r} has {len(head)} characters; give {ACROSTIC_LINES}, one per line"
                )
            unknown = [character for character in head if character not in self.ids]
            if unknown:
                raise SamplerInputError(f"acrostic: not in the vocabulary: {' '.join(unknown)}")
            given[row, starts] = [self.ids[character] for character in head]
            keep[row, starts] = True
        bias = acrostic_bias(self.tokens, self.sequence_length, self.end_token)
        return self._decode(given, keep, temperature, seed, greedy=False, bias=bias)

    def score(self, ids):
        """Per-token log-probabilities of (batch, time) ids: dict of log_probs
        (0 after the end token), lengths, total."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != self.sequence_length:
            raise SamplerInputError(f"ids must be (rows, {self.sequence_length}), got shape {ids.shape}")
        self._check_ids(ids, "ids")
        if self._scorer is None:
            self._scorer = self._load(os.path.join(self.directory, self.info["scorer"]), self.threads)
        names = ["log_probs", "lengths", "total"]
        return dict(zip(names, self._scorer.run(names, {"ids": ids.astype(np.int32)}), strict=True))


# ------------------------------------------------------------------ CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message}\n")


def parse_args(argv):
    parser = _Parser(prog="python -m export.onnx_sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the exported sampler.onnx")
    parser.add_argument("--num", type=int, default=5, help="sequences to print (default 5)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    parser.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    parser.add_argument("--prefix", default="", help="continue this text (as the vocabulary spells tokens)")
    parser.add_argument("--acrostic", default="", help="4 characters: the first one of each line of a quatrain")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    args = parser.parse_args(argv)
    if args.greedy and args.acrostic:
        parser.error("--greedy and --acrostic do not go together (an acrostic is sampled)")
    if args.prefix and args.acrostic:
        parser.error("--prefix and --acrostic do not go together")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if not 1 <= args.num <= MAX_SAMPLES:
            raise SamplerInputError(f"--num must be in [1, {MAX_SAMPLES}], got {args.num}")
        if not args.greedy and not MIN_TEMPERATURE <= args.temperature <= MAX_TEMPERATURE:
            raise SamplerInputError(
                f"--temperature must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], got {args.temperature} "
                "(--greedy for argmax decoding)"
            )
        model = OnnxSampler(args.model, threads=args.threads)
        if args.acrostic:
            result = model.acrostic([args.acrostic] * args.num, args.temperature, args.seed)
        elif args.prefix or args.greedy:
            prefix = model.encode(args.prefix)
            rows = np.tile(np.array(prefix, np.int64).reshape(1, -1), [args.num, 1])
            result = model.complete(rows, [len(prefix)] * args.num, args.temperature, args.seed, args.greedy)
        else:
            result = model.sample(args.num, args.temperature, args.seed)
    except SamplerInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in result["text"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
