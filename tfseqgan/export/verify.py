"""Verification of an export against the in-memory generator, run after every
export (and by the tests): reload the SavedModel and the ONNX models, then

- `score` of both agrees with `Generator.token_log_probs` to `SCORE_TOLERANCE`
  (max abs difference of per-token log-probabilities) on sequences the model
  generates (the difference on uniformly random ids is recorded too);
- greedy decoding after prefixes of every length gives the same ids in all
  three (in-memory `sampler.complete_prefixes(greedy=True)`, the SavedModel's
  `greedy`, the ONNX runner's);
- with a fixed seed the SavedModel sampler (and the ONNX runner) repeats
  itself, and the SavedModel's text output is the runner's decoding of its ids
  (the vocabulary asset and the vocabulary file agree);
- the first token of many ONNX samples (100,000 draws of the runner's first
  position) follows the model's softmax: total variation distance below a
  bound that a correct sampler exceeds with probability at most `FALSE_ALARM`
  (see `first_token_bound`);
- for character runs, both acrostics put the heads at the line starts and
  keep the form of a quatrain (export/acrostic.py).

Any failure raises `ExportError` naming the check.
"""

import math
import os
import unicodedata

import numpy as np
import tensorflow as tf

from tfseqgan import sampler, text
from tfseqgan.export import acrostic, graph
from tfseqgan.export.limits import ACROSTIC_LINES
from tfseqgan.export.onnx_model import SAMPLER_FILE
from tfseqgan.export.onnx_sample import OnnxSampler
from tfseqgan.export.restore import ExportError

SCORE_TOLERANCE = 1e-4
FALSE_ALARM = 1e-6


def first_token_bound(probabilities, num_samples, false_alarm=FALSE_ALARM):
    """A bound on the total variation between `probabilities` and the empirical
    distribution of `num_samples` draws from them, exceeded with probability at
    most `false_alarm`.

    E[TV] <= 1/2 sum_i sqrt(p_i (1 - p_i) / n) (Jensen on each |count_i/n - p_i|),
    and TV moves by at most 1/n when one draw changes, so by McDiarmid
    P(TV >= E[TV] + eps) <= exp(-2 n eps^2): eps = sqrt(ln(1/false_alarm) / (2n)).
    """
    p = np.asarray(probabilities, np.float64)
    expected = 0.5 * np.sum(np.sqrt(p * (1.0 - p) / num_samples))
    return float(expected + math.sqrt(math.log(1.0 / false_alarm) / (2.0 * num_samples)))


def first_token_check(first_tokens, probabilities, false_alarm=FALSE_ALARM):
    """(total variation, bound, passed) of sampled first tokens against the model's softmax."""
    first_tokens = np.asarray(first_tokens)
    p = np.asarray(probabilities, np.float64)
    observed = np.bincount(first_tokens, minlength=p.size)[: p.size] / first_tokens.size
    total_variation = float(0.5 * np.abs(observed - p).sum())
    bound = first_token_bound(p, first_tokens.size, false_alarm)
    return total_variation, bound, total_variation <= bound


def first_token_probabilities(generator, temperature=1.0):
    """softmax(logits / temperature) of position 0, float64 (vocab,)."""
    start = tf.constant([generator.start_token], tf.int32)
    logits, _ = generator.step(start, generator.initial_state(1))
    return tf.nn.softmax(tf.cast(logits[0], tf.float64) / temperature).numpy()


def _as_numpy(outputs):
    return {key: value.numpy() for key, value in outputs.items()}


def acrostic_heads(tokens, count=ACROSTIC_LINES):
    """The `count` most frequent letters of a character vocabulary (ids 4 on are in frequency order)."""
    letters = [token for token in tokens[len(text.RESERVED_TOKENS) :] if unicodedata.category(token)[0] == "L"]
    return "".join(letters[:count]) if len(letters) >= count else None


