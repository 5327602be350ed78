"""bench/variants.py: an interrupted experiment continues with --reuse_finished."""

import json
import os

import pytest
from conftest import load_bench_script


@pytest.fixture(scope="module")
def variants():
    return load_bench_script("variants")


def finished_run(run_dir, nll_test, elapsed):
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "report.txt"), "w", encoding="utf-8") as stream:
        stream.write("done\n")
    records = [
        {"phase": "mle", "nll_test": 9.0},
        {"phase": "adversarial", "nll_test": 5.0, "bleu_2": 0.5},
        {"phase": "adversarial", "nll_test": nll_test, "bleu_2": 0.6, "elapsed_seconds": elapsed},
    ]
    with open(os.path.join(run_dir, "metrics.jsonl"), "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps(r) + "\n" for r in records)


def test_finished_variant_runs_are_kept_and_tabulated_without_training(tmp_path, variants, monkeypatch):
    work = tmp_path / "work"
    finished_run(str(work / "seed0" / "pretrained"), 5.0, 10.0)
    finished_run(str(work / "seed0" / "paper"), 4.25, 123.0)
    launched = []
    monkeypatch.setattr(variants.Runner, "submit", lambda self, flags, log: launched.append(flags))
    out = tmp_path / "result.json"
    argv = ["--setting=poem", "--seeds=0", "--variants=paper", f"--work_dir={work}", f"--out={out}"]
    assert variants.main(argv + ["--reuse_finished"]) == 0

    assert launched == []  # nothing retrained
    result = json.loads(out.read_text())["results"]
    assert result["paper"]["per_seed"]["0"]["final"]["nll_test"] == 4.25
    assert result["paper"]["per_seed"]["0"]["seconds"] == 123.0
    assert result["pre-trained (adversarial step 0)"]["per_seed"]["0"]["final"]["nll_test"] == 5.0
    assert "4.2500" in (tmp_path / "result.md").read_text()


def test_without_reuse_a_finished_variant_is_rerun_from_the_pretraining(tmp_path, variants, monkeypatch):
    work = tmp_path / "work"
    finished_run(str(work / "seed0" / "pretrained"), 5.0, 10.0)
    finished_run(str(work / "seed0" / "paper"), 4.25, 123.0)
    launched = []

    def submit(self, flags, log):
        launched.append(flags)
        raise SystemExit("stop after queueing")

    monkeypatch.setattr(variants.Runner, "submit", submit)
    with pytest.raises(SystemExit):
        variants.main(["--setting=poem", "--seeds=0", "--variants=paper", f"--work_dir={work}"])
    assert len(launched) == 1 and "--resume" in launched[0]
    # the stale result was replaced by a fresh copy of the pre-training
    assert not os.path.exists(work / "seed0" / "paper" / "report.txt")


def test_old_code_runs_the_papers_setting_with_the_other_checkout(tmp_path, variants, monkeypatch):
    work, old_code = tmp_path / "work", tmp_path / "old"
    finished_run(str(work / "seed0" / "pretrained"), 5.0, 10.0)
    old_code.mkdir()
    (old_code / "main.py").write_text("")
    launched = {}

    def submit(self, flags, log, *root):
        launched[os.path.basename(log)] = (flags, root)
        if len(launched) == 2:
            raise SystemExit("stop after queueing")

    monkeypatch.setattr(variants.Runner, "submit", submit)
    with pytest.raises(SystemExit):
        variants.main(
            ["--setting=poem", "--seeds=0", "--variants=paper", f"--work_dir={work}", f"--old_code={old_code}"]
        )
    assert launched["paper.log"][1] == ()  # this checkout
    assert launched["paper_old_code.log"][1] == (str(old_code),)
    # the same flags, each run in a copy of the same pre-training
    assert [f for f in launched["paper.log"][0] if not f.startswith("--run_dir")] == [
        f for f in launched["paper_old_code.log"][0] if not f.startswith("--run_dir")
    ]
    assert os.path.isdir(work / "seed0" / "paper_old_code")


def test_old_code_without_main_py_is_refused(tmp_path, variants, capsys):
    with pytest.raises(SystemExit):
        variants.main(["--setting=poem", f"--old_code={tmp_path}"])
    assert "no main.py" in capsys.readouterr().err
