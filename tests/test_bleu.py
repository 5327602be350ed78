"""BLEU / Self-BLEU: equality with NLTK sentence_bleu (method1, uniform weights) to 1e-9."""

import math

import numpy as np
import pytest

from tfseqgan.bleu import Reference, SelfReference, bleu, self_bleu

nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")

ORDERS = (2, 3, 4, 5)
TOLERANCE = 1e-9


def nltk_sentence(references, hypothesis, order):
    weights = (1 / order,) * order
    smoothing = nltk_bleu.SmoothingFunction().method1
    return nltk_bleu.sentence_bleu(references, hypothesis, weights=weights, smoothing_function=smoothing)


def nltk_mean(hypotheses, references, order):
    return math.fsum(nltk_sentence(references, h, order) for h in hypotheses) / len(hypotheses)


def random_corpus(rng, count, vocabulary, min_len=1, max_len=12):
    return [list(rng.integers(0, vocabulary, rng.integers(min_len, max_len + 1)).tolist()) for _ in range(count)]


def int_case():
    """~50 hypotheses x ~100 references of small-vocabulary ints, plus the special cases."""
    rng = np.random.default_rng(7)
    references = random_corpus(rng, 100, 12, 3, 9)
    references += [[1, 1, 1, 2], [5, 6, 7, 8, 9, 10]]  # repeated tokens; a reference to copy
    hypotheses = random_corpus(rng, 40, 12, 1, 14)  # lengths 1..14: shorter than n and longer than refs
    hypotheses += [
        [3],  # length 1
        [3, 4],  # length 2
        [100, 101, 102, 103],  # no unigram match -> 0
        [5, 6, 7, 8, 9, 10],  # equal to a reference
        [1, 1, 1, 1, 1, 1, 1],  # clipping of a repeated token
        [1, 1, 2, 2, 1, 1],
        list(range(12)) * 3,  # far longer than every reference
    ]
    return hypotheses, references


def str_case():
    """Chinese-character tokens, with reference lengths chosen to make closest-length ties."""
    rng = np.random.default_rng(11)
    alphabet = list("的一是不了在人有我他这个们中来上大为和国地到以说时要就出也")
    references = [[alphabet[t] for t in s] for s in random_corpus(rng, 60, 15, 2, 10)]
    references += [list("我是中国人"), list("我是中国人们在"), list("他")]  # lengths 5 and 7: a 6-token hyp ties
    hypotheses = [[alphabet[t] for t in s] for s in random_corpus(rng, 30, 15, 1, 13)]
    hypotheses += [list("我是中国人"), list("我是中国人们"), list("我是是是是是"), list("猫"), list("我")]
    return hypotheses, references


@pytest.mark.parametrize("case", [int_case, str_case], ids=["int_tokens", "chinese_tokens"])
def test_bleu_equals_nltk(case):
    hypotheses, references = case()
    ours = bleu(hypotheses, references, 5)
    assert sorted(ours) == list(ORDERS)
    for order in ORDERS:
        assert ours[order] == pytest.approx(nltk_mean(hypotheses, references, order), abs=TOLERANCE, rel=0)


def test_per_sentence_scores_equal_nltk_including_special_cases():
    hypotheses, references = int_case()
    index = Reference(references, 5)
    for hypothesis in hypotheses:
        scores = index.score(hypothesis)
        for order in ORDERS:
            assert scores[order] == pytest.approx(nltk_sentence(references, hypothesis, order), abs=TOLERANCE, rel=0)
    assert index.score([100, 101, 102, 103]) == {n: 0.0 for n in ORDERS}
    assert index.score([5, 6, 7, 8, 9, 10]) == pytest.approx({n: 1.0 for n in ORDERS}, abs=TOLERANCE)


