"""--objective=gumbel through the loop: training moves G through D, resumes exactly."""

import numpy as np
import pytest
from conftest import tiny_configs

from tfseqgan.training.loop import Trainer

GUMBEL = dict(objective="gumbel", gumbel_max_inverse_temperature=10.0, discriminator_steps=2, adversarial_iterations=2)


def quiet(run_dir, resume=False, **overrides):
    return Trainer(*tiny_configs(run_dir, resume, **{**GUMBEL, **overrides}), log=lambda *a: None)


def without_timings(records):
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]


@pytest.fixture(scope="module")
def gumbel_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gumbel")
    trainer = quiet(run_dir)
    return trainer, run_dir, trainer.run()


def test_a_gumbel_run_trains_g_and_d_through_the_relaxation(gumbel_run):
    trainer, _, history = gumbel_run
    adversarial = [r for r in history if r["phase"] == "adversarial"]
    assert [r["step"] for r in adversarial] == [0, 1, 2]
    for record in adversarial[1:]:
        assert np.isfinite(record["g_loss"]) and np.isfinite(record["d_loss"])
        assert not any(k in record for k in ("mean_reward",))
    # beta: exponential from 1 to 10 over 2 iterations, recorded per iteration.
    assert [r["inverse_temperature"] for r in adversarial[1:]] == pytest.approx([10**0.5, 10.0])
    assert int(trainer.objective.generator_optimizer.iterations) == 2  # one G step per iteration
    assert "rollout_policy" not in trainer.checkpointed


def test_the_adversarial_phase_moves_g_and_d(tmp_path):
    trainer = quiet(tmp_path, adversarial_iterations=0)
    trainer.run()
    before = [w.numpy().copy() for w in trainer.generator.weights + trainer.discriminator.weights]
    resumed = quiet(tmp_path, resume=True, adversarial_iterations=1)
    resumed.run()
    after = [w.numpy() for w in resumed.generator.weights + resumed.discriminator.weights]
    moved = [not np.array_equal(a, b) for a, b in zip(before, after)]
    generator_weights = len(trainer.generator.weights)
    assert all(moved[:generator_weights]), "every generator weight gets D's gradient"
    assert any(moved[generator_weights:])


def test_a_resumed_gumbel_run_ends_on_the_uninterrupted_runs_metrics(gumbel_run, tmp_path):
    _, _, history = gumbel_run
    # The same run killed at the start of iteration 2 (its checkpoint of iteration 1 written), then resumed.
    trainer = quiet(tmp_path)
    original = trainer.objective.generator_update

    def killed_at_iteration_2(iteration):
        if iteration == 2:
            raise KeyboardInterrupt
        return original(iteration)

    trainer.objective.generator_update = killed_at_iteration_2
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    resumed = quiet(tmp_path, resume=True).run()
    assert without_timings(resumed) == without_timings(history)
