"""bench/objectives.py: the method comparison's bookkeeping (what is rerun,
resumed or kept), its table, and its verdict against MLE's temperature curve."""

import json
import os

import pytest
from conftest import load_bench_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def experiment():
    return load_bench_script("objectives")


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
    mle = [{"temperature": t, "nll_oracle": q, "nll_test": d} for t, q, d in ((0.6, 8, 10), (1.0, 9, 9), (1.4, 10, 8))]
    lower = [{"temperature": 1.0, "nll_oracle": 8.5, "nll_test": 9.0}]
    assert experiment.verdict(lower, mle, "nll_oracle", "nll_test", False)["beyond"] == 1
    assert experiment.verdict(lower, mle, "nll_oracle", "nll_test", True)["inside"] == 1


def test_points_past_the_ends_of_mles_range_are_judged_only_when_they_dominate(experiment):
    # less diverse than every MLE point: better quality proves nothing (a colder MLE may reach it)...
    result = experiment.verdict([point(1.0, 0.9, 0.9)], MLE, "bleu_2", "self_bleu_2", True)
    assert result["outside_range"] == 1 and result["beyond"] == result["inside"] == 0
    # ...worse quality is dominated by MLE's point at 0.6
    assert experiment.verdict([point(1.0, 0.5, 0.9)], MLE, "bleu_2", "self_bleu_2", True)["inside"] == 1
    # more diverse than every MLE point and better than its most diverse point: dominates it
    assert experiment.verdict([point(1.0, 0.3, 0.1)], MLE, "bleu_2", "self_bleu_2", True)["beyond"] == 1
    assert experiment.verdict([point(1.0, 0.1, 0.1)], MLE, "bleu_2", "self_bleu_2", True)["outside_range"] == 1


def test_mle_against_itself_is_on_its_curve(experiment):
    result = experiment.verdict(MLE, MLE, "bleu_2", "self_bleu_2", True)
    assert result["on"] == 3 and result["text"].startswith("on MLE's curve")


def test_a_curve_that_folds_back_is_judged_by_its_best_trade_offs(experiment):
    # NLL-test lowest near temperature 1 and higher on both sides: the colder half trades diversity
    # for quality (MLE's front); the hotter half is worse than T=1 on both, so it is off the front.
    mle = [
        {"temperature": t, "nll_oracle": q, "nll_test": d}
        for t, q, d in ((0.6, 7.0, 9.6), (0.8, 8.0, 8.4), (1.0, 9.0, 8.0), (1.2, 9.5, 8.3), (1.4, 10.0, 9.0))
    ]
    assert experiment.front(mle, "nll_oracle", "nll_test", False) == [(8.0, 9.0), (8.4, 8.0), (9.6, 7.0)]
    # a point on MLE's own segment from T=0.8 to T=1 is on the curve, not beyond it
    on_segment = [{"temperature": 0.9, "nll_oracle": 8.5, "nll_test": 8.2}]
    assert experiment.verdict(on_segment, mle, "nll_oracle", "nll_test", False)["on"] == 1
    # MLE's own hot points are dominated by its point at 1
    hot = [p for p in mle if p["temperature"] > 1.0]
    assert experiment.verdict(hot, mle, "nll_oracle", "nll_test", False)["inside"] == 2


