"""The text pipeline: corpus files -> tokens -> vocabulary -> padded id tensors.

Reading checks every line (missing, empty, non-UTF-8 or binary files fail with
one line naming the file and line). Tokenizing runs on tf.data with
tensorflow-text: `char` splits a line into Unicode characters with whitespace
dropped (Chinese quatrains), `word` case-folds it and splits on whitespace with
punctuation split off as tokens of its own (English captions).

Every sequence is `sequence_length` ids: the tokens, one end token when there
is room, then padding. Position t counts (in losses, rewards and metrics) when
no end token comes before it: the end token itself is learned, the padding
after it is ignored. Generated sequences are put in the same form by
`pad_after_end`, so the discriminator sees real and fake text alike.
"""

import collections
import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

PAD, START, END, UNKNOWN = "<pad>", "<s>", "</s>", "<unk>"
RESERVED_TOKENS = (PAD, START, END, UNKNOWN)
PAD_ID, START_ID, END_ID, UNKNOWN_ID = range(len(RESERVED_TOKENS))
TOKENIZERS = ("char", "word")
OVERLONG_POLICIES = ("skip", "truncate")
VOCABULARY_FILE = "vocab.txt"

# Files of the two bundled corpora inside --data_dir (see REFERENCE.md, "Data").
DATASETS = {
    "poems": {"train": "poems/train.txt", "test": "poems/valid.txt", "tokenizer": "char"},
    "coco": {"train": "coco/train.txt", "test": "coco/test.txt", "tokenizer": "word"},
}

# Whitespace as Python's str.isspace() has it (RE2's \s alone is ASCII only):
# the ideographic space U+3000, no-break spaces, line and paragraph separators.
WHITESPACE = r"[\s\v\x{1c}-\x{1f}\x{85}\p{Z}]"

# Control characters that never occur in text (tab, newline and carriage
# return excepted): their presence means the file is binary.
_BINARY_BYTES = bytes(b for b in range(32) if b not in (9, 10, 13)) + b"\x7f"


class CorpusError(ValueError):
    """A corpus or vocabulary file that cannot be used; the message is one
    line naming the file (and line) and what was expected."""


