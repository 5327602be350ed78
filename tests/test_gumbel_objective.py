"""--objective=gumbel through the loop: training moves G through D, resumes exactly."""

import numpy as np
import pytest
import tensorflow as tf
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
    # beta: exponential from 1 towards 10 over 2 iterations (RelGAN: beta_max ** (i / N), i from 0).
    assert [r["inverse_temperature"] for r in adversarial[1:]] == pytest.approx([1.0, 10**0.5])
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


@pytest.mark.slow  # whole tiny runs: -m slow
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


@pytest.mark.parametrize("d_loss", ["standard", "relativistic", "relativistic_average"])
def test_d_steps_widen_ds_real_minus_fake_gap(tmp_path, d_loss):
    """The pairing and labels of D's batch: real rows up, relaxed fakes down, under every --d_loss."""
    trainer = quiet(tmp_path, d_loss=d_loss, discriminator_learning_rate=0.01)
    objective, d = trainer.objective, trainer.discriminator
    trainer.make_data()
    reals, seed, beta = trainer.real_data[:16], tf.constant([5, 5], tf.int64), tf.constant(2.0)

    def gap():
        return float(tf.reduce_mean(d.critic(tf.one_hot(reals, trainer.model_config.vocabulary_size)))) - float(
            tf.reduce_mean(d.critic(objective.fake_rows(16, seed, beta)))
        )

    before = gap()
    for step in range(5):
        objective.discriminator_step(reals, seed, tf.constant([7, step], tf.int64), beta)
    assert gap() > before + 1e-3


@pytest.mark.parametrize("feedback, d_loss", [("relaxed", "standard"), ("hard", "standard"), ("hard", "relativistic")])
def test_a_generator_step_raises_ds_score_of_fakes_and_leaves_d_alone(tmp_path, feedback, d_loss):
    trainer = quiet(tmp_path, gumbel_feedback=feedback, d_loss=d_loss, adversarial_generator_learning_rate=0.05)
    objective, d = trainer.objective, trainer.discriminator
    trainer.make_data()
    seed, beta = tf.constant([9, 9], tf.int64), tf.constant(2.0)

    def score():
        return float(tf.reduce_mean(d.critic(objective.fake_rows(32, seed, beta))))

    d_before = [w.numpy().copy() for w in d.weights]
    before = score()
    reals = trainer.real_data[:16]
    for _ in range(5):
        objective.generator_step(reals, seed, beta)
    assert score() > before + 1e-3  # the non-saturating loss's sign: G moves towards what D calls real
    for a, b in zip(d_before, d.weights):
        np.testing.assert_array_equal(a, b.numpy())


@pytest.mark.slow  # whole tiny runs: -m slow
def test_a_shared_pre_training_checkpoint_starts_a_gumbel_run(tmp_path):
    seqgan = Trainer(*tiny_configs(tmp_path, False, adversarial_iterations=0), log=lambda *a: None)
    seqgan.run()
    gumbel_run = quiet(tmp_path, resume=True)
    assert gumbel_run.restore_or_start() is not None
    history = gumbel_run.run()
    assert [r["step"] for r in history if r["phase"] == "adversarial"] == [0, 1, 2]
    # Mid-adversarial, another objective's checkpoint is refused in one line.
    mid = tmp_path / "mid"
    Trainer(*tiny_configs(mid, False, adversarial_iterations=1), log=lambda *a: None).run()
    with pytest.raises(ValueError, match="written mid-adversarial by another objective"):
        quiet(mid, resume=True).restore_or_start()


@pytest.mark.slow  # whole tiny runs: -m slow
def test_text_fakes_are_padding_after_their_end_token(tmp_path):
    import dataclasses

    from tfseqgan import text
    from tfseqgan.config import TextConfig

    train = tmp_path / "train.txt"
    train.write_text("the cat sat .\n" * 64 + "a dog ran home .\n" * 32, encoding="utf-8")
    test = tmp_path / "test.txt"
    test.write_text("the cat sat .\na dog ran .\n", encoding="utf-8")
    corpus = text.load_corpus(str(train), str(test), "word", 6, batch_size=16)
    model, oracle, train_config, run = tiny_configs(
        tmp_path / "run", mle_epochs=8, generator_learning_rate=0.05, **{**GUMBEL, "adversarial_iterations": 0}
    )
    model = dataclasses.replace(model, vocabulary_size=len(corpus.vocabulary), start_token=text.START_ID)
    trainer = Trainer(
        model,
        oracle,
        train_config,
        run,
        log=lambda *a: None,
        corpus=corpus,
        text_config=TextConfig(dataset="text", num_bleu_samples=8),
    )
    trainer.run()  # MLE: the generator ends its lines
    fakes = trainer.objective.fake_rows(32, tf.constant([1, 2], tf.int64), tf.constant(1000.0)).numpy()
    ids = fakes.argmax(-1)
    ended = 0
    for row, row_ids in zip(fakes, ids):
        ends = np.flatnonzero(row_ids == text.END_ID)
        if ends.size and ends[0] < len(row_ids) - 1:
            ended += 1
            np.testing.assert_array_equal(
                row[ends[0] + 1 :], np.eye(len(corpus.vocabulary))[[text.PAD_ID]].repeat(len(row_ids) - ends[0] - 1, 0)
            )
    assert ended > 0  # the check above ran
