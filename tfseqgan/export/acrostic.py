"""The constraints of an acrostic quatrain, shared by the SavedModel and the
ONNX runner (NumPy and the standard library only, so the runner stays free of
TensorFlow).

A sequence of length T is read as four lines of T/4 tokens (the poem corpus:
five characters and a punctuation mark). Line k starts with the k-th head
character (a kept token), and a per-position logit bias keeps the form of the
quatrain: the end token and <unk> are banned everywhere; where the vocabulary
has punctuation, each line's last position takes punctuation only and the
other positions none, so a line cannot end early and shift the heads.
"""

import unicodedata

import numpy as np

from tfseqgan.export.limits import ACROSTIC_LINES, BANNED_LOGIT, UNKNOWN_ID


def line_starts(sequence_length):
    """Positions of the four heads."""
    return np.arange(ACROSTIC_LINES) * (sequence_length // ACROSTIC_LINES)


def is_punctuation(token):
    return len(token) == 1 and unicodedata.category(token).startswith("P")


def acrostic_bias(tokens, sequence_length, end_token):
    """(time, vocab) float32 logit bias of acrostic decoding (see the module docstring)."""
    vocab = len(tokens)
    bias = np.zeros([sequence_length, vocab], np.float32)
    punctuation = np.array([is_punctuation(token) for token in tokens])
    if punctuation.any():
        line_end = np.arange(sequence_length) % (sequence_length // ACROSTIC_LINES) == (
            sequence_length // ACROSTIC_LINES - 1
        )
        bias[line_end] = np.where(punctuation, 0.0, BANNED_LOGIT)
        bias[~line_end] = np.where(punctuation, BANNED_LOGIT, 0.0)
    if end_token is not None:
        bias[:, [token for token in (end_token, UNKNOWN_ID) if token < vocab]] = BANNED_LOGIT
    return bias
