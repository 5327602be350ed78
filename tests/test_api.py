"""The Python API (tfseqgan/api.py, docs/api.md): the documented example runs,
options are the CLI's flags with the CLI's checks, a run trained from Python
equals the same run from `python main.py`, and text goes in and out."""

import json
import math
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from test_main import TINY_FLAGS, environment, numbers, run_main

import tfseqgan
from tfseqgan import api, options

# A small word corpus as people write it (capitals, punctuation): 12 sentences of up to 9 tokens.
SENTENCES = [
    "A man rides a horse on the beach.",
    "A cat sits on the mat.",
    "Two dogs run in the park.",
    "A woman holds an umbrella.",
    "A man rides a bike.",
    "The cat sleeps on a bed.",
    "A dog runs on the beach.",
    "Two men play in the park.",
    "A woman rides a horse.",
    "The dog sits on the bed.",
    "A cat runs in the grass.",
    "A man holds a dog.",
]
WORDS = set(" ".join(SENTENCES).lower().replace(".", " .").split())
POEM_LINES = ["春风吹绿江南岸", "明月照我还", "白日依山尽", "黄河入海流", "春眠不觉晓", "处处闻啼鸟"] * 6
# Tiny sizes for text runs: every phase, a step or two each.
TINY_TEXT = dict(
    sequence_length=10,
    window_sizes=[1, 2, 3],
    num_filters=[4, 4, 4],
    generator_embedding_dim=8,
    generator_hidden_dim=8,
    discriminator_embedding_dim=8,
    batch_size=16,
    mle_epochs=2,
    mle_eval_every=1,
    discriminator_pretrain_rounds=1,
    discriminator_negatives=64,
    adversarial_iterations=1,
    adversarial_discriminator_negatives=64,
    num_rollouts=2,
    num_discriminator_eval_samples=32,
    num_bleu_samples=20,
    reward_precision="float32",
    plot=False,
)


def tiny_text_arguments():
    return ", ".join(f"{name}={value!r}" for name, value in TINY_TEXT.items())


