"""docs/design.md's worked toy objective, run through the loop unchanged."""

import re
import shutil

import numpy as np
import pytest
from conftest import REPO_ROOT, tiny_configs

from tfseqgan.objectives import OBJECTIVES
from tfseqgan.training.loop import Trainer

DESIGN = REPO_ROOT / "docs" / "design.md"


def toy_objective():
    """The MLEOnly class of the code block between design.md's markers."""
    text = DESIGN.read_text(encoding="utf-8")
    block = re.search(r"<!-- toy-objective:begin -->\s*```python\n(.*?)```\s*<!-- toy-objective:end -->", text, re.S)
    assert block, "docs/design.md lost its toy-objective block"
    namespace = {}
    exec(compile(block.group(1), str(DESIGN), "exec"), namespace)  # noqa: S102 - the project's own doc
    return namespace["MLEOnly"]


def weights(model):
    return [w.numpy().copy() for w in model.weights]


def quiet(run_dir, resume=False, **overrides):
    return Trainer(*tiny_configs(run_dir, resume, **overrides), log=lambda *a: None, objective=toy_objective())


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("toy")
    trainer = quiet(run_dir, adversarial_iterations=0)
    trainer.run()  # pre-training only: the loop's own phases
    before = (weights(trainer.generator), weights(trainer.discriminator))
    resumed = quiet(run_dir, resume=True, adversarial_iterations=3, generator_steps=2)
    history = resumed.run()
    return trainer, resumed, before, history, run_dir


def test_the_loop_runs_the_toy_objective(toy_run):
    _, trainer, (generator, discriminator), history, _ = toy_run
    adversarial = [r for r in history if r["phase"] == "adversarial"]
    assert [r["step"] for r in adversarial] == [0, 1, 2, 3]
    # Its metric is recorded, SeqGAN's are not.
    assert all(np.isfinite(r["g_loss"]) for r in adversarial[1:])
    assert not any("mean_reward" in r for r in history)
    # Its updates moved G and left D alone (it has no discriminator update).
    assert any(not np.array_equal(a, b) for a, b in zip(weights(trainer.generator), generator))
    for a, b in zip(weights(trainer.discriminator), discriminator):
        np.testing.assert_array_equal(a, b)
    assert int(trainer.objective.steps_taken) == 3 * 2  # iterations x --generator_steps


def test_the_toy_objectives_state_is_checkpointed(toy_run, tmp_path):
    _, trainer, _, _, run_dir = toy_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    resumed = quiet(copy, resume=True, adversarial_iterations=3, generator_steps=2)
    assert int(resumed.objective.steps_taken) == 0
    resumed.restore_or_start()
    assert int(resumed.objective.steps_taken) == 6
    assert "mle_only_steps" in resumed.checkpointed


def test_the_cli_choices_are_the_objectives():
    from tfseqgan.cli import train as main

    assert sorted(main.FLAGS["objective"].parser.enum_values) == sorted(OBJECTIVES)
    assert main.FLAGS["objective"].default == "seqgan"
    # each names itself in the report and the plot, and by its own name
    titles = {name: cls.title for name, cls in OBJECTIVES.items()}
    assert titles == {"seqgan": "SeqGAN", "gumbel": "Gumbel", "wgan_gp": "WGAN-GP"}
    assert all(cls.name == name for name, cls in OBJECTIVES.items())


def test_an_unknown_objective_is_refused_naming_the_flag(tmp_path):
    import dataclasses

    model, oracle, train, run = tiny_configs(tmp_path, False)
    with pytest.raises(ValueError, match=r"--objective=maligan: expected one of seqgan, gumbel, wgan_gp"):
        Trainer(model, oracle, dataclasses.replace(train, objective="maligan"), run, log=lambda *a: None)


def test_a_checkpoint_of_another_objective_is_refused_in_one_line(toy_run, tmp_path):
    from tfseqgan.training.loop import TrainingError

    _, _, _, _, run_dir = toy_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    seqgan = Trainer(*tiny_configs(copy, True, adversarial_iterations=3), log=lambda *a: None)
    with pytest.raises(TrainingError, match=r"does not hold this run's objects \(--objective=seqgan") as error:
        seqgan.restore_or_start()
    assert "\n" not in str(error.value)
