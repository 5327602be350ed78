"""Fuzzing the edges a user controls: corpus files of random bytes and random
flag values must end in a one-line error (or a valid result), never in a
traceback. Hypothesis drives the in-process checks; a few seeded random
command lines go through `python main.py` to check the exit code and stderr."""

import contextlib
import dataclasses
import io
import json
import random
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_main import PARALLEL_PROCESSES, RUN_TIMEOUT_S, environment

from tfseqgan import config, text
from tfseqgan.cli import train as main
from tfseqgan.training import session

# Corpus bytes: pure noise, or lines of any text (some valid, some with control bytes, BOMs, bad UTF-8) joined.
line_bytes = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"\xef\xbb\xbf", b"\r", b"\xff\xfe", b"\xe6\x98", b"a b c", b" \t "]),
)
corpus_bytes = st.one_of(st.binary(max_size=400), st.lists(line_bytes, max_size=12).map(b"\n".join))
# Readable lines (any printable Unicode) most of the time, so that many draws make a corpus; noise otherwise.
readable_line = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=12).map(str.encode)
readable = st.lists(readable_line, min_size=2, max_size=10).map(b"\n".join)
corpus_file = st.one_of(readable, readable, readable, corpus_bytes)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def one_line(message):
    return message and "\n" not in message


@settings(max_examples=1000, deadline=None, database=None)
@given(data=corpus_bytes)
def test_read_lines_returns_text_or_one_line_error(scratch, data):
    path = scratch / "corpus.txt"
    path.write_bytes(data)
    try:
        lines = text.read_lines(str(path))
    except text.CorpusError as error:
        assert one_line(str(error)) and str(error).startswith(str(path)), str(error)
        event(f"error: {str(error)[len(str(path)) :].split('(')[0].strip(':0123456789 ')[:20]}")
        return
    event("text")
    assert lines and all(isinstance(line, str) and line == line.strip() and line for line in lines)


@settings(max_examples=60, deadline=None, database=None)
@given(
    train=corpus_file,
    test=corpus_file,
    tokenizer=st.sampled_from(["", "char", "word"]),
    overlong=st.sampled_from(text.OVERLONG_POLICIES),
)
def test_load_corpus_returns_a_corpus_or_one_line_error(scratch, train, test, tokenizer, overlong):
    (scratch / "train.txt").write_bytes(train)
    (scratch / "test.txt").write_bytes(test)
    text_config = config.TextConfig(
        dataset="text",
        train_file=str(scratch / "train.txt"),
        test_file=str(scratch / "test.txt"),
        tokenizer=tokenizer,
        overlong=overlong,
    )
    model = config.ModelConfig(sequence_length=6, window_sizes=(1, 2), num_filters=(2, 2))
    run = config.RunConfig(run_dir=str(scratch / "no_run"))
    try:
        corpus, model = session.load_corpus(text_config, model, config.TrainConfig(batch_size=2), run)
    except ValueError as error:  # CorpusError is one; main prints both as "error: ..."
        assert isinstance(error, text.CorpusError) and one_line(str(error)), repr(error)
        event("one-line error")
        return
    event("a corpus")
    assert model.vocabulary_size == len(corpus.vocabulary) and corpus.train_ids.shape[0] >= 2
    assert not (scratch / "no_run").exists()


# ------------------------------------------------------------------- flags
FLAG_NAMES = [name for _, names in main.SECTIONS for name in names]
# Argument strings as a shell could pass them (no NUL), numbers of every kind, and each flag's own values.
printable = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
numbers = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-inf", "inf", "1e400", "0x10", "1_000", " 3", "", "-0", "1,2", ",", "1,,2"]),
)


def value_for(name):
    flag = main.FLAGS[name]
    own = [str(flag.default)] + list(getattr(flag.parser, "enum_values", None) or [])
    return st.one_of(printable, numbers, st.sampled_from(own))


flag_arguments = st.lists(
    st.sampled_from(FLAG_NAMES).flatmap(lambda name: value_for(name).map(lambda value: f"--{name}={value}")),
    max_size=4,
)


@pytest.fixture
def unparsed_flags():
    main.FLAGS.unparse_flags()
    yield
    main.FLAGS.unparse_flags()


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arguments=flag_arguments)
def test_random_flag_values_give_configs_or_one_line_error(unparsed_flags, arguments):
    main.FLAGS.unparse_flags()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            main.parse_flags(["main.py", *arguments])
        except SystemExit as exit_:
            assert exit_.code == 2
            lines = stderr.getvalue().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), lines
            event("parse error")
            return
    try:
        configs = main.build_configs()
    except main.FlagError as error:
        assert one_line(str(error)) and "--" in str(error), str(error)
        event("FlagError")
        return
    event("configs")
    model, _, train, run, _ = configs
    assert dataclasses.is_dataclass(model) and train.batch_size >= 1 and isinstance(run.run_dir, str)
    for value in dataclasses.asdict(train).values():  # no NaN or Inf reaches the library
        assert not isinstance(value, float) or value == value and abs(value) != float("inf")