def api_example():
    """The python block of docs/api.md's example."""
    document = (REPO_ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    match = re.search(r"## Example[^\n]*\n+```python\n(.*?)```", document, re.S)
    assert match, "docs/api.md: the example's python block"
    return match.group(1)


@pytest.fixture(scope="module")
def example_output(tmp_path_factory):
    """docs/api.md's example, run as written in a fresh folder with a small corpus, tiny sizes
    added after the preset (keywords override it); (its stdout lines, the folder)."""
    folder = tmp_path_factory.mktemp("api_example")
    (folder / "my_sentences.txt").write_text("\n".join(SENTENCES * 8) + "\n", encoding="utf-8")
    code = api_example()
    assert code.count('preset="coco_quick",') == 1
    code = code.replace('preset="coco_quick",', 'preset="coco_quick", ' + tiny_text_arguments() + ",")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env=dict(environment(), PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines(), folder


def test_the_documented_example_trains_samples_exports_and_loads_back(example_output):
    lines, folder = example_output
    assert len(lines) == 5, lines
    figures = dict(re.findall(r"([A-Za-z-]+[0-9]?) (-?[0-9.]+|nan|inf)", lines[0]))
    assert set(figures) == {"NLL-test", "BLEU-2", "Self-BLEU-2"}, lines[0]
    assert all(math.isfinite(float(value)) for value in figures.values()), lines[0]
    samples = eval(lines[1])  # a printed list of strings
    assert len(samples) == 3 and all(isinstance(s, str) for s in samples)
    assert all(set(s.split()) <= WORDS | {"<unk>"} for s in samples), samples  # decoded words, not ids
    completed = eval(lines[2])
    assert len(completed) == 1 and completed[0].split()[0] == "a"  # the prefix "A", tokenized as in training
    scores = eval(lines[3])
    assert len(scores) == 2 and all(math.isfinite(s) and s < 0 for s in scores)
    # The SavedModel loaded back draws what the in-memory generator drew with the same seed.
    assert eval(lines[4]) == samples
    manifest = json.loads((folder / "runs" / "mine" / "export" / "manifest.json").read_text())
    assert "sample" in manifest["saved_model"]["signatures"]
    assert (folder / "runs" / "mine" / "data" / "train.txt").is_file()
    flags_cfg = (folder / "runs" / "mine" / "flags.cfg").read_text()
    assert "--dataset=text" in flags_cfg and "--tokenizer=word" in flags_cfg  # the data replaced the preset's coco
    # the preset (its policy-gradient rate), then the keywords (the length)
    assert "--policy_gradient_learning_rate=0.001" in flags_cfg and "--sequence_length=10" in flags_cfg


def test_the_example_uses_only_the_public_names():
    used = set(re.findall(r"tfseqgan\.([A-Za-z_]+)", api_example()))
    assert used and used <= set(tfseqgan.__all__), used - set(tfseqgan.__all__)


def test_a_run_from_python_equals_the_same_run_from_the_command_line(tmp_path):
    """No second code path: the API and main.py give the same numbers for the same flags."""
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    result = run_main(*TINY_FLAGS, f"--run_dir={cli_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    values = {}
    for flag in TINY_FLAGS:
        name, _, value = flag[2:].partition("=")
        if value:
            values[name] = value
        else:  # --noprogress, --noexport
            values[name[2:]] = False
    run = tfseqgan.train(run_dir=str(api_dir), **values)
    assert numbers(api_dir) == numbers(cli_dir)
    assert [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in run.history] == numbers(cli_dir)
    assert run.metrics["phase"] == "adversarial" and math.isfinite(run.metrics["nll_oracle"])
    assert (api_dir / "flags.cfg").read_text() == (cli_dir / "flags.cfg").read_text().replace(
        str(cli_dir), str(api_dir)
    )
    assert tfseqgan.Run.load(str(api_dir)).history == run.history
    # synthetic runs speak ids
    sampler = run.sampler()
    [row] = sampler.sample(1, seed=4)
    ids = [int(piece) for piece in row.split()]
    assert len(ids) == 6 and all(0 <= i < 20 for i in ids)
    assert sampler.score([row])[0] < 0
    with pytest.raises(ValueError, match="a synthetic run scores exactly 6"):
        sampler.score(["1 2 3"])


def test_a_character_run_prints_nothing_and_its_export_answers_as_the_run_does(tmp_path, capfd):
    """progress=False with export=True: nothing on stdout. The SavedModel loaded back gives what the
    in-memory generator gives: samples, completions, greedy decoding and scores (char tokens)."""
    data = tfseqgan.TextData.from_lines(POEM_LINES, test_fraction=0.2)
    # num_real_samples is a synthetic option: a text run ignores it (it was once checked as synthetic)
    run = tfseqgan.train(
        data,
        run_dir=str(tmp_path / "run"),
        tokenizer="char",
        num_real_samples=8,
        progress=False,
        export=True,
        **TINY_TEXT,
    )
    assert capfd.readouterr().out == ""
    assert (tmp_path / "run" / "export" / "manifest.json").is_file()
    loaded = tfseqgan.load_sampler(str(tmp_path / "run" / "export"))
    memory = run.sampler()
    prefixes = ["春 风", "明", ""]
    assert loaded.sample(4, 0.9, 7) == memory.sample(4, 0.9, 7)
    completed = memory.complete(prefixes, temperature=0.8, seed=3)
    assert completed == loaded.complete(prefixes, temperature=0.8, seed=3)
    assert completed[0].startswith("春风") and completed[1].startswith("明")
    assert memory.greedy(prefixes) == loaded.greedy(prefixes)
    scores = memory.score(POEM_LINES[:3])
    assert scores == pytest.approx(loaded.score(POEM_LINES[:3]), abs=1e-4)
    assert all(math.isfinite(s) and s < 0 for s in scores)
    assert memory.score(iter(POEM_LINES[:3])) == scores  # any iterable of texts
    assert memory.encode("春 风X") == [memory.tokens.index("春"), memory.tokens.index("风"), 3]  # X: <unk>
    with pytest.raises(ValueError, match="at most 9"):
        memory.score(["春风吹绿江南岸春风吹绿"])
    with pytest.raises(ValueError, match=r"^temperature must be in \[0.0001, 10000\]"):
        memory.sample(2, temperature=0.0)


def test_options_of_a_flagfile_do_not_move_the_run(tmp_path):
    """A flagfile's run_dir, progress and export (every flags.cfg has them) yield to train's own."""
    flagfile = tmp_path / "old.cfg"
    flagfile.write_text("--run_dir=elsewhere\n--progress\n--export\n--mle_epochs=7\n")
    fv = api.parse_options(flagfile=str(flagfile), mle_epochs=2, run_dir="mine", progress=False, export=False)
    assert (fv.run_dir, fv.progress, fv.export, fv.mle_epochs) == ("mine", False, False, 2)
    assert api.parse_options(flagfile=str(flagfile)).mle_epochs == 7


def test_a_corpus_that_fails_leaves_nothing_and_a_retry_works(tmp_path):
    run_dir = tmp_path / "run"
    too_long = tfseqgan.TextData.from_lines([" ".join(["word"] * 30)] * 20)  # longer than 10 tokens: all skipped
    with pytest.raises(ValueError, match="train.txt"):
        tfseqgan.train(too_long, run_dir=str(run_dir), progress=False, **TINY_TEXT)
    assert not run_dir.exists()
    run = tfseqgan.train(tfseqgan.TextData.from_lines(SENTENCES * 4), run_dir=str(run_dir), progress=False, **TINY_TEXT)
    assert run.metrics["phase"] == "adversarial"


def test_progress_lines_go_to_the_log_function(tmp_path):
    lines = []
    data = tfseqgan.TextData.from_lines(SENTENCES * 4)
    run = tfseqgan.train(data, run_dir=str(tmp_path / "run"), log=lines.append, **dict(TINY_TEXT, progress=False))
    assert lines == []  # progress=False wins over log
    run = tfseqgan.train(data, run_dir=str(tmp_path / "run"), log=lines.append, resume=True, **TINY_TEXT)
    assert any(str(line).startswith("resumed from") for line in lines), lines[:5]
    assert run.metrics["phase"] == "adversarial"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mle_epochs": -1}, "flag --mle_epochs=-1: -1 is not a non-negative integer"),
        ({"objective": "maligan"}, "--objective"),
        ({"mle_epocs": 3}, "mle_epocs: no such option"),
        ({"window_sizes": [1, 2], "num_filters": [4]}, "--window_sizes has 2 values but --num_filters has 1"),
        ({"dataset": "poems"}, "data= trains on your lines: it does not go with dataset=poems"),
    ],
)
def test_bad_options_are_refused_in_one_line_before_anything_is_written(tmp_path, values, message):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=message) as error:
        tfseqgan.train(tfseqgan.TextData.from_lines(SENTENCES), run_dir=str(run_dir), **values)
    assert "\n" not in str(error.value)
    assert not run_dir.exists()


