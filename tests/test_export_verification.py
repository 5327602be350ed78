"""The export verification catches what it claims to (each failure branch is
triggered once, by an export that is wrong in that one way), and the
SavedModel's sampling signatures draw what the in-memory sampler draws."""

import numpy as np
import pytest
import tensorflow as tf
from export_runs import make_run

from tfseqgan import sampler
from tfseqgan.export import graph, pipeline, verify
from tfseqgan.export.restore import ExportError, load_run

DRAWS = 20_000  # first-token draws per verification (the exports' own check takes 100,000)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("verified") / "run"
    generator = make_run(run_dir, "poem")
    pipeline.export_run(str(run_dir))
    export_dir = run_dir / "export"
    return {
        "run": load_run(str(run_dir)),
        "generator": generator,
        "export_dir": str(export_dir),
        "saved": tf.saved_model.load(str(export_dir / "saved_model")),
    }


class SavedModelWith:
    """The loaded SavedModel with some signatures replaced by wrappers."""

    def __init__(self, saved, **replaced):
        self.signatures = {name: replaced.get(name, saved.signatures[name]) for name in saved.signatures}


def changed(outputs, key, change):
    """`outputs` with outputs[key] replaced by change(its NumPy value), a tensor where it was one."""
    outputs = dict(outputs)
    value = outputs[key]
    outputs[key] = tf.constant(change(value.numpy())) if tf.is_tensor(value) else change(value)
    return outputs


def other_id_in_row_zero(ids, column=-1):
    ids = np.array(ids)
    ids[0, column] = 5 if ids[0, column] == 4 else 4  # another letter of the poem vocabulary
    return ids


def each_call_differs(function, key="ids"):
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(None)
        return changed(function(*args, **kwargs), key, lambda ids: other_id_in_row_zero(ids) if len(calls) % 2 else ids)

    return wrapper


def saved_case(name, wrap):
    """A verification whose SavedModel has signature `name` wrapped by wrap(original)."""

    def apply(monkeypatch, saved):
        replaced = SavedModelWith(saved, **{name: wrap(saved.signatures[name])})
        monkeypatch.setattr(verify.tf.saved_model, "load", lambda path: replaced)

    return apply


def onnx_case(name, wrap):
    """A verification whose ONNX runner has method `name` wrapped by wrap(original)."""

    def apply(monkeypatch, saved):
        original = getattr(verify.OnnxSampler, name)
        wrapped = wrap(original)
        monkeypatch.setattr(verify.OnnxSampler, name, lambda self, *args, **kwargs: wrapped(self, *args, **kwargs))

    return apply


def shifted(key, amount):
    return lambda function: lambda *args, **kwargs: changed(function(*args, **kwargs), key, lambda v: v + amount)


def row_changed(column=-1):
    return lambda function: (
        lambda *args, **kwargs: changed(function(*args, **kwargs), "ids", lambda ids: other_id_in_row_zero(ids, column))
    )


def letter_at_a_line_end(function):
    """Row 0 keeps its heads (positions 0, 2, 4, 6) but gets a letter at position 1, where a
    quatrain of 2-token lines allows punctuation only."""

    def with_letter(ids):
        ids = np.array(ids)
        ids[0, 1] = 4
        return ids

    return lambda *args, **kwargs: changed(function(*args, **kwargs), "ids", with_letter)


def first_text_changed(function):
    return lambda *args, **kwargs: changed(function(*args, **kwargs), "text", lambda t: np.concatenate([[b"?"], t[1:]]))


def most_likely_first_tokens(function):
    def draws(self, num_samples, temperature, seed):
        tokens = function(self, num_samples, temperature, seed)
        return np.full_like(tokens, np.bincount(tokens).argmax())

    return draws


BROKEN = {
    "SavedModel score": (saved_case("score", shifted("log_probs", 1e-3)), "saved_model score differs"),
    "ONNX score": (onnx_case("score", shifted("log_probs", 1e-3)), "onnx score differs"),
    "SavedModel greedy": (saved_case("greedy", row_changed()), "SavedModel greedy decoding differs .* in 1 rows"),
    "ONNX greedy": (onnx_case("greedy", row_changed()), "ONNX greedy decoding differs .* in 1 rows"),
    "SavedModel seed": (saved_case("sample", each_call_differs), "SavedModel sampler gives different ids"),
    "ONNX seed": (onnx_case("sample", each_call_differs), "ONNX sampler gives different ids"),
    "SavedModel text": (saved_case("sample", first_text_changed), "decoded text differs"),
    "ONNX first tokens": (onnx_case("first_tokens", most_likely_first_tokens), "first tokens are off"),
    "SavedModel acrostic": (saved_case("acrostic", row_changed(column=0)), "SavedModel acrostic lost its heads"),
    "ONNX acrostic": (onnx_case("acrostic", row_changed(column=0)), "ONNX acrostic lost its heads"),
    "SavedModel acrostic form": (saved_case("acrostic", letter_at_a_line_end), "SavedModel acrostic lost .* its form"),
    "ONNX acrostic form": (onnx_case("acrostic", letter_at_a_line_end), "ONNX acrostic lost .* its form"),
}