# ------------------------------------------------------------ through main.py
TF_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ )")


def cli_cases(folder):
    """Seeded random bad command lines: name -> (args, expected exit code)."""
    rng = random.Random(6)
    junk = "".join(rng.choice("xyz%$#@!é漢 -") for _ in range(8))
    (folder / "random.bin").write_bytes(bytes(rng.randrange(256) for _ in range(2000)))
    (folder / "good.txt").write_text("a b c\n" * 40, encoding="utf-8")
    int_flag = rng.choice([n for n in FLAG_NAMES if isinstance(main.FLAGS[n].default, int)])
    float_flag = rng.choice([n for n in FLAG_NAMES if isinstance(main.FLAGS[n].default, float)])
    enum_flag = rng.choice(["dataset", "tokenizer", "overlong"])
    return {
        "int_flag": ([f"--{int_flag}={junk}"], 2),
        "float_flag_nan": ([f"--{float_flag}=nan"], 2),
        "enum_flag": ([f"--{enum_flag}={junk}"], 2),
        "random_bytes_corpus": (
            ["--dataset=text", f"--train_file={folder / 'random.bin'}", f"--test_file={folder / 'good.txt'}"],
            1,
        ),
    }


def test_random_bad_command_lines_exit_with_one_error_line_and_no_traceback(tmp_path):
    cases = cli_cases(tmp_path)
    pending, running, results = list(cases.items()), {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL_PROCESSES:
            name, (args, _) = pending.pop(0)
            running[name] = subprocess.Popen(
                [sys.executable, "main.py", *args, f"--run_dir={tmp_path / 'runs' / name}"],
                cwd=REPO_ROOT,
                env=environment(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        name, process = next(iter(running.items()))
        try:
            results[name] = (*process.communicate(timeout=RUN_TIMEOUT_S), process.returncode)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        del running[name]
    for name, (_stdout, stderr, returncode) in results.items():
        assert returncode == cases[name][1], (name, stderr[-2000:])
        assert "Traceback" not in stderr
        messages = [line for line in stderr.splitlines() if line.strip() and not TF_LOG.match(line)]
        assert len(messages) == 1 and messages[0].startswith("error: "), (name, messages)
        assert not (tmp_path / "runs" / name).exists()


# ----------------------------------------------- export model folders (issue 24)
JSON_SCALARS = st.one_of(
    st.integers(0, 20),  # near the small model's sizes and ids: often valid
    st.integers(0, 20),
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([-1, 0, 1, 2, 15, 16, 17, 10**6, 10**6 + 1, 65_536, 65_537]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["vocab.txt", "../vocab.txt", "/etc/passwd", "..", ".", "a/b", "a\\b", "char", "sampler"]),
)
JSON_VALUES = st.one_of(
    JSON_SCALARS, st.lists(JSON_SCALARS, max_size=4), st.dictionaries(st.text(max_size=4), JSON_SCALARS)
)


@st.composite
def mutated_metadata(draw):
    """A valid sampler metadata with a few keys replaced, removed or added."""
    from export_runs import step_metadata

    info = step_metadata()
    ids = st.integers(0, info["vocabulary_size"] - 1)
    plausible = {  # values of the right type, mostly in range
        "vocabulary_size": st.integers(2, 40),
        "sequence_length": st.integers(1, 12),
        "hidden_dim": st.integers(1, 8),
        "start_token": ids,
        "end_token": st.one_of(st.none(), ids),
        "banned_tokens": st.lists(ids, max_size=4),
        "tokenizer": st.sampled_from(["char", "word", "ids"]),
        "role": st.sampled_from(["sampler", "scorer"]),
        "format": st.just(1),
    }
    for key in draw(st.lists(st.sampled_from(sorted(info)), max_size=3, unique=True)):
        action = draw(st.sampled_from(["plausible", "plausible", "any", "remove"]))
        if action == "remove":
            del info[key]
        elif action == "any" or key not in plausible:
            info[key] = draw(JSON_VALUES)
        else:
            info[key] = draw(plausible[key])
    if draw(st.booleans()) and draw(st.booleans()):
        info[draw(st.text(min_size=1, max_size=6))] = draw(JSON_SCALARS)
    return info


def plain_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@settings(max_examples=300, deadline=None, database=None)
@given(info=mutated_metadata())
def test_onnx_metadata_fits_the_schema_or_is_one_line_error(info):
    from tfseqgan.export import schema

    try:
        checked = schema.check_onnx_metadata(info, "sampler.onnx: metadata")
    except schema.SchemaError as error:
        assert one_line(str(error)) and str(error).startswith("sampler.onnx: metadata: "), str(error)
        event("refused")
        return
    event("accepted")
    vocabulary = checked["vocabulary_size"]
    assert plain_int(vocabulary) and 2 <= vocabulary <= 10**6
    assert all(plain_int(checked[key]) for key in ("sequence_length", "hidden_dim", "start_token", "format"))
    ids = [checked["start_token"], *checked["banned_tokens"]] + [checked["end_token"]] * (
        checked["end_token"] is not None
    )
    assert all(plain_int(i) and 0 <= i < vocabulary for i in ids)
    for key in ("vocabulary", "sampler", "scorer"):
        assert "/" not in checked[key] and "\\" not in checked[key] and checked[key] not in ("", ".", "..")


# What a metadata entry may name, and what may lie at that name in the model's folder.
SIDE_FILE_NAMES = st.one_of(
    st.sampled_from(["vocab.txt", "v", "../secret.txt", "/tmp/secret.txt", "sub/vocab.txt", "..", "", "."]),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=10),
)
SIDE_FILE_KINDS = st.sampled_from(
    ["vocabulary", "short vocabulary", "bytes", "link inside", "link to secret", "link to /dev/zero", "fifo", "folder"]
)


@settings(max_examples=40, deadline=None, database=None)
@given(name=SIDE_FILE_NAMES, kind=SIDE_FILE_KINDS, noise=st.binary(max_size=64))
def test_side_files_load_only_inside_the_folder_or_end_in_one_line(name, kind, noise):
    import os
    import shutil
    import tempfile

    from export_runs import POEM_TOKENS, model_folder, step_metadata

    from tfseqgan.export.onnx_sample import OnnxSampler, SamplerInputError

    root = tempfile.mkdtemp()
    try:
        secret = os.path.join(root, "secret.txt")
        with open(secret, "w", encoding="utf-8") as stream:
            # A valid vocabulary (distinct lines, one per id): a followed link would load it.
            stream.write("".join(f"top secret {index}\n" for index in range(len(POEM_TOKENS))))
        folder = os.path.join(root, "model")
        model = model_folder(folder, step_metadata(vocabulary=name))
        target = os.path.join(folder, name) if name and "\x00" not in name else None
        placed = False
        if target and os.path.basename(target) == name and name not in (".", "..", "sampler.onnx", "vocab.txt"):
            placed = True
            if kind == "vocabulary":
                shutil.copy(os.path.join(folder, "vocab.txt"), target)
            elif kind == "short vocabulary":
                with open(target, "w", encoding="utf-8") as stream:
                    stream.write("\n".join(POEM_TOKENS[:-1]))
            elif kind == "bytes":
                with open(target, "wb") as stream:
                    stream.write(noise)
            elif kind == "link inside":
                os.symlink("vocab.txt", target)
            elif kind == "link to secret":
                os.symlink(secret, target)
            elif kind == "link to /dev/zero":
                os.symlink("/dev/zero", target)
            elif kind == "fifo":
                os.mkfifo(target)
            else:
                os.mkdir(target)
        try:
            loaded = OnnxSampler(model)
        except SamplerInputError as error:
            assert one_line(str(error)) and "top secret" not in str(error), str(error)
            event("one-line error")
            return
        event("loaded")
        assert loaded.tokens == POEM_TOKENS  # only ever the vocabulary inside the folder
        assert name == "vocab.txt" or (placed and kind in ("vocabulary", "link inside"))
    finally:
        shutil.rmtree(root)


def sizes_of(metadata):
    """The graph and vocabulary sizes a metadata text asks for, where they are plausible integers
    (so that size mutations reach the API); None to keep the poem model's."""
    try:
        info = json.loads(metadata)
    except ValueError:
        return None, None
    if not isinstance(info, dict):
        return None, None
    vocabulary, hidden = info.get("vocabulary_size"), info.get("hidden_dim")
    vocabulary = vocabulary if plain_int(vocabulary) and 2 <= vocabulary <= 5000 else None
    hidden = hidden if plain_int(hidden) and 1 <= hidden <= 64 else None
    return vocabulary, hidden


def exercise(model):
    """Every API call of an accepted model: each returns or ends in one SamplerInputError line."""
    from tfseqgan.export.onnx_sample import SamplerInputError

    first = model.tokens[-1]
    calls = {
        "sample": lambda: model.sample(2, seed=1),
        "complete": lambda: model.complete([[model.start_token]], [1], seed=1),
        "greedy": lambda: model.greedy([[model.start_token], [model.start_token]], [0, 1]),
        "acrostic": lambda: model.acrostic([first * 4, first * 4]),
        "decode": lambda: model.decode([[0, model.vocabulary_size - 1]]),
    }
    for name, call in calls.items():
        try:
            result = call()
        except SamplerInputError as error:
            assert one_line(str(error)), str(error)
            event(f"{name}: one-line error")
            continue
        event(f"{name}: ok")
        if name != "decode":
            assert result["ids"].shape == (2 if name != "complete" else 1, model.sequence_length)
            ids = result["ids"]
            assert ((ids >= 0) & (ids < model.vocabulary_size)).all()


@settings(max_examples=60, deadline=None, database=None)
@given(
    metadata=st.sampled_from(
        ["near-valid"] * 4 + ["text", "any JSON"]
    ).flatmap(  # mostly near-valid: these reach the API
        lambda kind: {
            "near-valid": mutated_metadata().map(json.dumps),
            "text": st.text(max_size=40),
            "any JSON": JSON_VALUES.map(json.dumps),
        }[kind]
    )
)
def test_any_metadata_text_loads_or_ends_in_one_line(metadata):
    import shutil
    import tempfile

    from export_runs import POEM_TOKENS, model_folder

    from tfseqgan.export.onnx_sample import OnnxSampler, SamplerInputError

    vocabulary, hidden = sizes_of(metadata)
    tokens = POEM_TOKENS
    if vocabulary is not None and vocabulary != len(POEM_TOKENS):  # single characters, so acrostics can run
        tokens = (POEM_TOKENS + [chr(0x4E00 + index) for index in range(vocabulary)])[:vocabulary]
    root = tempfile.mkdtemp()
    try:
        model = model_folder(
            f"{root}/model",
            metadata,
            emitted=min(4, len(tokens) - 1),
            tokens=tokens,
            hidden_dim=hidden,
            vocabulary_size=len(tokens),
        )
        try:
            loaded = OnnxSampler(model)
        except SamplerInputError as error:
            assert one_line(str(error)), str(error)
            event("one-line error")
            return
        event("loaded")
        exercise(loaded)
    finally:
        shutil.rmtree(root)


@st.composite
def mutated_model_description(draw):
    """A valid model.json with a few generator or top-level values replaced (sizes up to far past the caps)."""
    description = {
        "format": 1,
        "generator": {
            "vocabulary_size": 16,
            "sequence_length": 8,
            "embedding_dim": 4,
            "hidden_dim": 8,
            "start_token": 1,
            "init_stddev": 1.0,
            "seed": 0,
            "banned_tokens": [0, 1],
        },
        "tokenizer": "char",
        "end_token": 2,
        "dataset": "poems",
    }
    sizes = st.one_of(st.integers(-2, 40), st.integers(1, 10**7), JSON_SCALARS)
    for key in draw(st.lists(st.sampled_from(sorted(description["generator"])), max_size=3, unique=True)):
        description["generator"][key] = draw(sizes if key.endswith(("size", "dim", "length")) else JSON_VALUES)
    if draw(st.booleans()):
        description[draw(st.sampled_from(["end_token", "tokenizer", "format", "dataset"]))] = draw(JSON_SCALARS)
    return description


@settings(max_examples=300, deadline=None, database=None)
@given(description=mutated_model_description())
def test_model_json_fits_the_schema_or_is_one_line_error(description):
    from tfseqgan.export import schema
    from tfseqgan.export.limits import MAX_PARAMETERS

    try:
        checked = schema.check_model_description(description, "RUN/model.json")
    except schema.SchemaError as error:
        assert one_line(str(error)) and str(error).startswith("RUN/model.json: "), str(error)
        event("refused")
        return
    event("accepted")
    config = checked["generator"]
    vocabulary = config["vocabulary_size"]
    sizes = (vocabulary, config["embedding_dim"], config["hidden_dim"])
    assert all(plain_int(size) and size >= 1 for size in sizes) and plain_int(config["sequence_length"])
    assert schema.parameter_count(*sizes) <= MAX_PARAMETERS  # checked before Keras allocates anything
    ids = [config["start_token"], *config.get("banned_tokens", [])]
    ids += [checked["end_token"]] if checked["end_token"] is not None else []
    assert all(plain_int(i) and 0 <= i < vocabulary for i in ids)
