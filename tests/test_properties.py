"""Property-based tests (hypothesis) of the text pipeline: tokenize -> encode ->
decode round trips for arbitrary Unicode lines, padding and end tokens that
never reach a metric or a loss, and a vocabulary that does not depend on the
order of its input."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import new_generator
from hypothesis import given, settings
from hypothesis import strategies as st

from tfseqgan import losses, metrics, text
from tfseqgan.text import END_ID, PAD_ID, RESERVED_TOKENS, START_ID, Vocabulary

# Each example of the TensorFlow-backed properties costs a few milliseconds; the counts are per test.
FAST = settings(max_examples=300, deadline=None, database=None)
TF_BOUND = settings(max_examples=100, deadline=None, database=None)

# Any Unicode text (surrogates cannot be UTF-8), with the characters that tend to
# break tokenizers drawn often: every whitespace character, the BOM, joiners,
# combining marks, the reserved tokens' punctuation, NUL, case-folding specials.
characters = st.characters(exclude_categories=("Cs",))
TRICKY = [chr(c) for c in range(0x3001) if chr(c).isspace()] + list("\ufeff\u200d\u0301<>/\x00İßﬁΣς")
lines = st.lists(st.text(st.one_of(characters, st.sampled_from(TRICKY)), max_size=16), min_size=1, max_size=6)
# Tokens as the tokenizers make them: non-empty, no whitespace.
token_characters = st.one_of(
    characters.filter(lambda c: not c.isspace()), st.sampled_from([c for c in TRICKY if not c.isspace()])
)
tokens = st.text(token_characters, min_size=1, max_size=4)
token_lists = st.lists(st.lists(tokens, max_size=6), min_size=1, max_size=8)


def test_whitespace_class_is_pythons():
    """The tokenizers' whitespace (an RE2 class) is exactly str.isspace(), over every code point."""
    code_points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    matched = tf.strings.regex_full_match(tf.constant(code_points), text.WHITESPACE).numpy()
    assert [c for c, m in zip(code_points, matched) if m] == [c for c in code_points if c.isspace()]


def tokenize(batch, tokenizer):
    """`text.tokenize`'s per-batch function, called eagerly: the tf.data
    pipeline around it costs a trace per call, too slow for hundreds of examples."""
    ragged = text.tokenize_tensor(tf.constant(batch, tf.string), tokenizer)
    return [[token.decode("utf-8") for token in row] for row in ragged.to_list()]


@pytest.mark.parametrize("tokenizer", text.TOKENIZERS)
def test_the_pipeline_tokenizes_like_its_batch_function(tokenizer):
    batch = ["The cat\u3000sat.", "映\xa0水 , 1", "a\u2028b\x85c", "\ufeffx"] * 3
    assert text.tokenize(batch, tokenizer, batch_size=5) == tokenize(batch, tokenizer)


def round_trip(token_lists_, sequence_length):
    vocabulary = Vocabulary.build(token_lists_)
    ids, kept, _ = text.encode(token_lists_, vocabulary, sequence_length, overlong="truncate")
    return vocabulary, ids, kept


@TF_BOUND
@given(lines)
def test_char_tokens_round_trip_to_the_line_without_whitespace(batch):
    tokenized = tokenize(batch, "char")
    assert tokenized == [[c for c in line if not c.isspace()] for line in batch]
    if not any(tokenized):
        return
    length = max(map(len, tokenized)) + 1
    vocabulary, ids, _ = round_trip(tokenized, length)
    for line, row in zip(batch, ids):
        decoded = vocabulary.decode(row)
        assert text.join_tokens(decoded, "char") == "".join(c for c in line if not c.isspace())


@TF_BOUND
@given(lines)
def test_word_tokens_are_stable_and_round_trip_through_ids(batch):
    tokenized = tokenize(batch, "word")
    for row in tokenized:
        assert all(token and not any(c.isspace() for c in token) for token in row), row
    # Re-tokenizing the display text gives the same tokens (case folding and splitting are idempotent).
    assert tokenize([text.join_tokens(row, "word") for row in tokenized], "word") == tokenized
    if not any(tokenized):
        return
    vocabulary, ids, _ = round_trip(tokenized, max(map(len, tokenized)))
    assert [vocabulary.decode(row) for row in ids] == tokenized