def test_closest_length_ties_go_to_the_shorter_reference():
    # Lengths 4 and 6 are both 1 away from a 5-token hypothesis: NLTK picks 4 (no brevity penalty).
    references = [["a", "b", "c", "d"], ["a", "b", "c", "d", "e", "f"]]
    hypothesis = ["a", "b", "c", "d", "x"]
    for order in ORDERS:
        expected = nltk_sentence(references, hypothesis, order)
        assert Reference(references, 5).score(hypothesis)[order] == pytest.approx(expected, abs=TOLERANCE, rel=0)


def test_numpy_rows_are_accepted():
    hypotheses, references = int_case()
    as_arrays = [np.asarray(h, np.int32) for h in hypotheses[:20]]
    assert bleu(as_arrays, references, 4) == pytest.approx(bleu(hypotheses[:20], references, 4), abs=TOLERANCE)


def self_bleu_samples():
    rng = np.random.default_rng(3)
    samples = random_corpus(rng, 34, 8, 1, 10)
    samples += [samples[0], samples[5], list(samples[5])]  # duplicates (one appears three times)
    samples += [[7, 7, 7, 7], [7, 7], [99, 98]]  # repeated tokens; a sample matching nothing else
    return samples


def test_self_bleu_equals_nltk_against_the_other_samples():
    samples = self_bleu_samples()
    index = SelfReference(samples, 5)
    per_sample = {n: [] for n in ORDERS}
    for i, sample in enumerate(samples):
        others = samples[:i] + samples[i + 1 :]
        scores = index.score(i)
        for order in ORDERS:
            expected = nltk_sentence(others, sample, order)
            assert scores[order] == pytest.approx(expected, abs=TOLERANCE, rel=0), (i, order)
            per_sample[order].append(expected)
    ours = self_bleu(samples, 5)
    for order in ORDERS:
        assert ours[order] == pytest.approx(math.fsum(per_sample[order]) / len(samples), abs=TOLERANCE, rel=0)


def test_self_bleu_duplicate_matches_its_twin():
    samples = self_bleu_samples()
    index = SelfReference(samples, 5)
    assert index.score(0) == pytest.approx({n: 1.0 for n in ORDERS}, abs=TOLERANCE)
    assert index.score(len(samples) - 1) == {n: 0.0 for n in ORDERS}  # [99, 98] matches no other sample


def test_self_bleu_string_tokens_equal_nltk():
    samples = [list(s) for s in ["我是中国人", "我是中国人", "他是中国人", "我们在中国", "中国", "人", "我是我是我是"]]
    ours = self_bleu(samples, 4)
    for order in (2, 3, 4):
        expected = math.fsum(
            nltk_sentence(samples[:i] + samples[i + 1 :], s, order) for i, s in enumerate(samples)
        ) / len(samples)
        assert ours[order] == pytest.approx(expected, abs=TOLERANCE, rel=0)


def test_empty_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="hypotheses is empty"):
        bleu([], [[1, 2, 3]], 4)
    with pytest.raises(ValueError, match="references is empty"):
        bleu([[1, 2, 3]], [], 4)
    with pytest.raises(ValueError, match="samples is empty"):
        self_bleu([], 4)
    with pytest.raises(ValueError, match="at least 2 samples"):
        self_bleu([[1, 2, 3]], 4)
    with pytest.raises(ValueError, match="max_order"):
        bleu([[1, 2]], [[1, 2]], 1)


def test_empty_hypothesis_scores_zero_like_nltk():
    references = [[1, 2, 3]]
    for order in ORDERS:
        assert nltk_sentence(references, [], order) == 0
    assert Reference(references, 5).score([]) == {n: 0.0 for n in ORDERS}


def test_self_bleu_excludes_the_samples_own_length():
    # Sample 0 (length 5) must be compared with lengths 7 and 8 only: the brevity penalty applies.
    samples = [list("abcde"), list("abcdefg"), list("abcdxyzw"), list("abcdefg")]
    index = SelfReference(samples, 4)
    for i, sample in enumerate(samples):
        others = samples[:i] + samples[i + 1 :]
        for order in (2, 3, 4):
            expected = nltk_sentence(others, sample, order)
            assert index.score(i)[order] == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert index.score(0)[2] < 1.0