def verify_export(run_model, export_dir, num_distribution_samples=100_000, seed=0):
    """Runs every check on the export in `export_dir`; returns the figures.

    Raises:
        ExportError: a check failed (the message names it and the figures).
    """
    generator, end_token = run_model.generator, run_model.end_token
    length, vocab = run_model.sequence_length, run_model.vocabulary_size
    saved = tf.saved_model.load(os.path.join(export_dir, "saved_model"))
    onnx_model = OnnxSampler(os.path.join(export_dir, "onnx", SAMPLER_FILE))
    figures = {}

    # Score parity on sequences the model generates (at temperatures 1 and
    # 1.5), the checked figure; and, for information, on uniformly random ids,
    # whose log-probabilities (down to about -40) carry larger float32
    # round-off differences between TensorFlow's and ONNX Runtime's kernels.
    rng = np.random.default_rng(seed)
    greedy_rows = 2 * (length + 1)  # every prefix length 0..time, twice
    sampled = graph.finish(
        sampler.sample_free(generator, max(192, greedy_rows), tf.constant([seed, 1], tf.int64)), end_token
    )
    hotter = graph.finish(sampler.sample_free(generator, 64, tf.constant([seed, 2], tf.int64), 1.5), end_token)
    allowed = np.setdiff1d(np.arange(vocab), generator.banned_tokens)
    random_ids = graph.finish(tf.constant(rng.choice(allowed, [64, length]), tf.int32), end_token)

    def score_differences(ids):
        reference = generator.token_log_probs(ids)
        if end_token is not None:
            reference = tf.where(text.valid_mask(ids, end_token) > 0, reference, tf.zeros_like(reference))
        reference = reference.numpy()
        return {
            "saved_model": float(np.abs(saved.signatures["score"](ids=ids)["log_probs"].numpy() - reference).max()),
            "onnx": float(np.abs(onnx_model.score(ids.numpy())["log_probs"] - reference).max()),
        }

    ids = tf.concat([sampled, hotter], axis=0)
    differences = score_differences(ids)
    figures["score_max_abs_diff"] = differences
    figures["score_rows"] = int(ids.shape[0])
    figures["score_max_abs_diff_uniform_random_ids"] = score_differences(random_ids)
    for side, difference in differences.items():
        if not difference <= SCORE_TOLERANCE:
            raise ExportError(f"verification: {side} score differs from the generator by {difference:.3g} > 1e-4")

    # Greedy decoding after prefixes of every length 0..time.
    rows = greedy_rows
    prefix = sampled.numpy()[:rows]
    prefix_length = np.arange(rows, dtype=np.int32) % (length + 1)
    expected = graph.finish(
        sampler.complete_prefixes(generator, prefix, prefix_length, tf.zeros([2], tf.int64), greedy=True), end_token
    ).numpy()
    saved_greedy = saved.signatures["greedy"](prefix=tf.constant(prefix), prefix_length=tf.constant(prefix_length))
    onnx_greedy = onnx_model.greedy(prefix, prefix_length)
    figures["greedy_rows"] = rows
    for side, result in (("SavedModel", saved_greedy["ids"].numpy()), ("ONNX", onnx_greedy["ids"])):
        mismatched = int(np.sum(np.any(result != expected, axis=1)))
        if mismatched:
            raise ExportError(f"verification: {side} greedy decoding differs from the generator in {mismatched} rows")
    figures["greedy_equal"] = True

    # A fixed seed repeats; the SavedModel's text is the vocabulary file's decoding.
    def saved_sample(sample_seed):
        return _as_numpy(
            saved.signatures["sample"](
                num_samples=tf.constant(64), temperature=tf.constant(1.0), seed=tf.constant(sample_seed, tf.int64)
            )
        )

    first, again = saved_sample(seed + 7), saved_sample(seed + 7)
    if not np.array_equal(first["ids"], again["ids"]):
        raise ExportError("verification: the SavedModel sampler gives different ids for the same seed")
    if not np.array_equal(onnx_model.sample(16, 1.0, seed)["ids"], onnx_model.sample(16, 1.0, seed)["ids"]):
        raise ExportError("verification: the ONNX sampler gives different ids for the same seed")
    if [t.decode("utf-8") for t in first["text"]] != onnx_model.decode(first["ids"]):
        raise ExportError("verification: the SavedModel's decoded text differs from the vocabulary file's")
    figures["seed_repeats"] = True

    # The first token of many ONNX samples against the model's softmax.
    drawn = onnx_model.first_tokens(num_distribution_samples, 1.0, seed)
    total_variation, bound, passed = first_token_check(drawn, first_token_probabilities(generator))
    figures["first_token"] = {
        "samples": num_distribution_samples,
        "total_variation": total_variation,
        "bound": bound,
    }
    if not passed:
        raise ExportError(
            f"verification: ONNX first tokens are off the model's softmax (total variation "
            f"{total_variation:.4f} > bound {bound:.4f})"
        )

    # Acrostics: the heads at the line starts and the quatrain's form, on both sides.
    heads = acrostic_heads(run_model.tokens) if onnx_model.has_acrostic else None
    if heads is not None:
        starts = acrostic.line_starts(length)
        bias = acrostic.acrostic_bias(run_model.tokens, length, end_token)  # (time, vocab)
        sampled_positions = np.setdiff1d(np.arange(length), starts)
        head_ids = [run_model.tokens.index(character) for character in heads]
        saved_poems = saved.signatures["acrostic"](
            heads=tf.constant([heads] * 4), temperature=tf.constant(1.0), seed=tf.constant(seed, tf.int64)
        )["ids"].numpy()
        onnx_poems = onnx_model.acrostic([heads] * 4, 1.0, seed)["ids"]
        for side, poems in (("SavedModel", saved_poems), ("ONNX", onnx_poems)):
            heads_kept = np.all(poems[:, starts] == head_ids)
            form_kept = np.all(bias[sampled_positions[np.newaxis], poems[:, sampled_positions]] == 0)
            if not (heads_kept and form_kept):
                raise ExportError(f"verification: the {side} acrostic lost its heads {heads} or its form")
        figures["acrostic_heads"] = heads
    return figures