@TF_BOUND
@given(token_lists, st.integers(1, 7), st.sampled_from(["skip", "truncate"]))
def test_encode_pads_after_one_end_token_and_decode_inverts_it(token_lists_, length, overlong):
    if not any(token_lists_):
        return
    vocabulary = Vocabulary.build(token_lists_)
    ids, kept, stats = text.encode(token_lists_, vocabulary, length, overlong=overlong)
    assert ids.shape == (len(kept), length) and stats.lines == len(token_lists_)
    for row, tokens_ in zip(ids, kept):
        n = len(tokens_)
        assert n <= length
        assert list(row[:n]) == [vocabulary.ids[t] for t in tokens_]
        if n < length:
            assert row[n] == END_ID and set(row[n + 1 :]) <= {PAD_ID}
        assert vocabulary.decode(row) == tokens_
        assert not {PAD_ID, START_ID} & set(row[:n])


@FAST
@given(token_lists, st.randoms(use_true_random=False))
def test_vocabulary_does_not_depend_on_line_or_token_order(token_lists_, rng):
    if not any(token_lists_):
        return
    shuffled = [list(row) for row in token_lists_]
    rng.shuffle(shuffled)
    for row in shuffled:
        rng.shuffle(row)
    first, second = Vocabulary.build(token_lists_), Vocabulary.build(shuffled)
    assert first.tokens == second.tokens
    assert tuple(first.tokens[: len(RESERVED_TOKENS)]) == RESERVED_TOKENS
    counts = [sum(row.count(t) for row in token_lists_) for t in first.tokens[len(RESERVED_TOKENS) :]]
    assert counts == sorted(counts, reverse=True)
    limit = rng.randint(len(RESERVED_TOKENS) + 1, len(first) + 1)
    assert Vocabulary.build(token_lists_, max_size=limit).tokens == first.tokens[:limit]


@FAST
@given(token_list=st.lists(tokens, min_size=1, max_size=12, unique=True))
def test_vocabulary_file_round_trips_any_tokens(tmp_path_factory, token_list):
    token_list = [t for t in token_list if t not in RESERVED_TOKENS]
    vocabulary = Vocabulary(RESERVED_TOKENS + tuple(token_list))
    path = vocabulary.save(str(tmp_path_factory.getbasetemp() / "vocab.txt"))
    assert Vocabulary.load(path).tokens == vocabulary.tokens


ID_ROWS = st.lists(st.integers(0, 9), min_size=5, max_size=5)


@settings(max_examples=500, deadline=None, database=None)
@given(ID_ROWS)
def test_decode_never_yields_padding_start_or_end(row):
    vocabulary = Vocabulary(RESERVED_TOKENS + tuple("abcdef"))
    decoded = vocabulary.decode(row)
    assert not {"<pad>", "<s>", "</s>"} & set(decoded)
    before_end = row[: row.index(END_ID)] if END_ID in row else row
    assert decoded == [vocabulary.tokens[i] for i in before_end if i not in (PAD_ID, START_ID)]


@pytest.fixture(scope="module")
def generator():
    return new_generator(vocabulary_size=10, sequence_length=5)


@TF_BOUND
@given(rows=st.lists(ID_ROWS, min_size=4, max_size=4), junk=st.lists(ID_ROWS, min_size=4, max_size=4))
def test_nothing_after_the_end_token_reaches_nll_or_the_losses(generator, rows, junk):
    """NLL-test, the MLE loss and the policy-gradient loss ignore what follows a
    sequence's first end token, and count the end token itself."""
    tokens = tf.constant(rows, tf.int32)
    noise = tf.constant(junk, tf.int32)
    mask = text.valid_mask(tokens)
    other = tf.where(mask > 0, tokens, noise)  # the same up to the end token, anything after it
    np.testing.assert_array_equal(text.valid_mask(other), mask)
    np.testing.assert_array_equal(text.pad_after_end(other), text.pad_after_end(tokens))
    first_end = [row.index(END_ID) + 1 if END_ID in row else 5 for row in rows]
    assert mask.numpy().sum(axis=1).tolist() == first_end

    nll = metrics.mean_token_nll(generator, tokens, end_token=END_ID)
    assert nll == pytest.approx(metrics.mean_token_nll(generator, other, end_token=END_ID), rel=1e-6)
    log_probs = generator.token_log_probs(tokens, training=False).numpy()
    expected = -sum(log_probs[b, : first_end[b]].sum() for b in range(4)) / sum(first_end)
    assert nll == pytest.approx(expected, rel=1e-5)

    rewards = tf.random.stateless_uniform([4, 5], [len(rows), 1])
    for loss in (
        lambda t, r: losses.mle_loss(generator, t, training=False, mask=text.valid_mask(t)),
        lambda t, r: losses.policy_gradient_loss(generator, t, r, training=False, mask=text.valid_mask(t)),
    ):
        other_rewards = tf.where(mask > 0, rewards, 7.0)
        assert float(loss(tokens, rewards)) == pytest.approx(float(loss(other, other_rewards)), rel=1e-5, abs=1e-7)
