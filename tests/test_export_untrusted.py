"""The export side against untrusted input (issue 24), on small hand-made model
folders (a constant sampler step built with onnx.helper, export_runs.py) and
tiny runs: side files that lead out of the folder or are not regular files,
metadata outside the schema, graphs with another signature or that emit ids
outside the vocabulary, request limits, `--out` folders that are not exports,
leftover temporary folders, damaged checkpoints and model.json values out of
range. Every failure is one line, and nothing outside the folder is read."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from export_runs import POEM_TOKENS, make_run, model_folder, step_metadata

from tfseqgan import text
from tfseqgan.export import loader, onnx_sample, pipeline, schema
from tfseqgan.export.acrostic import acrostic_bias
from tfseqgan.export.limits import MAX_SAMPLES, MAX_THREADS, MAX_TIME_BY_VOCABULARY
from tfseqgan.export.onnx_sample import OnnxSampler, SamplerInputError
from tfseqgan.export.restore import ExportError, load_run

SECRET = "secret line outside the model folder"


@pytest.fixture
def folder(tmp_path):
    """A model folder (sampler.onnx emitting id 4, vocab.txt) and a secret file beside it."""
    # A valid vocabulary (distinct lines, one per id): a followed link would load it, so refusals are real.
    secret_tokens = [f"{SECRET} {index}" for index in range(len(POEM_TOKENS))]
    (tmp_path / "secret.txt").write_text("\n".join(secret_tokens) + "\n", encoding="utf-8")
    model_folder(tmp_path / "model")
    return tmp_path / "model"


def rewrite(folder, emitted=4, **metadata):
    return model_folder(folder, step_metadata(**metadata), emitted=emitted)


def one_line_error(function):
    """The message of the SamplerInputError that `function` raises; checks it is one line."""
    with pytest.raises(SamplerInputError) as error:
        function()
    message = str(error.value)
    assert message and "\n" not in message
    return message


def run_cli(capsys, *args):
    """python -m export.onnx_sample in-process: (exit status, stdout, stderr lines)."""
    status = onnx_sample.main([*map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err.splitlines()


# ------------------------------------------------------- the hand-made folder
def test_the_hand_made_folder_samples_its_constant_id(folder, capsys):
    model = OnnxSampler(str(folder / "sampler.onnx"))
    assert model.sample(3)["ids"].tolist() == [[4] * 8] * 3
    status, out, err = run_cli(capsys, folder / "sampler.onnx", "--num", "2")
    assert (status, out, err) == (0, "春春春春春春春春\n" * 2, [])


# ------------------------------------------------------------- side files
@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../secret.txt", "../../secret.txt", "sub/vocab.txt", "..", ".", "", "a\\b", "vocab\n.txt"],
)
def test_side_file_names_must_be_plain_names_in_the_folder(folder, name, capsys):
    rewrite(folder, vocabulary=name)
    message = one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx")))
    assert "vocabulary must be a plain file name" in message
    status, out, err = run_cli(capsys, folder / "sampler.onnx", "--num", "1")
    assert status == 2 and out == "" and len(err) == 1 and err[0].startswith("error: ")
    assert SECRET not in out + "".join(err)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("link out", "a link leading out of the model's folder"),
        ("link to /dev/zero", "a link leading out of the model's folder"),
        ("fifo", "a FIFO, not a regular file"),
        ("folder", "a folder, not a regular file"),
        ("missing", "no such file"),
        ("oversized", "more than the 64 bytes allowed"),
        ("not UTF-8", "the vocabulary is not UTF-8"),
        ("short", "15 tokens, but the model has 16 ids"),
        ("a token twice", "is listed twice"),
    ],
)
def test_side_files_must_be_small_regular_files_inside_the_folder(folder, kind, expected, monkeypatch):
    vocabulary = folder / "vocab.txt"
    vocabulary.unlink()
    if kind == "link out":
        vocabulary.symlink_to(folder.parent / "secret.txt")
    elif kind == "link to /dev/zero":
        vocabulary.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(vocabulary)  # opening it for reading would block without a writer
    elif kind == "folder":
        vocabulary.mkdir()
    elif kind == "oversized":
        monkeypatch.setattr(loader, "MAX_VOCABULARY_BYTES", 64)
        vocabulary.write_text("\n".join(POEM_TOKENS) + "\n", encoding="utf-8")
    elif kind == "not UTF-8":
        vocabulary.write_bytes(b"\xff\n" * len(POEM_TOKENS))
    elif kind == "short":
        vocabulary.write_text("\n".join(POEM_TOKENS[:-1]) + "\n", encoding="utf-8")
    elif kind == "a token twice":
        vocabulary.write_text("\n".join(POEM_TOKENS[:-1] + POEM_TOKENS[-2:-1]) + "\n", encoding="utf-8")
    message = one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx")))
    assert expected in message and str(vocabulary) in message
    assert SECRET not in message


def test_a_link_to_a_file_inside_the_folder_is_followed(folder):
    os.replace(folder / "vocab.txt", folder / "tokens.txt")
    (folder / "vocab.txt").symlink_to("tokens.txt")
    assert OnnxSampler(str(folder / "sampler.onnx")).tokens == POEM_TOKENS


def test_the_model_path_must_be_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "sampler.onnx")
    assert "a FIFO, not a regular file" in one_line_error(lambda: OnnxSampler(str(tmp_path / "sampler.onnx")))
    assert "a folder, not a regular file" in one_line_error(lambda: OnnxSampler(str(tmp_path)))


# --------------------------------------------------------------- metadata
@pytest.mark.parametrize(
    "metadata, expected",
    [
        ("not json", "metadata: not JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        pytest.param("[" * 100_000, "not JSON", id="nested-100000-deep"),
        (json.dumps({k: v for k, v in step_metadata().items() if k != "hidden_dim"}), "missing key(s) hidden_dim"),
        (json.dumps(step_metadata(extra=1)), 'unknown key(s) "extra"'),
        (json.dumps(step_metadata(format=2)), "format must be an integer in [1, 1]"),
        (json.dumps(step_metadata(vocabulary_size="16")), 'vocabulary_size must be an integer in [2, 1000000], got "1'),
        (json.dumps(step_metadata(vocabulary_size=True)), "vocabulary_size must be an integer"),
        (json.dumps(step_metadata(sequence_length=0)), "sequence_length must be an integer in [1, 10000], got 0"),
        (json.dumps(step_metadata(start_token=-1)), "start_token must be an integer in [0, 15], got -1"),
        (json.dumps(step_metadata(start_token=16)), "start_token must be an integer in [0, 15], got 16"),
        (json.dumps(step_metadata(end_token=99)), "end_token must be an integer in [0, 15], got 99"),
        (json.dumps(step_metadata(banned_tokens=[-1])), "banned_tokens must hold ids in [0, 15], got -1"),
        (json.dumps(step_metadata(banned_tokens=[0, 0])), "banned_tokens lists an id twice"),
        (json.dumps(step_metadata(banned_tokens=list(range(16)))), "banned_tokens leaves no id to draw"),
        (json.dumps(step_metadata(tokenizer="bytes")), "tokenizer must be one of char, word, ids"),
        (json.dumps(step_metadata(role="scorer")), "this is the scorer model; pass sampler.onnx"),
        (json.dumps(step_metadata(scorer="../scorer.onnx")), "scorer must be a plain file name"),
    ],
)
def test_metadata_outside_the_schema_is_refused_in_one_line(folder, metadata, expected, capsys):
    model_folder(folder, metadata)
    assert expected in one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx")))
    status, out, err = run_cli(capsys, folder / "sampler.onnx", "--num", "1")
    assert status == 2 and out == "" and len(err) == 1 and expected in err[0]


def test_oversized_metadata_is_refused_before_it_is_parsed(folder, monkeypatch):
    monkeypatch.setattr(loader, "MAX_DESCRIPTION_BYTES", 100)
    assert "metadata is longer than 100 bytes" in one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx")))


# ------------------------------------------------------------------ graph
@pytest.mark.parametrize("change, expected", [("drop greedy", "graph inputs are"), ("wide h", "graph input h is")])
def test_a_graph_with_another_signature_is_refused(folder, change, expected):
    model_folder(folder, signature_change=change)
    assert expected in one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx")))


@pytest.mark.parametrize("emitted", [-1, len(POEM_TOKENS), 2**31 - 1])
def test_every_emitted_id_is_checked(folder, emitted, capsys):
    rewrite(folder, emitted=emitted)
    model = OnnxSampler(str(folder / "sampler.onnx"))
    message = one_line_error(lambda: model.sample(2))
    assert f"emitted id {emitted}, outside the vocabulary [0, 16)" in message
    status, out, err = run_cli(capsys, folder / "sampler.onnx", "--num", "2")
    assert status == 2 and out == "" and len(err) == 1


def test_printed_tokens_escape_control_characters(folder, capsys):
    tokens = POEM_TOKENS[:4] + ["\x1b[2J\x07", "\u202e"] + POEM_TOKENS[6:]
    model_folder(folder, emitted=4, tokens=tokens)
    assert OnnxSampler(str(folder / "sampler.onnx")).sample(1)["text"] == ["\x1b[2J\x07" * 8]  # the API keeps them
    status, out, _ = run_cli(capsys, folder / "sampler.onnx", "--num", "1")
    assert status == 0 and out == "\\x1b[2J\\x07" * 8 + "\n"
    model_folder(folder, emitted=5, tokens=tokens)
    assert run_cli(capsys, folder / "sampler.onnx", "--num", "1")[1] == "\\u202e" * 8 + "\n"


# -------------------------------------------------------------- manifest
def write_manifest(folder, files):
    table = {
        f"model/{name}": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name in files
        for data in [(folder / name).read_bytes()]
    }
    (folder.parent / "manifest.json").write_text(json.dumps({"format": 1, "files": table}), encoding="utf-8")


def test_files_are_checked_against_the_manifest_beside_the_folder(folder):
    write_manifest(folder, ["sampler.onnx", "vocab.txt"])
    path = str(folder / "sampler.onnx")
    assert OnnxSampler(path).tokens == POEM_TOKENS
    swapped = POEM_TOKENS[:4] + [POEM_TOKENS[5], POEM_TOKENS[4]] + POEM_TOKENS[6:]  # same bytes, other order
    (folder / "vocab.txt").write_text("\n".join(swapped) + "\n", encoding="utf-8")
    message = one_line_error(lambda: OnnxSampler(path))
    assert "vocab.txt: SHA-256" in message and "the folder was altered" in message
    write_manifest(folder, ["sampler.onnx"])
    assert "vocab.txt: not listed in" in one_line_error(lambda: OnnxSampler(path))
    (folder.parent / "manifest.json").unlink()
    assert OnnxSampler(path).tokens == swapped  # no manifest: nothing to check against


@pytest.mark.parametrize(
    "stray",
    [
        '{"name": "web app", "start_url": "/"}',
        "{",
        json.dumps({"format": 1, "files": {"other/sampler.onnx": {"bytes": 1, "sha256": "0"}}}),
        "link",
        "fifo",
    ],
)
def test_a_manifest_beside_the_folder_that_does_not_list_the_model_is_ignored(folder, stray):
    manifest = folder.parent / "manifest.json"  # e.g. /tmp/manifest.json beside /tmp/model/sampler.onnx
    if stray == "link":
        write_manifest(folder, ["sampler.onnx"])  # would refuse the vocabulary (not listed) if it were followed
        os.replace(manifest, folder.parent / "listed.json")
        manifest.symlink_to("listed.json")
    elif stray == "fifo":
        os.mkfifo(manifest)
    else:
        manifest.write_text(stray, encoding="utf-8")
    assert OnnxSampler(str(folder / "sampler.onnx")).tokens == POEM_TOKENS


# --------------------------------------------------------------- requests
REQUESTS = {
    "zero samples": (lambda m: m.sample(0), "num_samples: 0 rows"),
    "too many samples": (lambda m: m.sample(MAX_SAMPLES + 1), f"num_samples: {MAX_SAMPLES + 1} rows"),
    "a bool count": (lambda m: m.sample(True), "must be an integer"),
    "zero prefix rows": (lambda m: m.complete(np.zeros([0, 2], np.int32), []), "prefix: 0 rows"),
    "too many prefix rows": (
        lambda m: m.greedy(np.zeros([MAX_SAMPLES + 1, 1], np.int32), np.zeros(MAX_SAMPLES + 1)),
        f"prefix: {MAX_SAMPLES + 1} rows",
    ),
    "ragged prefix": (lambda m: m.complete([[4, 5], [4]], [1, 1]), "prefix: not a rectangular array"),
    "float prefix": (lambda m: m.complete([[4.5]], [1]), "prefix must be 2-D integer ids"),
    "lengths for other rows": (lambda m: m.complete([[4]], [1, 1]), "2 lengths for 1 prefix rows"),
    "zero score rows": (lambda m: m.score(np.zeros([0, 8], np.int32)), "ids: 0 rows"),
    "too many score rows": (lambda m: m.score(np.zeros([MAX_SAMPLES + 1, 8], np.int32)), "ids: 1000001 rows"),
    "no heads": (lambda m: m.acrostic([]), "heads: 0 rows"),
    "an empty head": (lambda m: m.acrostic(""), "has 0 characters; give 4"),
    "a head that is not a string": (lambda m: m.acrostic([1234]), "give 4"),
    "a negative seed": (lambda m: m.sample(1, seed=-1), "seed must be an integer in [0, 9223372036854775807]"),
    "a huge seed": (lambda m: m.sample(1, seed=2**63), "seed must be an integer in"),
    "a string temperature": (lambda m: m.sample(1, temperature="hot"), "temperature must be in"),
    "decoding a negative id": (lambda m: m.decode([[4, -1]]), "ids: ids must be in [0, 16)"),
}


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_requests_outside_the_limits_are_refused_before_any_work(folder, case):
    function, expected = REQUESTS[case]
    model = OnnxSampler(str(folder / "sampler.onnx"))
    model.session = None  # any decoding or scoring would fail on this, not with the expected message
    model._scorer = None
    assert expected in one_line_error(lambda: function(model))


@pytest.mark.parametrize(
    "arguments, expected",
    [
        ({"threads": MAX_THREADS + 1}, f"threads must be an integer in [0, {MAX_THREADS}]"),
        ({"threads": -1}, "threads must be an integer in"),
        ({"chunk_size": 0}, "chunk_size must be an integer in [1, 65536]"),
    ],
)
def test_sampler_options_have_bounds(folder, arguments, expected):
    assert expected in one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx"), **arguments))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--threads", str(MAX_THREADS + 1)], f"--threads must be in [0, {MAX_THREADS}]"),
        (["--acrostic", ""], "--acrostic: '' has 0 characters; give 4"),
        (["--seed", str(2**63)], "--seed must be in [0, 9223372036854775807]"),
        (["--num", str(MAX_SAMPLES + 1)], f"--num must be in [1, {MAX_SAMPLES}]"),
    ],
)
def test_cli_limits_end_in_one_line(folder, args, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        onnx_sample.main([str(folder / "sampler.onnx"), *args])
    err = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0]


# ---------------------------------------------------------------- --out
def tree(directory):
    """{relative path: bytes or 'folder' or 'link -> target'} of everything under `directory`."""
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory)
            if os.path.islink(path):
                found[relative] = "link -> " + os.readlink(path)
            elif os.path.isdir(path):
                found[relative] = "folder"
            else:
                with open(path, "rb") as stream:
                    found[relative] = stream.read()
    return found


EXPORT_MANIFEST = json.dumps({"format": 1, "files": {"onnx/vocab.txt": {"bytes": 1, "sha256": "0"}}})


@pytest.mark.parametrize(
    "contents, expected",
    [
        ({"manifest.json": '{"name": "app"}', "index.html": "<p>", "sub/a.js": "x"}, 'has no "format": 1'),
        ({"manifest.json": "{", "index.html": "<p>"}, "its manifest.json is not JSON"),
        ({"manifest.json": EXPORT_MANIFEST, "onnx/vocab.txt": "0", "index.html": "<p>"}, "also holds index.html"),
        ({"manifest.json": EXPORT_MANIFEST, "onnx/vocab.txt": "0", "photos/": None}, "also holds photos/"),
        ({"manifest.json": EXPORT_MANIFEST, "onnx/vocab.txt": "0", "link": "->/etc"}, "links or special files: link"),
        ({"manifest.json": EXPORT_MANIFEST}, "files its manifest lists are missing: onnx/vocab.txt"),
        ({"notes.txt": "keep me"}, "no manifest.json; it holds notes.txt"),
        ({}, "an empty folder"),
    ],
)
def test_an_out_folder_that_is_not_an_export_survives_byte_for_byte(tmp_path, contents, expected):
    out = tmp_path / "out"
    out.mkdir()
    for name, content in contents.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_text(content, encoding="utf-8")
    before = tree(out)
    with pytest.raises(ExportError) as error:
        pipeline.export_run(str(tmp_path / "no_run"), str(out))  # refused before the run is even read
    assert expected in str(error.value) and "is not a tfseqgan export" in str(error.value)
    assert "\n" not in str(error.value)
    assert tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_real_export_is_recognised(tmp_path):
    out = tmp_path / "export"
    (out / "onnx").mkdir(parents=True)
    (out / "onnx" / "vocab.txt").write_text("0", encoding="utf-8")
    (out / "manifest.json").write_text(EXPORT_MANIFEST, encoding="utf-8")
    assert pipeline.export_folder_problem(str(out)) is None


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_exports_are_reaped_and_running_ones_kept(tmp_path):
    out = tmp_path / "export"
    dead, alive = dead_pid(), os.getpid()
    leftover = tmp_path / f".export.tmp-{dead}-0123abcd"
    running = tmp_path / f".export.tmp-{alive}-0123abcd"
    others = [tmp_path / ".export.tmp-notapid", tmp_path / f".other.tmp-{dead}-0123abcd"]
    for folder in [leftover, running, *others]:
        (folder / "onnx").mkdir(parents=True)
    # Killed between the two renames of a commit: the previous export waits in .old and goes back.
    previous = tmp_path / f".export.tmp-{dead}-4567cdef.old"
    (previous / "onnx").mkdir(parents=True)
    warnings = []
    pipeline.reap_leftovers(str(out), warnings.append)
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in [out, running, *others])
    assert (out / "onnx").is_dir()
    assert len(warnings) == 2 and any("put back" in w for w in warnings)


def test_out_where_no_folder_can_be_made_ends_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir, "ids")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    cases = {
        str(tmp_path / "file" / "below"): "is a file, not a folder",
        str(tmp_path / "file" / "deeper" / "below"): "is a file, not a folder",
        "/proc/tfseqgan_export": "cannot create a folder in /proc",
        "/sys/tfseqgan_export": "cannot create a folder in /sys",
    }
    for out, expected in cases.items():
        with pytest.raises(ExportError) as error:
            pipeline.export_run(str(run_dir), out)
        assert expected in str(error.value) and "\n" not in str(error.value), out


def test_a_read_only_file_system_ends_in_one_line(tmp_path):
    run_dir, mount_point = tmp_path / "run", tmp_path / "read_only"
    make_run(run_dir, "ids")
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(mount_point)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        with pytest.raises(ExportError, match=r"cannot create a folder in .*\(Read-only file system\)$"):
            pipeline.export_run(str(run_dir), str(mount_point / "export"))
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_read_only_file_system_ends_in_one_line_without_root(tmp_path, monkeypatch):
    import errno

    run_dir = tmp_path / "run"
    make_run(run_dir, "ids")
    out = tmp_path / "read_only" / "export"

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "mkdir", read_only)
    monkeypatch.setattr(os, "makedirs", read_only)
    with pytest.raises(ExportError) as error:
        pipeline.export_run(str(run_dir), str(out))
    assert str(error.value) == f"--out={out}: cannot create a folder in {out.parent} (Read-only file system)"
    assert sorted(os.listdir(tmp_path)) == ["run"]


# ------------------------------------------------------------ the run side
def second_checkpoint(run_dir, generator):
    """Saves ckpt-2 of the run with changed weights; returns them."""
    generator.output_layer.bias.assign(generator.output_layer.bias + 1.0)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(generator=generator), str(run_dir / "checkpoints"), max_to_keep=3
    )
    manager.save(checkpoint_number=2)
    return [w.numpy() for w in generator.weights]


def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
    run_dir = tmp_path / "run"
    generator = make_run(run_dir, "ids")
    first = [w.numpy() for w in generator.weights]
    second = second_checkpoint(run_dir, generator)
    assert load_run(str(run_dir), log=lambda line: None).checkpoint.endswith("ckpt-2")
    data = next((run_dir / "checkpoints").glob("ckpt-2.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # truncated
    warnings = []
    restored = load_run(str(run_dir), log=warnings.append)
    assert restored.checkpoint.endswith("ckpt-1") and restored.skipped_checkpoints[0].endswith("ckpt-2")
    assert any("ckpt-2 is damaged" in w for w in warnings) and any("exporting" in w for w in warnings)
    for mine, expected in zip(restored.generator.weights, first):
        np.testing.assert_array_equal(mine.numpy(), expected)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))
    assert pipeline._run_record(restored)["skipped_damaged_checkpoints"] == ["checkpoints/ckpt-2"]
    assert sorted(os.listdir(run_dir / "checkpoints")) == sorted(
        ["checkpoint", "ckpt-1.index", "ckpt-2.index", data.name, "ckpt-1.data-00000-of-00001"]
    )  # the export only reads the run: nothing set aside


@pytest.mark.parametrize("state", [b"\xff\xfe\x00garbage", b"model_checkpoint_path: 3", b""])
def test_a_damaged_checkpoint_state_file_is_worked_around(tmp_path, state):
    run_dir = tmp_path / "run"
    make_run(run_dir, "ids")
    (run_dir / "checkpoints" / "checkpoint").write_bytes(state)
    warnings = []
    assert load_run(str(run_dir), log=warnings.append).checkpoint.endswith("ckpt-1")
    assert any("missing or unreadable" in w for w in warnings)


def test_no_intact_checkpoint_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir, "ids")
    for data in (run_dir / "checkpoints").glob("ckpt-1.data-*"):
        data.write_bytes(b"")
    with pytest.raises(ExportError, match="no readable checkpoint in") as error:
        load_run(str(run_dir), log=lambda line: None)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"start_token": -1}, "generator: start_token must be an integer in [0, 15], got -1"),
        ({"banned_tokens": [-1]}, "banned_tokens must hold ids in [0, 15], got -1"),
        ({"banned_tokens": [16]}, "banned_tokens must hold ids in [0, 15], got 16"),
        ({"vocabulary_size": 10**9}, "vocabulary_size must be an integer in [2, 1000000]"),
        ({"vocabulary_size": 1_000_000, "hidden_dim": 65_536}, "weights, more than the 268435456 allowed"),
        ({"hidden_dim": 0}, "hidden_dim must be an integer in [1, 65536], got 0"),
        ({"sequence_length": 8.0}, "sequence_length must be an integer"),
        ({"init_stddev": "NaN"}, "init_stddev must be a number"),
        ({"init_stddev": float("nan")}, "init_stddev must be a number"),
        ({"seed": -5}, "seed must be an integer in [0, 2147483647]"),
        ({"layers": 3}, 'unknown key(s) "layers"'),
        ({"end_token": 99}, "end_token must be an integer in [0, 15], got 99"),
        ({"tokenizer": "bpe"}, "tokenizer must be one of char, word, ids"),
        ({"vocabulary_size": 4}, "vocabulary_size must be at least 5 with an end token"),
        ({"vocabulary_size": 1_000_000, "sequence_length": 100}, "sequence_length x vocabulary_size = 100,000,000"),
    ],
)
def test_model_json_out_of_range_is_refused_before_any_allocation(tmp_path, change, expected):
    run_dir = tmp_path / "run"
    make_run(run_dir, "poem")
    description = json.loads((run_dir / "model.json").read_text(encoding="utf-8"))
    for key, value in change.items():
        (description if key in ("end_token", "tokenizer") else description["generator"])[key] = value
    (run_dir / "model.json").write_text(json.dumps(description), encoding="utf-8")
    with pytest.raises(ExportError) as error:
        load_run(str(run_dir))
    assert expected in str(error.value) and "model.json" in str(error.value) and "\n" not in str(error.value)


def test_model_json_that_is_too_large_or_too_deep_is_refused(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    make_run(run_dir, "ids")
    (run_dir / "model.json").write_text("[" * 200_000, encoding="utf-8")
    with pytest.raises(ExportError, match="not JSON"):
        load_run(str(run_dir))
    monkeypatch.setattr("tfseqgan.export.restore.MAX_DESCRIPTION_BYTES", 1000)
    with pytest.raises(ExportError, match="200,000 bytes, more than the 1,000 bytes allowed"):
        load_run(str(run_dir))


def test_the_flags_cfg_route_is_validated_too(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir, "ids")
    os.remove(run_dir / "model.json")
    (run_dir / "flags.cfg").write_text(
        "--sequence_length=6\n--generator_embedding_dim=4\n--generator_hidden_dim=8\n--vocabulary_size=12\n"
        "--start_token=-1\n",
        encoding="utf-8",
    )
    with pytest.raises(ExportError, match=r"flags.cfg: generator: start_token must be an integer in \[0, 11\]"):
        load_run(str(run_dir))
    (run_dir / "flags.cfg").write_bytes(b"\xff\xfe--sequence_length=6\n")
    with pytest.raises(ExportError, match="flags.cfg: not readable as UTF-8 text"):
        load_run(str(run_dir))


def test_schema_accepts_what_the_exporter_writes():
    assert schema.check_onnx_metadata(step_metadata(), "m") == step_metadata()
    assert schema.check_onnx_metadata(step_metadata(end_token=None, tokenizer="ids", banned_tokens=[]), "m")
    description = {
        "format": 1,
        "generator": {"vocabulary_size": 12, "sequence_length": 6, "embedding_dim": 4, "hidden_dim": 8,
                      "start_token": 0, "banned_tokens": [], "name": "generator", "trainable": True,
                      "dtype": {"class_name": "DTypePolicy"}, "seed": None, "init_stddev": 1.0},
        "tokenizer": "ids",
        "end_token": None,
        "dataset": "synthetic",
    }  # fmt: skip
    assert schema.check_model_description(description, "model.json") is description
    assert text.START_ID == step_metadata()["start_token"]


def test_the_scorer_is_loaded_through_the_same_checks(folder):
    from export_runs import constant_step_model

    model = OnnxSampler(str(folder / "sampler.onnx"))
    ids = np.full([1, 8], 4)
    assert "scorer.onnx: no such file" in one_line_error(lambda: model.score(ids))
    (folder / "scorer.onnx").symlink_to(folder.parent / "secret.txt")
    assert "a link leading out of the model's folder" in one_line_error(lambda: model.score(ids))
    (folder / "scorer.onnx").unlink()
    constant_step_model(folder / "scorer.onnx", step_metadata(), 4)  # role "sampler"
    assert "its metadata differs from the sampler's (role)" in one_line_error(lambda: model.score(ids))
    constant_step_model(folder / "scorer.onnx", step_metadata(role="scorer"), 4)  # a step graph, not a scorer
    assert "graph inputs are bias, c, greedy, h, temperature, token, uniforms; expected ids" in one_line_error(
        lambda: model.score(ids)
    )


def test_a_model_json_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir, "ids")
    os.remove(run_dir / "model.json")
    os.mkfifo(run_dir / "model.json")  # opening it for reading would block without a writer
    with pytest.raises(ExportError, match=r"model.json: a FIFO, not a regular file$"):
        load_run(str(run_dir))


# ----------------------------------------------- metadata the code cannot take
@pytest.mark.parametrize("vocabulary_size", [2, 3, 4])
def test_a_text_vocabulary_without_room_for_its_reserved_ids_is_refused(folder, vocabulary_size, capsys):
    tokens = POEM_TOKENS[:vocabulary_size]
    info = step_metadata(vocabulary_size=vocabulary_size, start_token=1, end_token=1, banned_tokens=[0])
    model_folder(folder, info, emitted=1, tokens=tokens)
    message = one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx")))
    expected = "vocabulary_size must be at least 5 with an end token (the reserved ids 0-3 and a token)"
    assert f"{expected}, got {vocabulary_size}" in message
    status, out, err = run_cli(capsys, folder / "sampler.onnx", "--acrostic", "春夏秋冬")
    assert status == 2 and out == "" and len(err) == 1 and err[0].startswith("error: ")


def test_the_acrostic_bias_bans_only_ids_the_vocabulary_has():
    bias = acrostic_bias(["<pad>", "<s>", "</s>"], 4, 2)  # no <unk> (id 3) in this vocabulary
    assert bias.shape == (4, 3) and (bias[:, 2] < -1e8).all() and (bias[:, :2] == 0).all()


def test_time_by_vocabulary_is_capped_in_the_metadata(folder):
    info = step_metadata(vocabulary_size=1_000_000, sequence_length=100, hidden_dim=1)
    message = schema_error(lambda: schema.check_onnx_metadata(info, "m"))
    assert (
        message
        == f"m: sequence_length x vocabulary_size = 100,000,000, more than the {MAX_TIME_BY_VOCABULARY:,} allowed"
    )
    assert schema.check_onnx_metadata(step_metadata(vocabulary_size=2**16, sequence_length=2**10, hidden_dim=1), "m")


def schema_error(function):
    with pytest.raises(schema.SchemaError) as error:
        function()
    return str(error.value)


def test_an_unexpected_error_in_the_cli_is_one_line(folder, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise IndexError("index 3 is out of bounds for axis 1 with size 3\nsecond line")

    monkeypatch.setattr(onnx_sample, "OnnxSampler", broken)
    status, out, err = run_cli(capsys, folder / "sampler.onnx", "--num", "1")
    assert (status, out) == (2, "")
    assert err == [
        f"error: {folder / 'sampler.onnx'}: unexpected IndexError: index 3 is out of bounds for axis 1 with size 3"
    ]


# python -m export with export_run broken by a bug (not importable in-process: main.py defines the same flags).
BROKEN_EXPORT = """
import sys
from absl import app
from tfseqgan.export import pipeline