# ------------------------------------------------------------------ reading
def read_lines(path):
    """The non-blank lines of a UTF-8 text file, whitespace-stripped.

    Raises:
        CorpusError: missing file, empty file, binary data, or bytes that are
            not UTF-8 (naming the first bad line).
    """
    if not os.path.exists(path):
        raise CorpusError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CorpusError(f"{path}: not a regular file")
    with open(path, "rb") as stream:
        data = stream.read()
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        bad = next((b for b in raw if b in _BINARY_BYTES), None)
        if bad is not None:
            raise CorpusError(
                f"{path}:{number}: binary data (byte 0x{bad:02x}); expected UTF-8 text, one sentence a line"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CorpusError(
                f"{path}:{number}: not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
                "expected UTF-8 text"
            ) from None
        text = text.strip().lstrip("\ufeff")
        if text:
            lines.append(text)
    if not lines:
        raise CorpusError(f"{path}: empty file; expected one sentence a line")
    return lines


# --------------------------------------------------------------- tokenizing
def tokenize_tensor(lines, tokenizer):
    """(lines,) tf.string -> ragged (lines, None) tf.string tokens."""
    if tokenizer == "char":
        return tf.strings.unicode_split(tf.strings.regex_replace(lines, WHITESPACE + "+", ""), "UTF-8")
    if tokenizer == "word":
        # Punctuation and symbols become tokens of their own; whitespace only separates.
        return tf_text.regex_split(tf_text.case_fold_utf8(lines), WHITESPACE + r"+|[\p{P}\p{S}]", r"[\p{P}\p{S}]")
    raise ValueError(f"unknown tokenizer {tokenizer!r}; expected one of {', '.join(TOKENIZERS)}")


def tokenize(lines, tokenizer, batch_size=4096):
    """Python strings -> lists of token strings, through a tf.data pipeline."""
    if not lines:
        return []
    dataset = (
        tf.data.Dataset.from_tensor_slices(tf.constant(lines, tf.string))
        .batch(batch_size)
        .map(lambda batch: tokenize_tensor(batch, tokenizer), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    tokens = []
    for batch in dataset:
        tokens.extend([token.decode("utf-8") for token in row] for row in batch.to_list())
    return tokens


def join_tokens(tokens, tokenizer):
    """Tokens back to display text: characters run together, words spaced."""
    return ("" if tokenizer == "char" else " ").join(tokens)


def format_poem(text):
    """A quatrain on one line -> its verses on separate lines (split after
    each full-width comma or full stop)."""
    verses, current = [], ""
    for character in text:
        current += character
        if character in "，。！？；":
            verses.append(current)
            current = ""
    if current:
        verses.append(current)
    return "\n".join(verses)


# ---------------------------------------------------------------- vocabulary
class Vocabulary:
    """Token <-> id map with the reserved ids first: <pad> 0, <s> 1, </s> 2,
    <unk> 3. Saved as a plain text file, one token a line in id order.

    Args:
        tokens: every token in id order, starting with RESERVED_TOKENS.
    """

    def __init__(self, tokens):
        tokens = list(tokens)
        if tuple(tokens[: len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
            raise ValueError(f"a vocabulary starts with {' '.join(RESERVED_TOKENS)}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary holds each token once")
        self.tokens = tokens
        self.ids = {token: index for index, token in enumerate(tokens)}

    def __len__(self):
        return len(self.tokens)

    @classmethod
    def build(cls, token_lists, max_size=0, min_count=1):
        """From tokenized training lines: tokens seen at least `min_count`
        times, most frequent first (ties in code-point order, so the result
        is deterministic), at most `max_size` ids in all (0: no limit)."""
        reserved = len(RESERVED_TOKENS)
        if max_size and max_size <= reserved:
            raise CorpusError(
                f"--max_vocab_size={max_size} leaves no room for tokens: the vocabulary reserves {reserved} ids "
                f"({' '.join(RESERVED_TOKENS)}), so it needs at least {reserved + 1}"
            )
        counts = collections.Counter(token for tokens in token_lists for token in tokens)
        for token in RESERVED_TOKENS:
            counts.pop(token, None)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if not kept:
            raise CorpusError(
                f"--min_count={min_count} leaves no tokens: the most frequent one occurs "
                f"{max(counts.values(), default=0)} times"
            )
        if max_size:
            kept = kept[: max_size - reserved]
        return cls(RESERVED_TOKENS + tuple(kept))

    def save(self, path):
        """Writes the vocabulary file atomically."""
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as stream:
            stream.write("\n".join(self.tokens) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path):
        """Reads a file written by `save`: each line is a token, exactly (no
        stripping: a token may be any non-whitespace character, U+FEFF too)."""
        if not os.path.isfile(path):
            raise CorpusError(f"{path}: no such file")
        with open(path, "rb") as stream:
            data = stream.read()
        try:
            tokens = data.decode("utf-8").split("\n")
        except UnicodeDecodeError as error:
            raise CorpusError(f"{path}: not UTF-8 (byte offset {error.start}); not a tfseqgan vocabulary") from None
        if tokens and tokens[-1] == "":
            tokens.pop()
        if "" in tokens:
            raise CorpusError(f"{path}:{tokens.index('') + 1}: empty line; not a tfseqgan vocabulary")
        try:
            return cls(tokens)
        except ValueError as error:
            raise CorpusError(f"{path}: not a tfseqgan vocabulary ({error})") from None

    def lookup_table(self):
        """A tf.lookup table from token strings to ids, <unk> for the rest."""
        initializer = tf.lookup.KeyValueTensorInitializer(
            tf.constant(self.tokens), tf.range(len(self.tokens), dtype=tf.int32)
        )
        return tf.lookup.StaticHashTable(initializer, default_value=UNKNOWN_ID)

    def decode(self, ids):
        """Token strings of one id sequence, up to (without) the end token."""
        tokens = []
        for index in np.asarray(ids).tolist():
            if index == END_ID:
                break
            if index != PAD_ID and index != START_ID:
                tokens.append(self.tokens[index] if 0 <= index < len(self.tokens) else UNKNOWN)
        return tokens


# ----------------------------------------------------------------- encoding
@dataclasses.dataclass
class EncodeStats:
    lines: int = 0
    too_long: int = 0  # lines with more than sequence_length tokens
    skipped: int = 0  # of those, dropped (--overlong=skip)
    truncated: int = 0  # of those, cut to sequence_length (--overlong=truncate)
    unknown_tokens: int = 0


def encode(token_lists, vocabulary, sequence_length, overlong="skip"):
    """Token lists -> (rows, sequence_length) int32 ids: tokens, </s> when
    shorter than sequence_length, <pad> after it.

    Returns:
        (ids as np.ndarray, the kept lines' token lists, EncodeStats).
    """
    if overlong not in OVERLONG_POLICIES:
        raise ValueError(f"overlong must be one of {OVERLONG_POLICIES}, got {overlong!r}")
    stats = EncodeStats(lines=len(token_lists))
    kept = []
    for tokens in token_lists:
        if len(tokens) > sequence_length:
            stats.too_long += 1
            if overlong == "skip":
                stats.skipped += 1
                continue
            stats.truncated += 1
            tokens = tokens[:sequence_length]
        kept.append(tokens)
    if not kept:
        return np.zeros([0, sequence_length], np.int32), kept, stats
    table = vocabulary.lookup_table()
    dataset = (
        tf.data.Dataset.from_tensor_slices(tf.ragged.constant(kept, dtype=tf.string))
        .batch(4096)
        .map(lambda batch: _to_ids(table, batch, sequence_length))
    )
    ids = np.concatenate([batch.numpy() for batch in dataset], axis=0)
    stats.unknown_tokens = int(np.sum(ids == UNKNOWN_ID))
    return ids, kept, stats


def _to_ids(table, tokens, sequence_length):
    """Ragged (batch, None) strings -> (batch, sequence_length) int32 ids."""
    ids = table.lookup(tokens)  # ragged (batch, None)
    lengths = ids.row_lengths()
    dense = ids.to_tensor(default_value=PAD_ID, shape=[None, sequence_length])
    positions = tf.range(sequence_length, dtype=lengths.dtype)[tf.newaxis]
    is_end = tf.equal(positions, lengths[:, tf.newaxis])  # one past the last token, when it fits
    return tf.where(is_end, tf.constant(END_ID, tf.int32), dense)


# -------------------------------------------------------- masks and padding
def pad_after_end(tokens, end_id=END_ID, pad_id=PAD_ID):
    """Replaces every token after the first end token with padding: (rows, time)."""
    tokens = tf.convert_to_tensor(tokens)
    ended_before = tf.cumsum(tf.cast(tf.equal(tokens, end_id), tf.int32), axis=1, exclusive=True) > 0
    return tf.where(ended_before, tf.cast(pad_id, tokens.dtype), tokens)


def valid_mask(tokens, end_id=END_ID):
    """1.0 where a position counts (no end token before it), else 0.0: (rows, time)."""
    tokens = tf.convert_to_tensor(tokens)
    ended_before = tf.cumsum(tf.cast(tf.equal(tokens, end_id), tf.int32), axis=1, exclusive=True) > 0
    return 1.0 - tf.cast(ended_before, tf.float32)


# ------------------------------------------------------------------ corpora
@dataclasses.dataclass
class Corpus:
    """A tokenized, encoded training split and its held-out split.

    Attributes:
        train_ids, test_ids: (rows, sequence_length) int32 tensors.
        train_tokens, test_tokens: token lists of the same lines (for BLEU:
            references keep their words even where the ids say <unk>).
    """

    name: str
    tokenizer: str
    vocabulary: Vocabulary
    sequence_length: int
    train_path: str
    test_path: str
    train_ids: tf.Tensor
    test_ids: tf.Tensor
    train_tokens: list
    test_tokens: list
    train_stats: EncodeStats
    test_stats: EncodeStats

    def decode(self, ids):
        """(rows, time) ids -> display strings."""
        return [join_tokens(self.vocabulary.decode(row), self.tokenizer) for row in np.asarray(ids)]

    def summary(self):
        lines = [
            f"corpus {self.name}: {len(self.vocabulary)} ids ({self.tokenizer} tokens), "
            f"sequence length {self.sequence_length}, {self.train_ids.shape[0]} training and "
            f"{self.test_ids.shape[0]} held-out sequences"
        ]
        for path, stats in ((self.train_path, self.train_stats), (self.test_path, self.test_stats)):
            if stats.too_long:
                action = "skipped" if stats.skipped else "truncated"
                lines.append(
                    f"  {path}: {stats.too_long} of {stats.lines} lines longer than "
                    f"{self.sequence_length} tokens, {action}"
                )
        return "\n".join(lines)


def dataset_paths(data_dir, dataset):
    """(train, test) paths of a bundled corpus inside `data_dir`.

    Raises:
        CorpusError: the folder or its expected files are missing.
    """
    spec = DATASETS[dataset]
    if not os.path.isdir(data_dir):
        raise CorpusError(f"--data_dir={data_dir}: no such directory")
    paths = [os.path.join(data_dir, spec[split]) for split in ("train", "test")]
    missing = [spec[split] for split, path in zip(("train", "test"), paths) if not os.path.isfile(path)]
    if missing:
        raise CorpusError(
            f"--data_dir={data_dir}: expected {' and '.join(missing)} for --dataset={dataset} "
            f"(get them with: python -m tfseqgan.datasets fetch --data_dir={data_dir})"
        )
    return tuple(paths)


def load_corpus(
    train_path,
    test_path,
    tokenizer,
    sequence_length,
    batch_size,
    max_vocab_size=0,
    min_count=1,
    overlong="skip",
    name="text",
    vocabulary=None,
):
    """Reads, tokenizes and encodes both splits; the vocabulary comes from the
    training split unless one is given (a resumed run reuses its own).

    Raises:
        CorpusError: unreadable files, or fewer usable training lines than
            one batch.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}; expected one of {', '.join(TOKENIZERS)}")
    train_lines = read_lines(train_path)
    test_lines = read_lines(test_path)
    train_tokens = tokenize(train_lines, tokenizer)
    test_tokens = tokenize(test_lines, tokenizer)
    if vocabulary is None:
        vocabulary = Vocabulary.build(train_tokens, max_vocab_size, min_count)
    train_ids, train_tokens, train_stats = encode(train_tokens, vocabulary, sequence_length, overlong)
    test_ids, test_tokens, test_stats = encode(test_tokens, vocabulary, sequence_length, overlong)
    if train_ids.shape[0] < batch_size:
        raise CorpusError(
            f"{train_path}: {train_ids.shape[0]} usable lines (of {train_stats.lines}, {train_stats.skipped} "
            f"longer than --sequence_length={sequence_length} skipped), "
            f"fewer than one batch (--batch_size={batch_size})"
        )
    if test_ids.shape[0] == 0:
        raise CorpusError(
            f"{test_path}: no usable lines (all {test_stats.lines} longer than --sequence_length={sequence_length})"
        )
    return Corpus(
        name=name,
        tokenizer=tokenizer,
        vocabulary=vocabulary,
        sequence_length=sequence_length,
        train_path=train_path,
        test_path=test_path,
        train_ids=tf.constant(train_ids),
        test_ids=tf.constant(test_ids),
        train_tokens=train_tokens,
        test_tokens=test_tokens,
        train_stats=train_stats,
        test_stats=test_stats,
    )