def test_an_unknown_preset_is_refused_naming_the_presets():
    with pytest.raises(ValueError, match=r"--preset=poems_quick: no such preset; expected one of .*poem_quick"):
        api.parse_options(preset="poems_quick")


def test_a_preset_is_its_flagfile_and_keywords_override_it():
    fv = api.parse_options(preset="poem_quick", mle_epochs=1)
    reference = api.parse_options(flagfile=str(REPO_ROOT / "flags" / "poem_quick.cfg"))
    assert fv.dataset == "poems" == reference.dataset
    assert fv.sequence_length == reference.sequence_length
    assert fv.mle_epochs == 1 != reference.mle_epochs
    assert sorted(tfseqgan.preset_names()) == sorted(p.stem for p in (REPO_ROOT / "flags").glob("*.cfg"))
    assert tfseqgan.preset_path("coco_quick") == os.path.join(str(REPO_ROOT / "flags"), "coco_quick.cfg")


def test_the_cli_expands_a_preset_where_it_stands():
    argv = options.expand_presets(["--mle_epochs=1", "--preset=poem_quick", "--seed=3", "--preset", "coco_quick"])
    assert argv == [
        "--mle_epochs=1",
        f"--flagfile={REPO_ROOT / 'flags' / 'poem_quick.cfg'}",
        "--seed=3",
        f"--flagfile={REPO_ROOT / 'flags' / 'coco_quick.cfg'}",
    ]
    with pytest.raises(options.FlagError, match="--preset: expected a preset name"):
        options.expand_presets(["--preset"])


def test_main_refuses_an_unknown_preset_in_one_line(tmp_path):
    result = run_main("--preset=nope", f"--run_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--preset=nope: no such preset; expected one of coco, coco_gumbel" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: tfseqgan.TextData(["a b", 3], ["a"]), r"TextData.train_lines\[1\]: expected a string, got int"),
        (lambda: tfseqgan.TextData(["a b"], ["one\ntwo"]), r"TextData.test_lines\[0\]: a line break inside a line"),
        (lambda: tfseqgan.TextData(["a b"], ["", "  "]), "TextData.test_lines: no non-empty lines"),
        (lambda: tfseqgan.TextData.from_lines(["a"]), "1 lines are too few to hold 1 out"),
        (lambda: tfseqgan.TextData.from_lines(["a", "b"], test_fraction=1.5), "test_fraction"),
    ],
)
def test_bad_text_data_is_refused_in_one_line(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_text_data_holds_out_a_seeded_share_and_keeps_every_line():
    lines = [f"line {i}" for i in range(50)]
    data = tfseqgan.TextData.from_lines(lines, test_fraction=0.2, seed=1)
    assert len(data.test_lines) == 10 and len(data.train_lines) == 40
    assert sorted(data.train_lines + data.test_lines) == sorted(lines)
    assert tfseqgan.TextData.from_lines(lines, test_fraction=0.2, seed=1) == data
    assert tfseqgan.TextData.from_lines(lines, test_fraction=0.2, seed=2) != data


def test_another_runs_data_is_never_overwritten(tmp_path):
    folder = tmp_path / "run" / "data"
    tfseqgan.TextData(["a b", "c d"], ["a d"]).write(str(folder))
    before = (folder / "train.txt").read_bytes()
    with pytest.raises(ValueError, match="train.txt: holds other lines"):
        tfseqgan.TextData(["x y"], ["a d"]).write(str(folder))
    assert (folder / "train.txt").read_bytes() == before
    tfseqgan.TextData(["a b", "c d"], ["a d"]).write(str(folder))  # the same lines: a resumed run


def test_importing_the_package_and_the_onnx_sampler_loads_no_tensorflow():
    code = (
        "import sys, tfseqgan, tfseqgan.export.onnx_sample, tfseqgan.cli.train, tfseqgan.options\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]\n"
        "public = [getattr(tfseqgan, name) for name in tfseqgan.__all__]\n"
        "heavy += [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules and m not in heavy]\n"
        "print(heavy, tfseqgan.preset_names()[:1], set(tfseqgan.__all__) <= set(dir(tfseqgan)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["[]", "['coco']", "True"], result.stderr[-2000:]