def broken(*args, **kwargs):
    raise KeyError("generator")

pipeline.export_run = broken
from tfseqgan.export import __main__ as export_main

app.run(export_main.main, argv=["export", "--run_dir=" + sys.argv[1]], flags_parser=export_main.parse_flags)
"""


def test_an_unexpected_error_in_python_m_export_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-c", BROKEN_EXPORT, str(tmp_path)], capture_output=True, timeout=300)
    assert result.returncode == 1 and result.stdout == b""
    lines = [line for line in result.stderr.decode().splitlines() if "oneDNN" not in line and "cuda" not in line]
    assert lines[-1] == f"error: unexpected KeyError while exporting {tmp_path}: 'generator'"
    assert "Traceback" not in result.stderr.decode()


def run_module(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, env=dict(os.environ, **(env or {})), timeout=120
    )


def test_python_m_export_flag_errors_are_one_line():
    result = run_module("export", "--run_dir=x", "--opset=3")
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode().splitlines() == ["error: flag --opset=3: 3 is not integer >= 17"]


def test_a_reader_that_closes_early_ends_the_cli_quietly(folder):
    command = f"{sys.executable} -m export.onnx_sample {folder / 'sampler.onnx'} --num 100000 | head -1"
    result = subprocess.run(command, shell=True, capture_output=True, timeout=120)
    assert result.stdout.decode("utf-8") == "春春春春春春春春\n" and result.stderr == b""


def test_tokens_the_terminal_cannot_encode_are_printed_escaped(folder):
    result = run_module(
        "tfseqgan.export.onnx_sample", str(folder / "sampler.onnx"), "--num", "1", env={"PYTHONIOENCODING": "latin-1"}
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"\\u6625" * 8 + b"\n", b"")


# ------------------------------------------------------------- the commit
def fake_export(folder, vocabulary):
    """A folder that export_folder_problem recognises as an export (manifest.json, onnx/vocab.txt)."""
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    (folder / "onnx" / "vocab.txt").write_text(vocabulary, encoding="utf-8")
    (folder / "manifest.json").write_text(EXPORT_MANIFEST, encoding="utf-8")
    return folder


class Exited(Exception):
    """os._exit in a test: the status it was called with."""


def test_sigterm_during_the_commit_is_acted_on_after_it(tmp_path, monkeypatch):
    import signal
    import threading

    out = fake_export(tmp_path / "export", "old")
    tmp_dir = fake_export(tmp_path / pipeline._make_temporary_folder(str(out)), "new")
    renames, handled, real_rename = [], [], os.rename

    def rename(source, destination):
        if not renames:  # the first rename of the commit: the old export is being set aside
            os.kill(os.getpid(), signal.SIGTERM)
        assert handled == []  # not between the two renames
        renames.append(destination)
        real_rename(source, destination)

    def interrupted(signum, frame):
        """As tfseqgan/export/__main__.py's handler: removes the temporary folders and ends the process."""
        handled.append(sorted(os.listdir(tmp_path)))
        pipeline.remove_temporary_folders()
        raise Exited(128 + signum)

    # A thread that does not block SIGTERM, as TensorFlow's: the kernel may hand it the signal.
    idle = threading.Event()
    worker = threading.Thread(target=idle.wait, daemon=True)
    worker.start()
    monkeypatch.setattr(os, "rename", rename)
    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        with pytest.raises(Exited) as exited:
            pipeline.commit(str(tmp_dir), str(out))
    finally:
        signal.signal(signal.SIGTERM, previous)
        idle.set()
    assert exited.value.args == (128 + signal.SIGTERM,)  # the process still ends as SIGTERM asked, after the commit
    assert handled == [["export"]]  # the handler ran once, with the new export in place and nothing else
    assert len(renames) == 2 and (out / "onnx" / "vocab.txt").read_text(encoding="utf-8") == "new"
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no temporary folder, no .old
    assert not pipeline._pending_signals and not pipeline._committing.is_set()


