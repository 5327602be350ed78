"""The text pipeline: reading, tokenizing, vocabulary, encoding, masks."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import new_generator

from tfseqgan import losses, metrics, sampler, text
from tfseqgan.text import END_ID, PAD_ID, START_ID, UNKNOWN_ID, CorpusError, Vocabulary


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


# ------------------------------------------------------------------ reading
def test_read_lines_strips_and_skips_blank_lines(tmp_path):
    path = write(tmp_path / "c.txt", "\ufeffa b\r\n\n  c d  \n\n")
    assert text.read_lines(path) == ["a b", "c d"]


@pytest.mark.parametrize(
    "data, message",
    [
        (None, "c.txt: no such file"),
        (b"", "c.txt: empty file"),
        (b"\n  \n\t\n", "c.txt: empty file"),
        (b"good line\nbad \xff\xfe line\n", "c.txt:2: not UTF-8 (byte 0xff at column 5)"),
        (b"ok\nok\n\x89PNG\x00\x01\x02", "c.txt:3: binary data (byte 0x00)"),
    ],
    ids=["missing", "empty", "blank", "not-utf8", "binary"],
)
def test_read_lines_errors_name_file_and_line(tmp_path, data, message):
    path = tmp_path / "c.txt"
    if data is not None:
        write(path, data)
    with pytest.raises(CorpusError) as error:
        text.read_lines(str(path))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_random_bytes_never_pass_as_a_traceback(tmp_path):
    rng = np.random.default_rng(0)
    for index in range(20):
        path = write(tmp_path / f"r{index}.bin", rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
        with pytest.raises(CorpusError, match=r"r\d+\.bin:\d+: (binary data|not UTF-8)"):
            text.read_lines(path)


# --------------------------------------------------------------- tokenizing
def test_char_tokenizer_splits_characters_and_drops_spaces():
    assert text.tokenize(["映 水 色 ，", "向月。"], "char") == [["映", "水", "色", "，"], ["向", "月", "。"]]


def test_word_tokenizer_lowercases_and_splits_punctuation():
    tokens = text.tokenize(["A Dog, on the BED.", "two  cats' toys"], "word")
    assert tokens == [["a", "dog", ",", "on", "the", "bed", "."], ["two", "cats", "'", "toys"]]


def test_unknown_tokenizer():
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'"):
        text.tokenize(["a"], "bpe")


def test_format_poem_puts_each_verse_on_a_line():
    assert text.format_poem("映水色不别，向月光还度。") == "映水色不别，\n向月光还度。"


# ---------------------------------------------------------------- vocabulary
def test_vocabulary_order_min_count_and_max_size():
    lines = [["b", "a", "b"], ["c", "a", "b"], ["d"]]
    vocabulary = Vocabulary.build(lines)
    assert vocabulary.tokens == list(text.RESERVED_TOKENS) + ["b", "a", "c", "d"]  # by count, ties by code point
    assert Vocabulary.build(lines, min_count=2).tokens[4:] == ["b", "a"]
    assert Vocabulary.build(lines, max_size=5).tokens[4:] == ["b"]
    assert Vocabulary.build(list(reversed(lines))).tokens == vocabulary.tokens  # deterministic


@pytest.mark.parametrize("max_size", [1, 4])
def test_vocabulary_too_small_for_the_reserved_ids(max_size):
    with pytest.raises(CorpusError, match=f"--max_vocab_size={max_size} leaves no room.*at least 5"):
        Vocabulary.build([["a"]], max_size=max_size)


def test_vocabulary_min_count_above_every_count():
    with pytest.raises(CorpusError, match="--min_count=3 leaves no tokens: the most frequent one occurs 2 times"):
        Vocabulary.build([["a", "a", "b"]], min_count=3)


def test_vocabulary_file_round_trip(tmp_path):
    vocabulary = Vocabulary.build([["映", "水"], ["a"]])
    path = vocabulary.save(str(tmp_path / "vocab.txt"))
    assert Vocabulary.load(path).tokens == vocabulary.tokens
    write(tmp_path / "bad.txt", "a\nb\n")
    with pytest.raises(CorpusError, match="bad.txt: not a tfseqgan vocabulary"):
        Vocabulary.load(str(tmp_path / "bad.txt"))


def test_decode_stops_at_the_end_token():
    vocabulary = Vocabulary.build([["x", "y"]])
    x, y = vocabulary.ids["x"], vocabulary.ids["y"]
    assert vocabulary.decode([x, START_ID, y, END_ID, x, PAD_ID]) == ["x", "y"]


# ----------------------------------------------------------------- encoding
def test_encode_adds_end_then_padding_and_counts_overlong_lines():
    vocabulary = Vocabulary.build([["a", "b", "c"]])
    a, b, c = (vocabulary.ids[t] for t in "abc")
    lines = [["a"], ["a", "b", "c"], ["a", "b", "c", "a"], ["zz", "b"]]
    ids, kept, stats = text.encode(lines, vocabulary, 3, overlong="skip")
    np.testing.assert_array_equal(ids, [[a, END_ID, PAD_ID], [a, b, c], [UNKNOWN_ID, b, END_ID]])
    assert kept == [["a"], ["a", "b", "c"], ["zz", "b"]]
    assert (stats.too_long, stats.skipped, stats.truncated, stats.unknown_tokens) == (1, 1, 0, 1)
    ids, _, stats = text.encode(lines, vocabulary, 3, overlong="truncate")
    np.testing.assert_array_equal(ids[2], [a, b, c])
    assert (stats.too_long, stats.skipped, stats.truncated) == (1, 0, 1)


def test_pad_after_end_and_valid_mask():
    tokens = tf.constant([[5, END_ID, 6, END_ID], [5, 6, 7, 8], [END_ID, 5, 5, 5]])
    np.testing.assert_array_equal(
        text.pad_after_end(tokens), [[5, END_ID, PAD_ID, PAD_ID], [5, 6, 7, 8], [END_ID, PAD_ID, PAD_ID, PAD_ID]]
    )
    np.testing.assert_array_equal(text.valid_mask(tokens), [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])


# ------------------------------------------------------------------ corpora
def test_dataset_paths(tmp_path):
    with pytest.raises(CorpusError, match=r"--data_dir=.*nowhere: no such directory"):
        text.dataset_paths(str(tmp_path / "nowhere"), "poems")
    (tmp_path / "poems").mkdir()
    write(tmp_path / "poems" / "train.txt", "a\n")
    with pytest.raises(CorpusError, match=r"expected poems/valid.txt for --dataset=poems .*datasets fetch"):
        text.dataset_paths(str(tmp_path), "poems")
    write(tmp_path / "poems" / "valid.txt", "a\n")
    assert text.dataset_paths(str(tmp_path), "poems") == (
        str(tmp_path / "poems" / "train.txt"),
        str(tmp_path / "poems" / "valid.txt"),
    )


def test_load_corpus_and_smaller_than_one_batch(tmp_path):
    train = write(tmp_path / "train.txt", "".join(f"w{i % 7} x y.\n" for i in range(20)) + "one two three four five\n")
    test = write(tmp_path / "test.txt", "w1 x y .\nnew words\n")
    corpus = text.load_corpus(train, test, "word", 4, batch_size=8, name="t")
    assert corpus.train_ids.shape == (20, 4) and corpus.test_ids.shape == (2, 4)
    assert corpus.train_stats.skipped == 1
    assert corpus.decode(corpus.test_ids) == ["w1 x y .", "<unk> <unk>"]
    assert corpus.test_tokens[1] == ["new", "words"]  # references keep their words
    assert "1 of 21 lines longer than 4 tokens, skipped" in corpus.summary()
    with pytest.raises(CorpusError, match=r"train.txt: 20 usable lines .*fewer than one batch \(--batch_size=32\)"):
        text.load_corpus(train, test, "word", 4, batch_size=32)


# ------------------------------------------------ padding in models and metrics
def test_banned_tokens_are_never_sampled_and_have_zero_probability():
    generator = new_generator(vocabulary_size=6, sequence_length=5)
    banned = type(generator)(6, 5, embedding_dim=4, hidden_dim=6, seed=1, banned_tokens=(PAD_ID, START_ID))
    banned.output_layer.bias.assign([30.0, 30.0, 0.0, 0.0, 0.0, 0.0])  # the banned ids would dominate
    samples = sampler.sample_free(banned, 64, tf.constant([1, 2], tf.int64)).numpy()
    assert samples.min() >= 2
    log_probs = banned.token_log_probs(tf.constant([[0, 1, 2, 3, 4]]))
    assert log_probs[0, 0] < -1e8 and log_probs[0, 1] < -1e8
    assert banned.get_config()["banned_tokens"] == [PAD_ID, START_ID]
    assert generator.get_config()["banned_tokens"] == []


def test_losses_and_nll_ignore_the_padding_after_the_end_token():
    generator = new_generator(vocabulary_size=8, sequence_length=5)
    first = tf.constant([[5, END_ID, PAD_ID, PAD_ID, PAD_ID]])
    second = tf.constant([[5, END_ID, 7, 6, 4]])  # same up to the end token
    mask_first, mask_second = text.valid_mask(first), text.valid_mask(second)
    assert float(losses.mle_loss(generator, first, mask=mask_first)) == pytest.approx(
        float(losses.mle_loss(generator, second, mask=mask_second))
    )
    expected = -float(tf.reduce_mean(generator.token_log_probs(first)[:, :2]))
    assert float(losses.mle_loss(generator, first, mask=mask_first)) == pytest.approx(expected, rel=1e-6)
    assert metrics.mean_token_nll(generator, second, end_token=END_ID) == pytest.approx(expected, rel=1e-6)
    rewards = tf.ones([1, 5])
    assert float(losses.policy_gradient_loss(generator, first, rewards, mask=mask_first)) == pytest.approx(
        expected, rel=1e-6
    )