def test_verification_passes_on_the_export_as_written(exported):
    figures = verify.verify_export(exported["run"], exported["export_dir"], num_distribution_samples=DRAWS)
    assert figures["greedy_equal"] and figures["seed_repeats"] and figures["acrostic_heads"]


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_check_fails_on_an_export_broken_its_way(exported, monkeypatch, case):
    breaks, message = BROKEN[case]
    breaks(monkeypatch, exported["saved"])
    with pytest.raises(ExportError, match=message):
        verify.verify_export(exported["run"], exported["export_dir"], num_distribution_samples=DRAWS)


# ------------------------------------------------------------ SavedModel = in-memory sampler
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_saved_model_sample_draws_the_in_memory_samplers_tokens(exported, temperature):
    generator, end_token = exported["generator"], exported["run"].end_token
    for seed in (3, 4):
        saved = (
            exported["saved"]
            .signatures["sample"](
                num_samples=tf.constant(50), temperature=tf.constant(temperature), seed=tf.constant(seed, tf.int64)
            )["ids"]
            .numpy()
        )
        in_memory = sampler.sample_free(generator, 50, tf.constant([seed, 0], tf.int64), temperature=temperature)
        np.testing.assert_array_equal(saved, graph.finish(in_memory, end_token).numpy())
    assert len({row.tobytes() for row in saved}) > 1


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_saved_model_complete_draws_the_in_memory_samplers_tokens(exported, temperature):
    generator, end_token = exported["generator"], exported["run"].end_token
    length = generator.sequence_length
    prefix = np.tile(np.arange(4, 4 + length, dtype=np.int32), [2 * (length + 1), 1])  # letters
    prefix_length = np.arange(prefix.shape[0], dtype=np.int32) % (length + 1)
    saved = (
        exported["saved"]
        .signatures["complete"](
            prefix=tf.constant(prefix),
            prefix_length=tf.constant(prefix_length),
            temperature=tf.constant(temperature),
            seed=tf.constant(5, tf.int64),
        )["ids"]
        .numpy()
    )
    in_memory = sampler.complete_prefixes(
        generator, prefix, prefix_length, tf.constant([5, 0], tf.int64), temperature=temperature
    )
    np.testing.assert_array_equal(saved, graph.finish(in_memory, end_token).numpy())
    for row, kept in zip(saved, prefix_length):  # the given tokens are kept
        np.testing.assert_array_equal(row[:kept], prefix[0, :kept])


def test_saved_model_temperature_scales_the_logits(exported):
    """First tokens drawn at temperature T follow softmax(logits / T), and not softmax(logits)."""
    generator, saved = exported["generator"], exported["saved"]
    num_samples = 20_000
    at_one = verify.first_token_probabilities(generator, 1.0)
    for temperature in (0.5, 2.0):
        expected = verify.first_token_probabilities(generator, temperature)
        bound = verify.first_token_bound(expected, num_samples)
        assert 0.5 * np.abs(expected - at_one).sum() > 2 * bound  # the test has power
        first = saved.signatures["sample"](
            num_samples=tf.constant(num_samples), temperature=tf.constant(temperature), seed=tf.constant(9, tf.int64)
        )["ids"].numpy()[:, 0]
        assert verify.first_token_check(first, expected)[2], temperature
        assert not verify.first_token_check(first, at_one)[2], temperature


def test_saved_model_complete_draws_the_next_token_from_the_models_conditional(exported):
    """After a given first token, the SavedModel's next token follows
    softmax(logits / T) of the generator's second step, computed here from
    `Generator.step` (not by the sampler the signature runs)."""
    generator, saved = exported["generator"], exported["saved"]
    first = 4
    _, state = generator.step(tf.constant([generator.start_token]), generator.initial_state(1))
    logits, _ = generator.step(tf.constant([first]), state)

    def probabilities(temperature):
        return tf.nn.softmax(tf.cast(logits[0], tf.float64) / temperature).numpy()

    num_samples = 20_000
    for temperature in (0.5, 2.0):
        expected, at_one = probabilities(temperature), probabilities(1.0)
        assert 0.5 * np.abs(expected - at_one).sum() > 2 * verify.first_token_bound(expected, num_samples)
        second = saved.signatures["complete"](
            prefix=tf.fill([num_samples, 1], first),
            prefix_length=tf.ones([num_samples], tf.int32),
            temperature=tf.constant(temperature),
            seed=tf.constant(11, tf.int64),
        )["ids"].numpy()
        assert np.all(second[:, 0] == first)
        assert verify.first_token_check(second[:, 1], expected)[2], temperature
        assert not verify.first_token_check(second[:, 1], at_one)[2], temperature
