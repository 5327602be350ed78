"""bench/objectives.py: the method comparison's bookkeeping (what is rerun,
resumed or kept), its table, and its verdict against MLE's temperature curve."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("bench_objectives", os.path.join(ROOT, "bench", "objectives.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def point(temperature, quality, diversity):
    return {"temperature": temperature, "bleu_2": quality, "self_bleu_2": diversity}


MLE = [point(0.6, 0.60, 0.60), point(1.0, 0.40, 0.40), point(1.4, 0.20, 0.20)]  # quality = diversity score


def test_a_curve_above_mles_is_beyond_it(experiment):
    above = [point(t, q + 0.05, d) for t, q, d in ((0.6, 0.5, 0.5), (1.0, 0.3, 0.3))]
    result = experiment.verdict(above, MLE, "bleu_2", "self_bleu_2", True)
    assert (result["beyond"], result["inside"]) == (2, 0) and result["text"].startswith("beyond")


def test_a_curve_below_mles_is_inside_and_a_crossing_one_crosses(experiment):
    below = [point(1.0, 0.25, 0.3), point(1.2, 0.45, 0.5)]  # MLE there: 0.3, then 0.5
    assert experiment.verdict(below, MLE, "bleu_2", "self_bleu_2", True)["text"].startswith("inside")
    crossing = [point(1.0, 0.35, 0.3), point(1.2, 0.45, 0.5)]
    result = experiment.verdict(crossing, MLE, "bleu_2", "self_bleu_2", True)
    assert (result["beyond"], result["inside"]) == (1, 1) and result["text"].startswith("crosses")


def test_lower_is_better_quality_flips_the_verdict(experiment):
    # NLL-oracle: lower is better, so a curve below MLE's is beyond it
    mle = [{"temperature": t, "nll_oracle": x, "nll_test": x} for t, x in ((0.6, 8.0), (1.0, 9.0), (1.4, 10.0))]
    lower = [{"temperature": 1.0, "nll_oracle": 8.5, "nll_test": 9.0}]
    assert experiment.verdict(lower, mle, "nll_oracle", "nll_test", False)["beyond"] == 1
    assert experiment.verdict(lower, mle, "nll_oracle", "nll_test", True)["inside"] == 1


def test_points_outside_mles_diversity_range_are_not_judged(experiment):
    far = [point(1.0, 0.9, 0.9)]
    result = experiment.verdict(far, MLE, "bleu_2", "self_bleu_2", True)
    assert result["outside_range"] == 1 and result["beyond"] == result["inside"] == 0


def finished_run(run_dir, bleu, seconds=None):
    """A run directory as main.py leaves it after --temperature_curve=0.8,1."""
    os.makedirs(run_dir)
    (open(os.path.join(run_dir, "report.txt"), "w")).close()
    curve = [
        {"temperature": 0.8, "nll_test": 5.0, "bleu_2": bleu + 0.1, "self_bleu_2": 0.5, "distinct_share": 0.9},
        {"temperature": 1.0, "nll_test": 4.0, "bleu_2": bleu, "self_bleu_2": 0.3, "distinct_share": 1.0},
    ]
    with open(os.path.join(run_dir, "temperatures.json"), "w", encoding="utf-8") as stream:
        json.dump({"curve": curve}, stream)
    records = [{"phase": "mle", "step": 1}]
    if seconds is not None:
        records += [
            {"phase": "adversarial", "step": 2, "seconds_per_iteration": seconds[0], "iterations_timed": 2},
            {"phase": "adversarial", "step": 3, "seconds_per_iteration": seconds[1], "iterations_timed": 1},
        ]
    with open(os.path.join(run_dir, "metrics.jsonl"), "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps(r) + "\n" for r in records)


def test_finished_runs_are_kept_and_tabulated(tmp_path, experiment, monkeypatch):
    work = tmp_path / "work"
    finished_run(str(work / "seed0" / "pretrained"), 0.1)
    finished_run(str(work / "seed0" / "mle"), 0.40)
    finished_run(str(work / "seed0" / "gumbel"), 0.50, seconds=(2.0, 5.0))
    launched = []
    monkeypatch.setattr(experiment.Runner, "submit", lambda self, flags, log: launched.append(flags))
    out = tmp_path / "result.json"
    argv = ["--setting=poem", "--seeds=0", "--methods=gumbel", f"--work_dir={work}", f"--out={out}"]
    assert experiment.main(argv + ["--temperatures=0.8"]) == 0

    assert launched == []  # nothing retrained
    document = json.loads(out.read_text())
    assert document["temperatures"] == [0.8, 1.0]  # 1 is always scored
    gumbel = document["results"]["gumbel"]
    assert gumbel["per_seed"]["0"]["final"]["bleu_2"] == 0.50  # the point at temperature 1
    assert gumbel["per_seed"]["0"]["final"]["seconds_per_iteration"] == pytest.approx(3.0)  # (2*2 + 5*1) / 3
    assert document["results"]["mle"]["summary"]["bleu_2"]["mean"] == 0.40
    assert "nll_oracle" not in gumbel["summary"]  # a text setting has no oracle
    assert document["verdicts"]["gumbel"]["bleu_2 vs self_bleu_2"]["beyond"] == 2
    markdown = (tmp_path / "result.md").read_text()
    assert "| Gumbel | " in markdown and "0.5000 ± 0.0000" in markdown
    assert os.path.getsize(tmp_path / "result.png") > 0


def test_an_interrupted_run_resumes_and_a_missing_one_starts_from_the_pretraining(tmp_path, experiment, monkeypatch):
    work = tmp_path / "work"
    finished_run(str(work / "seed0" / "pretrained"), 0.1)
    interrupted = work / "seed0" / "seqgan"
    os.makedirs(interrupted / "checkpoints")
    (interrupted / "checkpoints" / "marker").write_text("the interrupted run's own checkpoint")
    launched = {}

    def submit(self, flags, log):
        launched[os.path.basename(log)] = flags
        if len(launched) == 2:
            raise SystemExit("stop after queueing")

    monkeypatch.setattr(experiment.Runner, "submit", submit)
    with pytest.raises(SystemExit):
        experiment.main(["--setting=coco", "--seeds=0", "--methods=seqgan", f"--work_dir={work}"])
    # the interrupted run was resumed in place, not replaced by a copy of the pre-training
    assert (interrupted / "checkpoints" / "marker").exists() and not (interrupted / "report.txt").exists()
    assert (
        "--resume" in launched["seqgan.log"]
        and "--flagfile=" + os.path.join(ROOT, "flags", "coco_quick.cfg") in (launched["seqgan.log"])
    )
    # MLE: a fresh copy of the pre-training, no adversarial iteration, scored over temperatures
    mle = launched["mle.log"]
    assert "--adversarial_iterations=0" in mle and any(f.startswith("--temperature_curve=0.6,") for f in mle)
    copied = work / "seed0" / "mle"
    assert (copied / "metrics.jsonl").exists()
    assert not (copied / "report.txt").exists() and not (copied / "temperatures.json").exists()  # unfinished


def test_the_methods_flagfiles_exist(experiment):
    for setting in experiment.SETTINGS:
        for method in experiment.METHODS:
            assert os.path.isfile(experiment.flagfile(setting, method)), (setting, method)