def finished_run(run_dir, bleu, seconds=(), objective="seqgan", iterations=0, temperatures=(0.8, 1.0)):
    """A run directory as main.py leaves it after --temperature_curve=0.8,1."""
    os.makedirs(run_dir)
    (open(os.path.join(run_dir, "report.txt"), "w")).close()
    curve = [
        {"temperature": t, "nll_test": 4.0 + t, "bleu_2": bleu + 1.0 - t, "self_bleu_2": 1.5 - t} for t in temperatures
    ]
    document = {"objective": objective, "adversarial_iteration": iterations, "curve": curve}
    with open(os.path.join(run_dir, "temperatures.json"), "w", encoding="utf-8") as stream:
        json.dump(document, stream)
    records = [{"phase": "mle", "step": 1}]
    records += [{"phase": "adversarial", "step": 2 + i, "iteration_seconds": s} for i, s in enumerate(seconds)]
    with open(os.path.join(run_dir, "metrics.jsonl"), "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps(r) + "\n" for r in records)


def test_finished_runs_are_kept_and_tabulated(tmp_path, experiment, monkeypatch):
    work = tmp_path / "work"
    finished_run(str(work / "seed0" / "pretrained"), 0.1)
    finished_run(str(work / "seed0" / "mle"), 0.40)
    finished_run(str(work / "seed0" / "gumbel"), 0.50, seconds=(9.0, 2.0, 3.0), objective="gumbel", iterations=300)
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
    assert gumbel["per_seed"]["0"]["final"]["iteration_seconds"] == 3.0  # the median window (the first traces)
    assert gumbel["per_seed"]["0"]["final"]["iterations"] == 300
    assert document["results"]["mle"]["summary"]["bleu_2"]["mean"] == pytest.approx(0.40)
    assert "nll_oracle" not in gumbel["summary"]  # a text setting has no oracle
    assert document["verdicts"]["gumbel"]["bleu_2 vs self_bleu_2"]["beyond"] == 2  # 0.1 above MLE at each point
    markdown = (tmp_path / "result.md").read_text()
    assert "| Gumbel | " in markdown and "0.5000 ± 0.0000" in markdown and "300 ± 0" in markdown
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


def test_a_finished_run_of_another_experiment_is_rerun(tmp_path, experiment, monkeypatch):
    work = tmp_path / "work"
    finished_run(str(work / "seed0" / "pretrained"), 0.1)
    finished_run(str(work / "seed0" / "mle"), 0.40)  # the right curve: kept
    # the old quick schedule (100 iterations) and another curve: both rerun from the pre-training
    finished_run(str(work / "seed0" / "gumbel"), 0.5, objective="gumbel", iterations=100)
    finished_run(str(work / "seed0" / "wgan_gp"), 0.5, objective="wgan_gp", iterations=300, temperatures=(0.7, 1.0))
    launched = []

    def submit(self, flags, log):
        launched.append(os.path.basename(log))
        if len(launched) == 2:
            raise SystemExit("stop after queueing")

    monkeypatch.setattr(experiment.Runner, "submit", submit)
    with pytest.raises(SystemExit):
        experiment.main(
            ["--setting=poem", "--seeds=0", "--methods=gumbel,wgan_gp", f"--work_dir={work}", "--temperatures=0.8"]
        )
    assert launched == ["gumbel.log", "wgan_gp.log"]
    assert not (work / "seed0" / "gumbel" / "report.txt").exists()  # replaced by a copy of the pre-training


def test_a_failed_run_is_reported_and_the_rest_still_tabulated(tmp_path, experiment, monkeypatch):
    import concurrent.futures

    work = tmp_path / "work"
    finished_run(str(work / "seed0" / "pretrained"), 0.1)
    finished_run(str(work / "seed0" / "mle"), 0.40, temperatures=experiment.TEMPERATURES_LIST)

    def submit(self, flags, log):
        future = concurrent.futures.Future()
        future.set_exception(RuntimeError(f"main.py exited 1; see {log}"))
        return future

    monkeypatch.setattr(experiment.Runner, "submit", submit)
    out = tmp_path / "result.json"
    assert (
        experiment.main(["--setting=poem", "--seeds=0", "--methods=gumbel", f"--work_dir={work}", f"--out={out}"]) == 1
    )
    document = json.loads(out.read_text())
    assert document["failed"] == [
        {"method": "gumbel", "seed": 0, "error": f"main.py exited 1; see {work}/seed0/gumbel.log"}
    ]
    assert document["results"]["mle"]["summary"]["bleu_2"]["mean"] == pytest.approx(0.40)
    assert "Failed runs (left out above): gumbel seed 0" in (tmp_path / "result.md").read_text()


PRE_TRAINING_MAY_DIFFER = {
    "run_dir",  # each flagfile its own
    "adversarial_iterations",
    "adversarial_eval_every",
    "objective",
    # the D loss of the adversarial phase; in the experiment D is pre-trained with SeqGAN's (standard)
    # loss for every method, while a gumbel flagfile run alone also pre-trains D with its relativistic loss
    "d_loss",
}


@pytest.mark.parametrize("setting", ["synthetic", "poem", "coco"])
def test_every_methods_flagfile_repeats_the_shared_pre_training(experiment, setting):
    def flags(method):
        with open(experiment.flagfile(setting, method), encoding="utf-8") as stream:
            pairs = [line.strip()[2:].split("=", 1) for line in stream if line.startswith("--")]
        return {name: value for name, value in pairs}

    base = flags("seqgan")
    for method in ("gumbel", "wgan_gp"):
        other = flags(method)
        shared = set(base) - PRE_TRAINING_MAY_DIFFER
        assert shared <= set(other), (method, shared - set(other))
        assert {k: other[k] for k in shared} == {k: base[k] for k in shared}, method


@pytest.mark.slow  # five tiny main.py runs: -m slow
def test_a_tiny_experiment_runs_end_to_end(tmp_path, experiment):
    """The real path: a SeqGAN pre-training resumed as MLE (no adversarial iteration), SeqGAN
    and Gumbel (another objective's checkpoint), each scored over temperatures; then an
    unchanged rerun keeps every run."""
    from test_main import TINY_FLAGS

    extra = " ".join(
        TINY_FLAGS + ["--adversarial_iterations=2", "--adversarial_eval_every=1", "--discriminator_steps=1"]
    )
    out = tmp_path / "result.json"
    argv = [
        "--setting=synthetic",
        "--seeds=0",
        "--methods=seqgan,gumbel",
        "--temperatures=0.5,2",
        f"--work_dir={tmp_path / 'work'}",
        f"--out={out}",
        f"--extra={extra}",
    ]
    assert experiment.main(argv) == 0
    document = json.loads(out.read_text())
    assert document["failed"] == []
    results = document["results"]
    assert [results[m]["per_seed"]["0"]["final"]["iterations"] for m in ("mle", "seqgan", "gumbel")] == [0, 2, 2]
    for method in ("mle", "seqgan", "gumbel"):
        curve = results[method]["per_seed"]["0"]["curve"]
        assert [p["temperature"] for p in curve] == [0.5, 1.0, 2.0]
    # MLE's run is the pre-trained generator: its point at 1 is the pre-training's last evaluation
    with open(tmp_path / "work" / "seed0" / "pretrained" / "metrics.jsonl", encoding="utf-8") as stream:
        pretrained = json.loads(stream.readlines()[-1])
    assert results["mle"]["per_seed"]["0"]["final"]["nll_oracle"] == pytest.approx(pretrained["nll_oracle"])
    assert results["gumbel"]["per_seed"]["0"]["final"]["nll_oracle"] != pretrained["nll_oracle"]  # it trained
    assert set(document["verdicts"]) == {"seqgan", "gumbel"}
    modified = os.path.getmtime(tmp_path / "work" / "seed0" / "gumbel" / "report.txt")
    assert experiment.main(argv) == 0  # nothing left to do: every run is kept
    assert os.path.getmtime(tmp_path / "work" / "seed0" / "gumbel" / "report.txt") == modified