def test_a_file_added_to_out_during_the_export_is_not_deleted(tmp_path, monkeypatch):
    out = fake_export(tmp_path / "export", "old")
    tmp_dir = fake_export(tmp_path / pipeline._make_temporary_folder(str(out)), "new")
    real_rename = os.rename

    def rename(source, destination):
        if source == str(out) and not (out / "notes.txt").exists():
            (out / "notes.txt").write_text("written while the export ran", encoding="utf-8")
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(ExportError) as error:
        pipeline.commit(str(tmp_dir), str(out))
    message = str(error.value)
    assert message.startswith(f"--out={out}: changed during the export and is no longer a tfseqgan export (")
    assert "notes.txt" in message and "\n" not in message
    assert (out / "notes.txt").read_text(encoding="utf-8") == "written while the export ran"
    assert (out / "onnx" / "vocab.txt").read_text(encoding="utf-8") == "old"
    assert sorted(os.listdir(tmp_path)) == sorted(["export", tmp_dir.name])  # export_run's cleanup removes tmp


def test_a_temporary_folder_named_with_an_impossible_pid_is_left_alone(tmp_path):
    out = tmp_path / "export"
    odd = tmp_path / ".export.tmp-99999999999999999999-0123abcd"  # os.kill would raise OverflowError
    (odd / "onnx").mkdir(parents=True)
    warnings = []
    pipeline.reap_leftovers(str(out), warnings.append)
    assert sorted(os.listdir(tmp_path)) == [odd.name] and warnings == []


