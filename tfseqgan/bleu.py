"""Exact, fast BLEU-n and Self-BLEU-n (the Texygen definitions, NLTK semantics).

Definitions
-----------
``bleu(hypotheses, references, max_order)`` returns, for every n in 2..max_order,
the mean over the hypotheses of NLTK's

    sentence_bleu(references, hypothesis, weights=(1/n,) * n,
                  smoothing_function=SmoothingFunction().method1)

i.e. the BLEU-n of Texygen / TextGAN-PyTorch. For one hypothesis and order n:

* the modified precision p_k (k = 1..n) is ``clipped / max(1, total)``: ``total`` is
  the number of k-grams of the hypothesis (0 when it is shorter than k) and every
  hypothesis k-gram counts at most as often as in the single reference where it
  occurs most often (its clip count is its *maximum* count over the references);
* if no unigram matches at all the score is 0;
* method1 smoothing replaces a zero numerator by epsilon = 0.1, so p_k = 0.1 / max(1, total);
* the brevity penalty uses the reference length closest to the hypothesis length
  (ties go to the shorter reference): 1 if the hypothesis is longer, 0 if it is
  empty, else ``exp(1 - r / h)``;
* score = BP * exp(fsum(w * log(p_k))) with w = 1/n, computed exactly as NLTK does
  (same float operations in the same order), so results agree to rounding.

``self_bleu(samples, max_order)`` is the Texygen Self-BLEU: each sample in turn is
the hypothesis and all the *other* samples are its references (a sample that occurs
twice therefore matches its twin perfectly).

Why it is fast
--------------
NLTK recounts every reference's n-grams for every hypothesis: O(H * R * L) work
(minutes for a few hundred hypotheses against a few thousand references). Because a
clip count only needs the maximum count of an n-gram over the references, a
``Reference`` index (dict n-gram -> max count, for n = 1..max_order, plus the
reference length multiset for the brevity penalty) is built once in O(R * L), after
which each hypothesis costs O(its length * max_order) dictionary look-ups plus a
bisection for the closest reference length.

For Self-BLEU the index keeps, per n-gram, the largest count and the second largest
(counting multiplicity: when two samples share the maximum, excluding one still
leaves the maximum), so the clip count with the sample itself excluded is O(1):
it is the second largest when the sample's own count equals the largest, else the
largest. The closest length likewise excludes one occurrence of the sample's own length.

The module is pure Python (no TensorFlow, no NLTK).
"""

import bisect
import math
from collections import Counter

__all__ = ["EPSILON", "Reference", "SelfReference", "bleu", "self_bleu"]

# NLTK SmoothingFunction().method1's default epsilon.
EPSILON = 0.1


def _as_tokens(sequence):
    """A token sequence (list, tuple, numpy row, ...) as a list of hashable tokens."""
    if hasattr(sequence, "tolist"):  # numpy arrays: plain Python ints / strs hash faster.
        sequence = sequence.tolist()
    return list(sequence)


def _ngram_counts(tokens, max_order):
    """Counter of all n-grams (as tuples) of `tokens` for n = 1..max_order; orders share one dict."""
    counts = Counter()
    for n in range(1, min(max_order, len(tokens)) + 1):
        counts.update(zip(*[tokens[i:] for i in range(n)]))
    return counts


def _check_max_order(max_order):
    if isinstance(max_order, bool) or not isinstance(max_order, int) or max_order < 2:
        raise ValueError(f"max_order must be an integer >= 2 (BLEU-2..BLEU-max_order), got {max_order!r}")


class _Lengths:
    """Multiset of reference lengths with NLTK's closest-length rule (ties -> shorter)."""

    def __init__(self, lengths):
        self.counts = Counter(lengths)
        self.sorted = sorted(self.counts)

    def closest(self, hyp_len, exclude=None):
        """Closest length to `hyp_len`, ties to the shorter; `exclude` removes one occurrence of that length."""
        values, counts = self.sorted, self.counts

        def available(length):
            return counts[length] > (1 if length == exclude else 0)

        below = None  # the largest available length <= hyp_len
        i = bisect.bisect_right(values, hyp_len) - 1
        while i >= 0:
            if available(values[i]):
                below = values[i]
                break
            i -= 1
        above = None  # the smallest available length > hyp_len
        i = bisect.bisect_right(values, hyp_len)
        while i < len(values):
            if available(values[i]):
                above = values[i]
                break
            i += 1
        if below is None:
            if above is None:
                raise ValueError("no reference length left to compare with")
            return above
        if above is None or hyp_len - below <= above - hyp_len:
            return below
        return above


