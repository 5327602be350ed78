"""The export: SavedModel and ONNX artifacts of tiny runs, their round trip
against the in-memory generator, their checks of bad input, the manifest and
atomic replacement."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from export_runs import POEM_CHARACTERS, POEM_LENGTH, POEM_TOKENS, make_run

from tfseqgan import sampler, text
from tfseqgan.export import acrostic, onnx_sample, pipeline, saved_model, verify
from tfseqgan.export.limits import MAX_SAMPLES
from tfseqgan.export.onnx_sample import OnnxSampler, SamplerInputError
from tfseqgan.export.restore import ExportError, load_run
from tfseqgan.export.saved_model import SamplerModule


@pytest.fixture(scope="module")
def poem_export(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("poem") / "run"
    generator = make_run(run_dir, "poem")
    manifest = pipeline.export_run(str(run_dir))
    export_dir = run_dir / "export"
    return {
        "run_dir": run_dir,
        "export_dir": export_dir,
        "generator": generator,
        "manifest": manifest,
        "saved": tf.saved_model.load(str(export_dir / "saved_model")),
        "onnx": OnnxSampler(str(export_dir / "onnx" / "sampler.onnx")),
    }


@pytest.fixture(scope="module")
def ids_export(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ids") / "run"
    generator = make_run(run_dir, "ids")
    out_dir = tmp_path_factory.mktemp("out") / "exported"
    manifest = pipeline.export_run(str(run_dir), str(out_dir))
    return {
        "run_dir": run_dir,
        "export_dir": out_dir,
        "generator": generator,
        "manifest": manifest,
        "saved": tf.saved_model.load(str(out_dir / "saved_model")),
        "onnx": OnnxSampler(str(out_dir / "onnx" / "sampler.onnx")),
    }


def call(saved, signature, **inputs):
    return {key: value.numpy() for key, value in saved.signatures[signature](**inputs).items()}


def sample_inputs(num_samples, temperature=1.0, seed=0):
    return {
        "num_samples": tf.constant(num_samples, tf.int32),
        "temperature": tf.constant(temperature, tf.float32),
        "seed": tf.constant(seed, tf.int64),
    }


# ------------------------------------------------------------ manifest
@pytest.mark.parametrize("which", ["poem_export", "ids_export"])
def test_manifest_lists_every_file_with_its_sha256(which, request):
    export = request.getfixturevalue(which)
    export_dir = export["export_dir"]
    manifest = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
    on_disk = {
        os.path.relpath(os.path.join(root, name), export_dir).replace(os.sep, "/")
        for root, _, names in os.walk(export_dir)
        for name in names
    } - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for relative, entry in manifest["files"].items():
        data = (export_dir / relative).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, relative
    for required in ("saved_model/saved_model.pb", "onnx/sampler.onnx", "onnx/scorer.onnx", "onnx/vocab.txt"):
        assert required in manifest["files"]
    generator = export["generator"]
    assert manifest["model"]["vocabulary_size"] == generator.vocabulary_size
    assert manifest["model"]["sequence_length"] == generator.sequence_length
    assert manifest["model"]["parameters"] == sum(int(np.prod(w.shape)) for w in generator.weights)
    assert manifest["onnx"]["opset"] >= 17
    assert manifest["versions"]["tensorflow"] == tf.__version__
    assert manifest["versions"]["onnxruntime"] and manifest["versions"]["tf2onnx"]
    assert manifest["run"]["run_dir"] == str(export["run_dir"])
    assert manifest["run"]["checkpoint"].startswith("checkpoints/ckpt-")
    assert manifest["run"]["counters"] == {"mle_epoch": 3}
    assert manifest["sizes"]["onnx_sampler_bytes"] == manifest["files"]["onnx/sampler.onnx"]["bytes"]
    figures = manifest["verification"]
    assert max(figures["score_max_abs_diff"].values()) <= 1e-4
    assert figures["greedy_equal"] and figures["seed_repeats"]
    assert figures["first_token"]["total_variation"] <= figures["first_token"]["bound"]
    assert ("acrostic_heads" in figures) == (which == "poem_export")


def test_the_signatures_of_each_kind_of_run(poem_export, ids_export):
    expected = {"serving_default", "sample", "complete", "greedy", "score"}
    assert set(poem_export["saved"].signatures) == expected | {"acrostic"}
    assert set(ids_export["saved"].signatures) == expected
    assert poem_export["onnx"].has_acrostic and not ids_export["onnx"].has_acrostic


# ----------------------------------------------------------- round trip
@pytest.mark.parametrize("which", ["poem_export", "ids_export"])
def test_score_matches_the_generator_on_both_sides(which, request):
    export = request.getfixturevalue(which)
    generator, end = export["generator"], export["onnx"].end_token
    ids = sampler.sample_free(generator, 40, tf.constant([4, 2], tf.int64))
    if end is not None:
        ids = text.pad_after_end(ids, end)
    reference = generator.token_log_probs(ids).numpy()
    if end is not None:
        reference = np.where(text.valid_mask(ids, end).numpy() > 0, reference, 0.0)
    saved = call(export["saved"], "score", ids=ids)
    onnx = export["onnx"].score(ids.numpy())
    for side in (saved, onnx):
        assert np.abs(side["log_probs"] - reference).max() <= 1e-4
        np.testing.assert_allclose(side["total"], reference.sum(axis=1), atol=1e-4)
        lengths = np.full(40, generator.sequence_length) if end is None else text.valid_mask(ids, end).numpy().sum(1)
        np.testing.assert_array_equal(side["lengths"], lengths)
    if end is not None:
        assert np.any(saved["lengths"] < generator.sequence_length)  # some rows ended early: the mask is exercised


@pytest.mark.parametrize("which", ["poem_export", "ids_export"])
def test_greedy_ids_are_identical_in_all_three(which, request):
    export = request.getfixturevalue(which)
    generator, model = export["generator"], export["onnx"]
    length = generator.sequence_length
    rng = np.random.default_rng(5)
    allowed = np.setdiff1d(np.arange(generator.vocabulary_size), generator.banned_tokens)
    prefix = rng.choice(allowed, [12, length]).astype(np.int32)
    prefix_length = (np.arange(12) % (length + 1)).astype(np.int32)
    expected = sampler.complete_prefixes(generator, prefix, prefix_length, [0, 0], greedy=True)
    if model.end_token is not None:
        expected = text.pad_after_end(expected, model.end_token)
    expected = expected.numpy()
    assert len({tuple(row) for row in expected}) > 6  # not a degenerate model
    saved = call(export["saved"], "greedy", prefix=tf.constant(prefix), prefix_length=tf.constant(prefix_length))
    np.testing.assert_array_equal(saved["ids"], expected)
    np.testing.assert_array_equal(model.greedy(prefix, prefix_length)["ids"], expected)
    # A prefix narrower than the sequence length is padded by the signature.
    narrow = call(export["saved"], "greedy", prefix=tf.constant(prefix[:3, :2]), prefix_length=tf.constant([0, 1, 2]))
    np.testing.assert_array_equal(narrow["ids"], expected[:3])


def test_seeded_sampling_repeats_and_the_seed_matters(poem_export):
    saved, model = poem_export["saved"], poem_export["onnx"]
    first = call(saved, "sample", **sample_inputs(50, seed=11))
    np.testing.assert_array_equal(first["ids"], call(saved, "sample", **sample_inputs(50, seed=11))["ids"])
    assert not np.array_equal(first["ids"], call(saved, "sample", **sample_inputs(50, seed=12))["ids"])
    np.testing.assert_array_equal(model.sample(50, 1.0, 11)["ids"], model.sample(50, 1.0, 11)["ids"])
    assert not np.array_equal(model.sample(50, 1.0, 11)["ids"], model.sample(50, 1.0, 12)["ids"])
    # serving_default is the sample signature.
    np.testing.assert_array_equal(call(saved, "serving_default", **sample_inputs(50, seed=11))["ids"], first["ids"])


def test_onnx_draws_do_not_depend_on_threads_or_chunking(poem_export):
    path = str(poem_export["export_dir"] / "onnx" / "sampler.onnx")
    reference = OnnxSampler(path, chunk_size=256, threads=1).sample(300, 1.0, 5)["ids"]
    for chunk_size, threads in [(7, 2), (64, 3), (1000, 2)]:
        model = OnnxSampler(path, chunk_size=chunk_size, threads=threads)
        np.testing.assert_array_equal(model.sample(300, 1.0, 5)["ids"], reference)
    # A row's draws are its own: the first 40 rows of a larger batch are a batch of 40.
    np.testing.assert_array_equal(OnnxSampler(path, threads=2).sample(40, 1.0, 5)["ids"], reference[:40])


def test_batch_is_dynamic(poem_export):
    saved, model = poem_export["saved"], poem_export["onnx"]
    for rows in (1, 3, 1100):  # 1100: more than one sampler chunk on both sides
        assert call(saved, "sample", **sample_inputs(rows))["ids"].shape == (rows, POEM_LENGTH)
        assert model.sample(rows)["ids"].shape == (rows, POEM_LENGTH)
    complete = call(
        saved,
        "complete",
        prefix=tf.constant([[4, 5, 6]] * 5, tf.int32),
        prefix_length=tf.constant([3, 2, 1, 0, 3]),
        temperature=tf.constant(1.0),
        seed=tf.constant(0, tf.int64),
    )
    assert complete["ids"].shape == (5, POEM_LENGTH)
    np.testing.assert_array_equal(complete["ids"][0, :3], [4, 5, 6])
    np.testing.assert_array_equal(complete["ids"][1, :2], [4, 5])


def test_text_outputs_agree_with_the_vocabulary_and_stop_at_the_end_token(poem_export):
    saved, model = poem_export["saved"], poem_export["onnx"]
    result = call(saved, "sample", **sample_inputs(300, seed=3))
    ids, lengths = result["ids"], result["lengths"]
    vocabulary = text.Vocabulary(POEM_TOKENS)
    expected = [text.join_tokens(vocabulary.decode(row), "char") for row in ids]
    assert [t.decode("utf-8") for t in result["text"]] == expected
    assert model.decode(ids) == expected
    ended = lengths < POEM_LENGTH
    assert ended.any() and (~ended).any()
    for row, length in zip(ids, lengths):
        if length < POEM_LENGTH:
            assert row[length - 1] == text.END_ID and np.all(row[length:] == text.PAD_ID)
        assert not np.any(row[: length - 1] == text.END_ID)
    assert not np.any(np.isin(ids[ids != text.PAD_ID], [text.START_ID]))  # <s> is never generated


def test_ids_runs_decode_to_space_separated_ids(ids_export):
    result = call(ids_export["saved"], "sample", **sample_inputs(4))
    expected = [" ".join(str(i) for i in row) for row in result["ids"]]
    assert [t.decode() for t in result["text"]] == expected == ids_export["onnx"].decode(result["ids"])
    np.testing.assert_array_equal(result["lengths"], [6] * 4)


@pytest.mark.parametrize("side", ["saved_model", "onnx"])
def test_acrostic_starts_every_line_with_its_head(poem_export, side):
    heads = ["春夏秋冬", "风花雪月", "山水山水"]
    if side == "saved_model":
        result = call(
            poem_export["saved"],
            "acrostic",
            heads=tf.constant(heads),
            temperature=tf.constant(1.0),
            seed=tf.constant(1, tf.int64),
        )
        texts = [t.decode("utf-8") for t in result["text"]]
    else:
        result = poem_export["onnx"].acrostic(heads, 1.0, 1)
        texts = result["text"]
    ids = result["ids"]
    for row, head, poem in zip(ids, heads, texts):
        assert [POEM_TOKENS[i] for i in row[::2]] == list(head)
        assert text.END_ID not in row and text.UNKNOWN_ID not in row and len(poem) == POEM_LENGTH
        assert poem[::2] == head
        assert all(character in "，。" for character in poem[1::2])  # every line ends in punctuation


def test_acrostic_bias_keeps_the_form_of_a_quatrain():
    bias = acrostic.acrostic_bias(POEM_TOKENS, POEM_LENGTH, text.END_ID)
    allowed = [{POEM_TOKENS[i] for i in np.flatnonzero(row == 0)} for row in bias]
    letters = set(POEM_CHARACTERS) - set("，。") | {text.PAD, text.START}  # the generator bans these two itself
    assert allowed == [letters, {"，", "。"}] * 4
    np.testing.assert_array_equal(acrostic.line_starts(24), [0, 6, 12, 18])
    no_punctuation = acrostic.acrostic_bias(POEM_TOKENS[:4] + list("春夏秋冬"), 8, text.END_ID)
    assert np.all(no_punctuation[:, 4:] == 0) and np.all(no_punctuation[:, [2, 3]] < 0)


def test_first_token_check_fails_for_a_wrong_temperature(poem_export):
    generator, model = poem_export["generator"], poem_export["onnx"]
    right = verify.first_token_probabilities(generator, 1.0)
    hotter = verify.first_token_probabilities(generator, 2.0)
    num_samples = 10000
    bound = verify.first_token_bound(right, num_samples)
    assert 0.5 * np.abs(right - hotter).sum() > 2 * bound  # the test has power
    at_one = model.sample(num_samples, 1.0, seed=21)["ids"][:, 0]
    at_two = model.sample(num_samples, 2.0, seed=21)["ids"][:, 0]
    assert verify.first_token_check(at_one, right)[2]
    assert verify.first_token_check(at_two, hotter)[2]
    assert not verify.first_token_check(at_two, right)[2]  # samples at the wrong temperature
    assert not verify.first_token_check(at_one, hotter)[2]


def test_first_tokens_are_the_first_position_of_the_sampling_loop(poem_export):
    model = poem_export["onnx"]
    np.testing.assert_array_equal(model.first_tokens(300, 0.7, seed=4), model.sample(300, 0.7, seed=4)["ids"][:, 0])


def test_verification_fails_against_another_generator(poem_export, tmp_path):
    other_run = tmp_path / "other"
    make_run(other_run, "poem", seed=9)
    with pytest.raises(ExportError, match="score differs"):
        verify.verify_export(load_run(str(other_run)), str(poem_export["export_dir"]))


# ------------------------------------------------------------ bad input
def prefix_inputs(rows, width=1, temperature=None):
    inputs = {"prefix": tf.fill([rows, width], 4), "prefix_length": tf.ones([rows], tf.int32)}
    if temperature is not None:
        inputs.update(temperature=tf.constant(temperature), seed=tf.constant(0, tf.int64))
    return inputs


def heads_inputs(rows):
    return {"heads": tf.fill([rows], "春夏秋冬"), "temperature": tf.constant(1.0), "seed": tf.constant(0, tf.int64)}


TOO_MANY = MAX_SAMPLES + 1
# The same row limit in every signature, 0 rows refused everywhere (issue 24).
ROW_LIMITS = {
    f"{signature} of {rows} rows": (signature, inputs, f"{name}: the number of rows must be in \\[1, {MAX_SAMPLES}\\]")
    for rows in (0, TOO_MANY)
    for signature, inputs, name in [
        ("complete", prefix_inputs(rows, temperature=1.0), "prefix"),
        ("greedy", prefix_inputs(rows), "prefix"),
        ("score", {"ids": tf.zeros([rows, POEM_LENGTH], tf.int32)}, "ids"),
        ("acrostic", heads_inputs(rows), "heads"),
    ]
}
SAVED_BAD_CALLS = {
    **ROW_LIMITS,
    "zero samples": ("sample", dict(sample_inputs(0)), r"num_samples: the number of rows must be in \[1, 1000000\]"),
    "negative samples": ("sample", dict(sample_inputs(-4)), "num_samples: the number of rows must be in"),
    "too many samples": ("sample", dict(sample_inputs(10**7)), "num_samples: the number of rows must be in"),
    "zero temperature": ("sample", dict(sample_inputs(2, temperature=0.0)), "temperature must be in"),
    "negative temperature": ("sample", dict(sample_inputs(2, temperature=-1.0)), "temperature must be in"),
    "NaN temperature": ("sample", dict(sample_inputs(2, temperature=float("nan"))), "temperature must be in"),
    "prefix too long": (
        "complete",
        dict(
            prefix=tf.zeros([2, POEM_LENGTH + 1], tf.int32) + 4,
            prefix_length=tf.constant([1, 1]),
            temperature=tf.constant(1.0),
            seed=tf.constant(0, tf.int64),
        ),
        "prefix: more tokens than the sequence length",
    ),
    "prefix length past the prefix": (
        "greedy",
        dict(prefix=tf.constant([[4, 5]]), prefix_length=tf.constant([3])),
        "prefix_length: longer than the prefix",
    ),
    "prefix id out of range": (
        "greedy",
        dict(prefix=tf.constant([[4, 99]]), prefix_length=tf.constant([2])),
        "prefix: ids must be <",
    ),
    "lengths do not match rows": (
        "greedy",
        dict(prefix=tf.constant([[4, 5]]), prefix_length=tf.constant([1, 1])),
        "one length per prefix row",
    ),
    "completion at zero temperature": (
        "complete",
        dict(
            prefix=tf.constant([[4]]),
            prefix_length=tf.constant([1]),
            temperature=tf.constant(0.0),
            seed=tf.constant(0, tf.int64),
        ),
        "temperature must be in",
    ),
    "score of a short sequence": ("score", dict(ids=tf.zeros([2, 3], tf.int32)), "must have 8 tokens"),
    "score of a negative id": ("score", dict(ids=-tf.ones([1, POEM_LENGTH], tf.int32)), "ids must be >= 0"),
    "acrostic unknown character": (
        "acrostic",
        dict(heads=tf.constant(["春夏秋X"]), temperature=tf.constant(1.0), seed=tf.constant(0, tf.int64)),
        "characters not in the vocabulary",
    ),
    "acrostic of three characters": (
        "acrostic",
        dict(heads=tf.constant(["春夏秋"]), temperature=tf.constant(1.0), seed=tf.constant(0, tf.int64)),
        "exactly 4 characters",
    ),
    "acrostic without heads": (
        "acrostic",
        dict(heads=tf.constant([], tf.string), temperature=tf.constant(1.0), seed=tf.constant(0, tf.int64)),
        "heads: the number of rows must be in",
    ),
    "acrostic at zero temperature": (
        "acrostic",
        dict(heads=tf.constant(["春夏秋冬"]), temperature=tf.constant(0.0), seed=tf.constant(0, tf.int64)),
        "temperature must be in",
    ),
}


@pytest.mark.parametrize("case", sorted(SAVED_BAD_CALLS))
def test_saved_model_signatures_refuse_bad_input_with_a_message(poem_export, case):
    signature, inputs, message = SAVED_BAD_CALLS[case]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        poem_export["saved"].signatures[signature](**inputs)
    # The model serves on after a refused call.
    assert call(poem_export["saved"], "sample", **sample_inputs(2))["ids"].shape == (2, POEM_LENGTH)


ONNX_BAD_CALLS = {
    "zero samples": (lambda m: m.sample(0), r"num_samples: 0 rows; the number of rows must be in \[1, 1000000\]"),
    "negative samples": (lambda m: m.sample(-1), "num_samples: -1 rows; the number of rows must be in"),
    "zero temperature": (lambda m: m.sample(2, 0.0), "temperature must be in"),
    "NaN temperature": (lambda m: m.sample(2, float("nan")), "temperature must be in"),
    "prefix too long": (lambda m: m.complete(np.full([1, 9], 4), [9]), "more than the sequence length 8"),
    "prefix length past the prefix": (lambda m: m.complete([[4, 5]], [3]), "prefix_length must be in"),
    "prefix id out of range": (lambda m: m.greedy([[4, 16]], [2]), "ids must be in"),
    "unknown prefix text": (lambda m: m.encode("春X"), "not in the vocabulary: X"),
    "acrostic unknown character": (lambda m: m.acrostic(["春夏秋X"]), "not in the vocabulary: X"),
    "acrostic of five characters": (lambda m: m.acrostic(["春夏秋冬风"]), "give 4"),
    "score of a short sequence": (lambda m: m.score(np.zeros([1, 3], np.int32)), r"must be \(rows, 8\)"),
}


@pytest.mark.parametrize("case", sorted(ONNX_BAD_CALLS))
def test_onnx_runner_refuses_bad_input_with_a_message(poem_export, case):
    function, message = ONNX_BAD_CALLS[case]
    with pytest.raises(SamplerInputError, match=message):
        function(poem_export["onnx"])


@pytest.fixture
def small_request_limit(poem_export, monkeypatch):
    """A SamplerModule of the poem run (T = 8) built with MAX_REQUEST_TOKENS = 100: 12 rows pass, 13 do not."""
    monkeypatch.setattr(saved_model, "MAX_REQUEST_TOKENS", 100)
    run_model = load_run(str(poem_export["run_dir"]), log=lambda line: None)
    return SamplerModule(run_model, str(poem_export["export_dir"] / "onnx" / "vocab.txt"))


def acrostic_inputs(heads):
    return dict(heads=tf.constant(heads), temperature=tf.constant(1.0), seed=tf.constant(0, tf.int64))


def test_every_signature_caps_rows_times_sequence_length(small_request_limit):
    module = small_request_limit
    assert module.sample(**sample_inputs(12))["ids"].shape == (12, POEM_LENGTH)
    prefix = dict(prefix=tf.fill([13, 1], 4), prefix_length=tf.ones([13], tf.int32))
    draws = dict(temperature=tf.constant(1.0), seed=tf.constant(0, tf.int64))
    calls = {
        "num_samples": lambda: module.sample(**sample_inputs(13)),
        "prefix": lambda: module.complete(**prefix, **draws),
        "prefix ": lambda: module.greedy(**prefix),
        "ids": lambda: module.score(ids=tf.fill([13, POEM_LENGTH], 4)),
        "heads": lambda: module.acrostic(**acrostic_inputs(["春夏秋冬"] * 13)),
    }
    for name, function in calls.items():
        expected = f"{name.strip()}: rows x {POEM_LENGTH} tokens must be at most 100 tokens per call"
        with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
            function()


def test_the_acrostic_checks_each_heads_length_before_splitting_it(small_request_limit):
    module = small_request_limit
    with pytest.raises(tf.errors.InvalidArgumentError, match="each head must be exactly 4 characters"):
        module.acrostic(**acrostic_inputs(["X" * 1_000_000]))  # X is not in the vocabulary either
    graph = module.acrostic.get_concrete_function(**acrostic_inputs(["春夏秋冬"])).graph
    (split,) = [op for op in graph.get_operations() if op.type.startswith("UnicodeDecode")]
    before, stack = set(), [split]
    while stack:
        op = stack.pop()
        for parent in [tensor.op for tensor in op.inputs] + list(op.control_inputs):
            if parent not in before:
                before.add(parent)
                stack.append(parent)
    assert any(op.type == "StringLength" for op in before)  # the split waits on the length check


def test_the_onnx_side_caps_rows_times_sequence_length(poem_export, monkeypatch, capsys):
    monkeypatch.setattr(onnx_sample, "MAX_REQUEST_TOKENS", 100)
    model = OnnxSampler(str(poem_export["export_dir"] / "onnx" / "sampler.onnx"))
    assert model.sample(12)["ids"].shape == (12, POEM_LENGTH)
    assert model.first_tokens(100).shape == (100,)  # one token a row
    calls = {
        "num_samples": lambda: model.sample(13),
        "prefix": lambda: model.complete(np.full([13, 1], 4), [1] * 13),
        "ids": lambda: model.score(np.full([13, POEM_LENGTH], 4)),
        "heads": lambda: model.acrostic(["春夏秋冬"] * 13),
    }
    model.session = model._scorer = None  # any decoding or scoring would fail on this, not with the message
    for name, function in calls.items():
        with pytest.raises(SamplerInputError, match=f"^{name}: 13 rows x 8 tokens = 104 tokens; at most 100 per call$"):
            function()
    status = onnx_sample.main(
        [str(poem_export["export_dir"] / "onnx" / "sampler.onnx"), "--num", "13", "--prefix", "春"]
    )
    assert status == 2
    assert capsys.readouterr().err == "error: --num: 13 rows x 8 tokens = 104 tokens; at most 100 per call\n"


def test_onnx_acrostic_needs_a_character_vocabulary(ids_export):
    with pytest.raises(SamplerInputError, match="acrostic needs a character vocabulary"):
        ids_export["onnx"].acrostic(["1234"])


# ------------------------------------------------------- restore, atomic
def test_a_run_without_model_json_is_rebuilt_from_flags_cfg(tmp_path):
    run_dir = tmp_path / "run"
    generator = make_run(run_dir, "poem")
    os.remove(run_dir / "model.json")
    (run_dir / "flags.cfg").write_text(
        "# Run\n--seed=0\n--noprogress\n# Text\n--dataset=poems\n--tokenizer=auto\n# Model\n"
        f"--sequence_length={POEM_LENGTH}\n--generator_embedding_dim=4\n--generator_hidden_dim=8\n"
        "--generator_init_stddev=1.0\n",
        encoding="utf-8",
    )
    restored = load_run(str(run_dir))
    assert restored.tokenizer == "char" and restored.end_token == text.END_ID
    assert restored.generator.banned_tokens == generator.banned_tokens
    for mine, theirs in zip(restored.generator.weights, generator.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no_files", "neither model.json nor flags.cfg"),
        ("no_checkpoint", "no checkpoint; train first"),
        ("bad_json", "model.json: not JSON"),
        ("wrong_size", "does not match this checkpoint"),
        ("short_vocabulary", "tokens, but the generator has"),
    ],
)
def test_unusable_runs_are_refused_in_one_line(tmp_path, damage, message):
    run_dir = tmp_path / "run"
    make_run(run_dir, "poem")
    if damage == "no_files":
        os.remove(run_dir / "model.json")
    elif damage == "no_checkpoint":
        for name in os.listdir(run_dir / "checkpoints"):
            os.remove(run_dir / "checkpoints" / name)
    elif damage == "bad_json":
        (run_dir / "model.json").write_text("{", encoding="utf-8")
    elif damage == "wrong_size":
        description = json.loads((run_dir / "model.json").read_text(encoding="utf-8"))
        description["generator"]["hidden_dim"] = 9
        (run_dir / "model.json").write_text(json.dumps(description), encoding="utf-8")
    else:
        (run_dir / "vocab.txt").write_text("\n".join(POEM_TOKENS[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ExportError, match=message) as error:
        pipeline.export_run(str(run_dir))
    assert "\n" not in str(error.value)
    assert not (run_dir / "export").exists()


def test_a_failed_export_leaves_the_previous_one_and_no_temporary_folder(poem_export, monkeypatch):
    export_dir = poem_export["export_dir"]
    before = (export_dir / "manifest.json").read_bytes()

    def failing(*args, **kwargs):
        raise ExportError("verification: simulated failure")

    monkeypatch.setattr(verify, "verify_export", failing)
    with pytest.raises(ExportError, match="simulated failure"):
        pipeline.export_run(str(poem_export["run_dir"]))
    assert (export_dir / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in export_dir.parent.iterdir() if p.name.startswith(".")) == []


def test_a_verified_export_replaces_the_previous_one(ids_export):
    export_dir = ids_export["export_dir"]
    before = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
    umask = os.umask(0o027)  # the export's folders and files follow the umask (they were always 0700 before)
    try:
        manifest = pipeline.export_run(str(ids_export["run_dir"]), str(export_dir))
    finally:
        os.umask(umask)
    modes = {
        os.path.relpath(os.path.join(root, name), export_dir): os.stat(os.path.join(root, name)).st_mode & 0o777
        for root, dirs, files in os.walk(export_dir)
        for name in dirs + files
    }
    assert os.stat(export_dir).st_mode & 0o777 == 0o750
    assert modes["onnx"] == modes["saved_model"] == 0o750 and modes["onnx/sampler.onnx"] == 0o640
    assert set(modes.values()) <= {0o750, 0o640}, modes
    after = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
    assert after["created"] >= before["created"] and manifest["files"] == after["files"]
    assert after["files"]["onnx/vocab.txt"] == before["files"]["onnx/vocab.txt"]
    assert sorted(p.name for p in export_dir.parent.iterdir()) == [export_dir.name]


def test_a_folder_that_is_not_an_export_is_never_replaced(ids_export, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ExportError, match="is not a tfseqgan export"):
        pipeline.export_run(str(ids_export["run_dir"]), str(precious))
    assert (precious / "notes.txt").read_text(encoding="utf-8") == "keep me"


# ------------------------------------------------- chunked scoring, manifest
def test_score_in_row_chunks_equals_score_in_one_go(poem_export):
    run_model = load_run(str(poem_export["run_dir"]))
    vocabulary = str(poem_export["export_dir"] / "onnx" / "vocab.txt")
    chunked = SamplerModule(run_model, vocabulary, score_budget_bytes=4 * POEM_LENGTH * len(POEM_TOKENS) * 3)
    assert chunked.score_chunk_rows == 3
    ids = sampler.sample_free(poem_export["generator"], 10, tf.constant([1, 2], tf.int64))  # 3 + 3 + 3 + 1 rows
    ids = text.pad_after_end(ids, text.END_ID)
    whole = call(poem_export["saved"], "score", ids=ids)
    parts = {key: value.numpy() for key, value in chunked.score(ids).items()}
    for key in whole:
        np.testing.assert_allclose(parts[key], whole[key], atol=1e-6)
    assert parts["log_probs"].shape == (10, POEM_LENGTH)


def test_onnx_score_in_row_chunks_equals_score_in_one_go(poem_export, monkeypatch):
    model = OnnxSampler(str(poem_export["export_dir"] / "onnx" / "sampler.onnx"))
    ids = model.sample(10, 1.0, 3)["ids"]
    whole = model.score(ids)
    monkeypatch.setattr(onnx_sample, "SCORE_BUDGET_BYTES", 4 * POEM_LENGTH * len(POEM_TOKENS) * 3)
    parts = model.score(ids)
    for key in whole:
        np.testing.assert_array_equal(parts[key], whole[key])


def test_a_copied_export_is_checked_against_its_manifest(poem_export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(poem_export["export_dir"], copy)
    sampler_path = str(copy / "onnx" / "sampler.onnx")
    assert OnnxSampler(sampler_path).tokens == POEM_TOKENS
    tokens = list(POEM_TOKENS)
    tokens[4], tokens[5] = tokens[5], tokens[4]  # same size, other ids
    (copy / "onnx" / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    with pytest.raises(SamplerInputError, match="vocab.txt: SHA-256 .* the folder was altered"):
        OnnxSampler(sampler_path)
    shutil.copy(poem_export["export_dir"] / "onnx" / "vocab.txt", copy / "onnx" / "vocab.txt")
    with open(copy / "onnx" / "scorer.onnx", "ab") as stream:
        stream.write(b"\0")
    model = OnnxSampler(sampler_path)  # the scorer is checked when it is first needed
    with pytest.raises(SamplerInputError, match="scorer.onnx: SHA-256"):
        model.score(np.full([1, POEM_LENGTH], 4))