def test_the_reaper_goes_by_the_exports_lock_not_by_its_pid(tmp_path):
    import fcntl

    out = tmp_path / "export"
    # Our own PID (as after PID reuse, or from another PID namespace), but nobody holds the lock: left by a kill.
    reused = tmp_path / f".export.tmp-{os.getpid()}-0123abcd"
    reused.mkdir()
    (reused / pipeline.LOCK_FILE).write_bytes(b"")
    # A dead PID, but the lock is held: an export is running (in another PID namespace).
    running = tmp_path / f".export.tmp-{dead_pid()}-4567cdef"
    running.mkdir()
    descriptor = os.open(running / pipeline.LOCK_FILE, os.O_WRONLY | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    # A temporary folder of an export in progress in this process.
    mine = pipeline._make_temporary_folder(str(out))
    warnings = []
    try:
        pipeline.reap_leftovers(str(out), warnings.append)
        assert os.path.isdir(mine)
    finally:
        os.close(descriptor)
        pipeline._forget(mine, remove=True)
    assert warnings == [f"warning: removed {reused}, left by an export that was killed"]
    assert not reused.exists() and running.is_dir()


def test_a_fifo_named_manifest_json_in_out_is_refused_without_opening_it_to_wait(tmp_path, monkeypatch):
    import stat
    import threading

    out = tmp_path / "export"
    out.mkdir()
    os.mkfifo(out / "manifest.json")
    # As if a regular manifest.json had been swapped for the FIFO after a check by name.
    real_lstat = os.lstat
    monkeypatch.setattr(
        os,
        "lstat",
        lambda path, **kwargs: (
            os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, 10, 0, 0, 0))
            if str(path) == str(out / "manifest.json")
            else real_lstat(path, **kwargs)
        ),
    )
    # A writer that lets a blocking open for reading through (so a regression ends, with another message).
    writer = threading.Thread(target=lambda: os.close(os.open(out / "manifest.json", os.O_WRONLY)), daemon=True)
    writer.start()
    try:
        problem = pipeline.export_folder_problem(str(out))
    finally:
        while writer.is_alive():  # a reader's open releases the writer, once it is waiting in its own open
            os.close(os.open(out / "manifest.json", os.O_RDONLY | os.O_NONBLOCK))
            writer.join(0.01)
    assert problem == "its manifest.json is not a regular file of at most 16,777,216 bytes"


