"""Samples from an exported tfseqgan generator with onnxruntime, NumPy and onnx
only (no TensorFlow). Installed: `tfseqgan-sample MODEL.onnx ...`; in a checkout:

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
import os
import sys
import unicodedata

import numpy as np

from tfseqgan.export import loader
from tfseqgan.export.acrostic import acrostic_bias, line_starts
from tfseqgan.export.limits import (
    ACROSTIC_LINES,
    MAX_CHUNK_SIZE,
    MAX_REQUEST_TOKENS,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_THREADS,
    MIN_TEMPERATURE,
    PAD_ID,
    SCORE_BUDGET_BYTES,
    START_ID,
)
from tfseqgan.export.loader import SamplerInputError

METADATA_KEY = loader.METADATA_KEY
STEP_OUTPUTS = ["next_token", "next_h", "next_c"]
RNG_BLOCK = 256  # rows per seeded block of uniforms (see row_uniforms)
# Shown escaped by the CLI: control and format characters (terminal escapes, bidi overrides), line separators.
ESCAPED_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def escape_controls(line):
    """`line` with control characters written as Python escapes (\\x1b, \\u202e), safe to print to a terminal."""
    return "".join(
        ascii(character)[1:-1] if unicodedata.category(character) in ESCAPED_CATEGORIES else character
        for character in line
    )


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


def _integer_in(value, name, low, high):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
        raise SamplerInputError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


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
        threads = _integer_in(threads, "threads", 0, MAX_THREADS) or available_cores()
        self.chunk_size = _integer_in(chunk_size, "chunk_size", 1, MAX_CHUNK_SIZE)
        self.threads = threads
        self.model_path = model_path
        model = loader.load_sampler(model_path)  # every check of the folder (export/loader.py)
        self._model = model
        self.session = model.session
        self.info = info = model.info
        self.directory = model.directory
        self.sequence_length = info["sequence_length"]
        self.vocabulary_size = info["vocabulary_size"]
        self.hidden_dim = info["hidden_dim"]
        self.start_token = info["start_token"]
        self.end_token = info["end_token"]
        self.tokenizer = info["tokenizer"]
        self.tokens = model.tokens
        self.ids = {token: index for index, token in enumerate(self.tokens)}
        self._scorer = None

    @property
    def has_acrostic(self):
        return self.tokenizer == "char" and self.sequence_length % ACROSTIC_LINES == 0

    # ---------------------------------------------------------- checks
    def _check_count(self, rows, name, length=None):
        """1 to MAX_SAMPLES rows of `length` tokens (default: the sequence length), at most
        MAX_REQUEST_TOKENS in all; checked before anything is allocated."""
        if isinstance(rows, bool) or not isinstance(rows, int | np.integer):
            raise SamplerInputError(f"{name}: the number of rows must be an integer, got {rows!r}")
        if not 1 <= rows <= MAX_SAMPLES:
            raise SamplerInputError(f"{name}: {rows} rows; the number of rows must be in [1, {MAX_SAMPLES}]")
        length = self.sequence_length if length is None else length
        if rows * length > MAX_REQUEST_TOKENS:
            raise SamplerInputError(
                f"{name}: {rows} rows x {length} tokens = {rows * length:,} tokens; "
                f"at most {MAX_REQUEST_TOKENS:,} per call"
            )

    @staticmethod
    def _check_draws(temperature, seed):
        try:
            in_range = MIN_TEMPERATURE <= float(temperature) <= MAX_TEMPERATURE  # False for NaN
        except (TypeError, ValueError):
            in_range = False
        if not in_range:
            raise SamplerInputError(
                f"temperature must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], got {temperature!r} "
                "(for argmax decoding ask for greedy)"
            )
        _integer_in(seed, "seed", 0, MAX_SEED)

    def _check_ids(self, ids, name):
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocabulary_size):
            raise SamplerInputError(f"{name}: ids must be in [0, {self.vocabulary_size})")

    @staticmethod
    def _integer_array(values, name, ndim):
        """values as an int64 array of `ndim` dimensions (checked before conversion where it has a shape)."""
        shape = np.shape(values) if isinstance(values, np.ndarray) else None
        if shape is not None and len(shape) != ndim:
            raise SamplerInputError(f"{name} must have {ndim} dimension(s), got shape {shape}")
        try:
            array = np.asarray(values)
        except ValueError as error:  # ragged lists
            raise SamplerInputError(f"{name}: not a rectangular array of ids ({error})") from None
        if array.ndim != ndim or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
            raise SamplerInputError(f"{name} must be {ndim}-D integer ids, got {array.dtype} of shape {array.shape}")
        return array.astype(np.int64, copy=False)

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
                drawn, feed["h"], feed["c"] = self._step(feed, count)
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

    def _step(self, feed, count):
        """One run of the sampler step, its outputs checked: ids inside the vocabulary, state shapes."""
        drawn, next_h, next_c = loader.run(self.session, STEP_OUTPUTS, feed, self.model_path)
        state_shape = (count, self.hidden_dim)
        if drawn.shape != (count,) or next_h.shape != state_shape or next_c.shape != state_shape:
            raise SamplerInputError(
                f"{self.model_path}: the step returned shapes {drawn.shape}, {next_h.shape}, {next_c.shape}; "
                f"expected ({count},) and {state_shape}"
            )
        outside = (drawn < 0) | (drawn >= self.vocabulary_size)
        if outside.any():
            raise SamplerInputError(
                f"{self.model_path}: the step emitted id {int(drawn[outside][0])}, "
                f"outside the vocabulary [0, {self.vocabulary_size})"
            )
        return drawn, next_h, next_c

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
        ids = self._integer_array(ids, "ids", 2)
        self._check_ids(ids, "ids")  # a negative id would index the vocabulary from its end
        texts = []
        for row in ids.tolist():
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
        self._check_count(num_samples, "num_samples")
        self._check_draws(temperature, seed)
        given = np.zeros([num_samples, self.sequence_length], np.int32)
        return self._decode(given, np.zeros(given.shape, bool), temperature, seed, greedy=False)

    def first_tokens(self, num_samples, temperature=1.0, seed=0):
        """The first token of `num_samples` samples: the first position of the
        same loop, without the rest (many draws for a distribution check)."""
        self._check_count(num_samples, "num_samples", length=1)
        self._check_draws(temperature, seed)
        given = np.zeros([num_samples, 1], np.int32)
        return self._decode(given, np.zeros(given.shape, bool), temperature, seed, greedy=False)["ids"][:, 0]

    def complete(self, prefix, prefix_length, temperature=1.0, seed=0, greedy=False):
        """Keeps prefix[n, :prefix_length[n]] and draws (or, greedy, argmaxes) the rest."""
        prefix = self._integer_array(prefix, "prefix", 2)
        self._check_count(prefix.shape[0], "prefix")
        if prefix.shape[1] > self.sequence_length:
            raise SamplerInputError(
                f"prefix: {prefix.shape[1]} tokens, more than the sequence length {self.sequence_length}"
            )
        prefix_length = self._integer_array(prefix_length, "prefix_length", 1)
        if prefix_length.shape != prefix.shape[:1]:
            raise SamplerInputError(
                f"prefix_length: {prefix_length.shape[0]} lengths for {prefix.shape[0]} prefix rows; give one per row"
            )
        if prefix_length.min() < 0 or prefix_length.max() > prefix.shape[1]:
            raise SamplerInputError(f"prefix_length must be in [0, {prefix.shape[1]}]")
        self._check_ids(prefix, "prefix")
        if not greedy:
            self._check_draws(temperature, seed)
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
        if isinstance(heads, str):
            heads = [heads]
        self._check_count(len(heads), "heads")
        self._check_draws(temperature, seed)
        starts = line_starts(self.sequence_length)
        given = np.zeros([len(heads), self.sequence_length], np.int32)
        keep = np.zeros(given.shape, bool)
        for row, head in enumerate(heads):
            if not isinstance(head, str) or len(head) != ACROSTIC_LINES:
                length = len(head) if isinstance(head, str) else "not a string of"
                raise SamplerInputError(
                    f"acrostic: {head!r} has {length} characters; give {ACROSTIC_LINES}, one per line"
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
        (0 after the end token), lengths, total. Rows are scored in chunks
        whose logits fit SCORE_BUDGET_BYTES."""
        ids = self._integer_array(ids, "ids", 2)
        self._check_count(ids.shape[0], "ids")
        if ids.shape[1] != self.sequence_length:
            raise SamplerInputError(f"ids must be (rows, {self.sequence_length}), got shape {ids.shape}")
        self._check_ids(ids, "ids")
        if self._scorer is None:
            self._scorer = loader.load_scorer(self._model, self.threads)
        names = ["log_probs", "lengths", "total"]
        rows = max(1, SCORE_BUDGET_BYTES // (4 * self.sequence_length * self.vocabulary_size))
        parts = []
        for start in range(0, ids.shape[0], rows):
            chunk = ids[start : start + rows].astype(np.int32)
            outputs = loader.run(self._scorer, names, {"ids": chunk}, self.info["scorer"])
            shapes = [output.shape for output in outputs]
            if shapes != [chunk.shape, chunk.shape[:1], chunk.shape[:1]]:
                raise SamplerInputError(f"{self.info['scorer']}: the scorer returned shapes {shapes} for {chunk.shape}")
            parts.append(outputs)
        return {name: np.concatenate([part[index] for part in parts]) for index, name in enumerate(names)}


# ------------------------------------------------------------------ CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message}\n")


def _program_name():
    """tfseqgan-sample when run as the console script, else the checkout's module form."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("tfseqgan-sample") else "python -m export.onnx_sample"


def parse_args(argv):
    parser = _Parser(prog=_program_name(), description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the exported sampler.onnx")
    parser.add_argument("--num", type=int, default=5, help=f"sequences to print, 1 to {MAX_SAMPLES} (default 5)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    parser.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    parser.add_argument("--prefix", default="", help="continue this text (as the vocabulary spells tokens)")
    parser.add_argument("--acrostic", default=None, help="4 characters: the first one of each line of a quatrain")
    parser.add_argument("--threads", type=int, default=0, help=f"CPU threads, 0 to {MAX_THREADS} (0: every core)")
    args = parser.parse_args(argv)
    if args.acrostic is not None and len(args.acrostic) != ACROSTIC_LINES:
        parser.error(
            f"--acrostic: {args.acrostic!r} has {len(args.acrostic)} characters; give {ACROSTIC_LINES}, one per line"
        )
    if args.greedy and args.acrostic:
        parser.error("--greedy and --acrostic do not go together (an acrostic is sampled)")
    if args.prefix and args.acrostic:
        parser.error("--prefix and --acrostic do not go together")
    if not 1 <= args.num <= MAX_SAMPLES:
        parser.error(f"--num must be in [1, {MAX_SAMPLES}], got {args.num}")
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be in [0, {MAX_SEED}], got {args.seed}")
    if not 0 <= args.threads <= MAX_THREADS:
        parser.error(f"--threads must be in [0, {MAX_THREADS}], got {args.threads}")
    if not args.greedy and not MIN_TEMPERATURE <= args.temperature <= MAX_TEMPERATURE:  # False for NaN
        parser.error(
            f"--temperature must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], got {args.temperature} "
            "(--greedy for argmax decoding)"
        )
    return args


def _tolerant_streams():
    """Characters the terminal's encoding lacks are printed as escapes (\\u6625) instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv=None):
    """The CLI: every failure is one `error:` line on stderr and exit status 2.

    A reader that closes the output early (`| head -1`) ends it quietly with
    exit status 1, as Python's own convention for a broken pipe.
    """
    _tolerant_streams()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    loader.quiet_onnxruntime()
    try:
        model = OnnxSampler(args.model, threads=args.threads)
        model._check_count(args.num, "--num")  # rows x sequence length, before any row is built
        if args.acrostic:
            result = model.acrostic([args.acrostic] * args.num, args.temperature, args.seed)
        elif args.prefix or args.greedy:
            prefix = model.encode(args.prefix)
            rows = np.tile(np.array(prefix, np.int64).reshape(1, -1), [args.num, 1])
            result = model.complete(rows, [len(prefix)] * args.num, args.temperature, args.seed, args.greedy)
        else:
            result = model.sample(args.num, args.temperature, args.seed)
    except SamplerInputError as error:
        print(f"error: {escape_controls(str(error))}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: out of memory for --num={args.num}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2
    except Exception as error:  # a bug or a case no check foresaw: still one line, never a traceback
        reason = escape_controls(loader.first_line(error))
        print(f"error: {args.model}: unexpected {type(error).__name__}: {reason}", file=sys.stderr)
        return 2
    try:
        for line in result["text"]:
            print(escape_controls(line))
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