def _scores(tokens, counts, clip, closest_len, max_order):
    """BLEU-2..max_order (dict) of one hypothesis, NLTK method1 semantics.

    `counts` is the hypothesis n-gram Counter and `clip(ngram, count)` its clipped count.
    """
    hyp_len = len(tokens)
    numerators = [0] * (max_order + 1)
    for ngram, count in counts.items():
        numerators[len(ngram)] += clip(ngram, count)
    if numerators[1] == 0:  # no unigram match (this includes the empty hypothesis)
        return dict.fromkeys(range(2, max_order + 1), 0.0)
    # Smoothed precisions, as NLTK computes them (Fraction -> float division, or (0 + eps) / den).
    precisions = [None]
    for n in range(1, max_order + 1):
        denominator = max(1, hyp_len - n + 1)
        numerator = numerators[n]
        precisions.append(numerator / denominator if numerator else (0 + EPSILON) / denominator)
    logs = [None] + [math.log(p) for p in precisions[1:]]
    if hyp_len > closest_len:
        penalty = 1
    else:  # hyp_len > 0 here: an empty hypothesis has no unigram match
        penalty = math.exp(1 - closest_len / hyp_len)
    result = {}
    for order in range(2, max_order + 1):
        weight = 1 / order
        result[order] = penalty * math.exp(math.fsum(weight * logs[n] for n in range(1, order + 1)))
    return result


class Reference:
    """Index of a reference set: max count of every n-gram (n <= max_order) and the reference lengths.

    Build it once, then `score(hypothesis)` costs O(len(hypothesis) * max_order).
    """

    def __init__(self, references, max_order):
        _check_max_order(max_order)
        references = [_as_tokens(r) for r in references]
        if not references:
            raise ValueError("references is empty: BLEU needs at least one reference sentence")
        self.max_order = max_order
        self.max_counts = {}
        max_counts = self.max_counts
        for tokens in references:
            for ngram, count in _ngram_counts(tokens, max_order).items():
                if count > max_counts.get(ngram, 0):
                    max_counts[ngram] = count
        self.lengths = _Lengths(len(r) for r in references)

    def __len__(self):
        return sum(self.lengths.counts.values())

    def score(self, hypothesis):
        """{n: BLEU-n of `hypothesis` against the whole reference set} for n = 2..max_order."""
        tokens = _as_tokens(hypothesis)
        max_counts = self.max_counts

        def clip(ngram, count):
            return min(count, max_counts.get(ngram, 0))

        counts = _ngram_counts(tokens, self.max_order)
        return _scores(tokens, counts, clip, self.lengths.closest(len(tokens)), self.max_order)


class SelfReference:
    """Self-BLEU index: per n-gram the largest and second-largest count over the samples (with multiplicity).

    `score(i)` is the BLEU of sample i against all the other samples, in O(len(sample i) * max_order).
    """

    def __init__(self, samples, max_order):
        _check_max_order(max_order)
        self.samples = [_as_tokens(s) for s in samples]
        if len(self.samples) < 2:
            raise ValueError(
                f"self_bleu needs at least 2 samples (each is scored against the others), got {len(self.samples)}"
            )
        self.max_order = max_order
        self.sample_counts = [_ngram_counts(s, max_order) for s in self.samples]
        first, second = {}, {}
        for counts in self.sample_counts:
            for ngram, count in counts.items():
                top = first.get(ngram, 0)
                if count > top:
                    second[ngram] = top
                    first[ngram] = count
                elif count > second.get(ngram, 0):
                    second[ngram] = count
        self.first, self.second = first, second
        self.lengths = _Lengths(len(s) for s in self.samples)

    def __len__(self):
        return len(self.samples)

    def score(self, index):
        """{n: BLEU-n of sample `index` against every other sample} for n = 2..max_order."""
        tokens = self.samples[index]
        first, second = self.first, self.second

        def clip(ngram, count):
            # The sample's own count is part of `first`; excluding it leaves `second` when it is the maximum.
            top = first[ngram]
            return min(count, second.get(ngram, 0) if count == top else top)

        closest = self.lengths.closest(len(tokens), exclude=len(tokens))
        return _scores(tokens, self.sample_counts[index], clip, closest, self.max_order)


def _average(per_sentence, max_order):
    return {n: math.fsum(s[n] for s in per_sentence) / len(per_sentence) for n in range(2, max_order + 1)}


def bleu(hypotheses, references, max_order):
    """Mean NLTK sentence BLEU-n (method1 smoothing, uniform weights) of `hypotheses` against `references`.

    hypotheses, references: sequences of token sequences (str or int tokens).
    Returns {n: score} for n = 2..max_order.
    """
    _check_max_order(max_order)
    hypotheses = list(hypotheses)
    if not hypotheses:
        raise ValueError("hypotheses is empty: BLEU is averaged over at least one hypothesis")
    index = Reference(references, max_order)
    return _average([index.score(h) for h in hypotheses], max_order)


def self_bleu(samples, max_order):
    """Texygen Self-BLEU-n: mean BLEU-n of each sample against all the other samples.

    Returns {n: score} for n = 2..max_order.
    """
    _check_max_order(max_order)
    samples = list(samples)
    if not samples:
        raise ValueError("samples is empty: Self-BLEU needs at least 2 samples")
    index = SelfReference(samples, max_order)
    return _average([index.score(i) for i in range(len(index))], max_order)