# ------------------------------------------- files swapped or linked in
def test_a_hard_linked_side_file_is_refused(folder):
    (folder / "vocab.txt").unlink()
    os.link(folder.parent / "secret.txt", folder / "vocab.txt")  # a valid vocabulary: it would load
    message = one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx")))
    assert message.startswith(f"{folder / 'vocab.txt'}: the vocabulary has 2 hard links;") and SECRET not in message


def test_a_link_swapped_in_after_the_check_is_not_followed(folder, monkeypatch):
    (folder / "vocab.txt").unlink()
    (folder / "vocab.txt").symlink_to(folder.parent / "secret.txt")
    real_realpath = os.path.realpath
    # The check sees a file of the folder (as before a swap); the open must still not follow the link.
    monkeypatch.setattr(
        os.path,
        "realpath",
        lambda path: str(folder / "vocab.txt") if "secret" in str(path) else real_realpath(path),
    )
    message = one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx")))
    assert message.startswith(f"{folder / 'vocab.txt'}: cannot open the vocabulary") and SECRET not in message


def test_the_graph_run_is_the_graph_checked_against_the_manifest(folder, monkeypatch):
    from export_runs import constant_step_model

    write_manifest(folder, ["sampler.onnx", "vocab.txt"])
    real_check = loader.check_listed

    def check_then_swap(manifest, path, digest, size):
        real_check(manifest, path, digest, size)
        if path.endswith("sampler.onnx"):  # swapped once it was hashed: onnxruntime must not read it again
            constant_step_model(folder / "sampler.onnx", step_metadata(), 5)

    monkeypatch.setattr(loader, "check_listed", check_then_swap)
    assert OnnxSampler(str(folder / "sampler.onnx")).sample(1)["ids"].tolist() == [[4] * 8]


def external_data_model(folder):
    """folder/sampler.onnx whose emitted id is an initializer kept in folder/weights.bin."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / "sampler.onnx"))
    model.graph.node.remove(next(node for node in model.graph.node if node.output[0] == "id"))
    model.graph.initializer.append(numpy_helper.from_array(np.array(4, np.int32), "id"))
    onnx.save(model, str(folder / "sampler.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)


def test_a_model_with_external_data_is_refused_in_one_line(folder, capfd, monkeypatch):
    external_data_model(folder)
    assert (folder / "weights.bin").is_file()
    monkeypatch.chdir(folder)  # where onnxruntime would look for the data of a model given as bytes
    message = one_line_error(lambda: OnnxSampler(str(folder / "sampler.onnx")))
    assert message == f"{folder / 'sampler.onnx'}: tensors with external data (id); a model must hold all its weights"
    capfd.readouterr()
    assert onnx_sample.main([str(folder / "sampler.onnx")]) == 2
    captured = capfd.readouterr()  # the file descriptors: onnxruntime's own log lines would show here
    assert captured.out == "" and captured.err == f"error: {message}\n"
