"""--objective=wgan_gp: the gradient penalty by hand, a critic step on a separable toy batch,
a run through the loop, and an exact resume."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_configs

from tfseqgan import losses
from tfseqgan.training.loop import Trainer

WGAN = dict(objective="wgan_gp", critic_steps=2, adversarial_iterations=2)


def quiet(run_dir, resume=False, **overrides):
    return Trainer(*tiny_configs(run_dir, resume, **{**WGAN, **overrides}), log=lambda *a: None)


def without_timings(records):
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]


def test_the_gradient_penalty_equals_a_hand_computation_on_two_points():
    # C(x) = a * sum(x^2): its gradient at x is 2 a x, so the penalty is mean_i (2 a ||x_i|| - 1)^2.
    a = 0.75
    real = tf.constant([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
    fake = tf.constant([[[0.2, 0.8], [0.6, 0.4]], [[0.5, 0.5], [0.9, 0.1]]])
    epsilon = tf.constant([0.25, 0.6])
    penalty = losses.gradient_penalty(lambda x: a * tf.reduce_sum(x * x, axis=[1, 2]), real, fake, epsilon)
    expected = 0.0
    for i, e in enumerate([0.25, 0.6]):
        point = e * real[i].numpy() + (1 - e) * fake[i].numpy()
        expected += (2 * a * np.linalg.norm(point) - 1.0) ** 2
    assert float(penalty) == pytest.approx(expected / 2, rel=1e-5)
    # A share over a global batch divides by the global count.
    share = losses.gradient_penalty(lambda x: a * tf.reduce_sum(x * x, axis=[1, 2]), real, fake, epsilon, total=4)
    assert float(share) == pytest.approx(expected / 4, rel=1e-5)


def test_a_critic_step_raises_the_real_minus_fake_gap(tmp_path):
    """Real rows all token 1, the generator's rows spread: separable. Critic steps widen the gap."""
    trainer = quiet(tmp_path)
    objective, critic = trainer.objective, trainer.discriminator
    reals = tf.ones([16, 6], tf.int32)
    vocabulary = trainer.model_config.vocabulary_size

    def gap():
        fake, _ = objective.fake_probabilities(16, tf.constant([3, 3], tf.int64))
        return float(tf.reduce_mean(critic.critic(tf.one_hot(reals, vocabulary))) - tf.reduce_mean(critic.critic(fake)))

    before = gap()
    for step in range(5):
        loss, penalty = objective.critic_step(reals, tf.constant([3, 3], tf.int64), tf.constant([4, step], tf.int64))
        assert np.isfinite(float(loss)) and float(penalty) >= 0
    assert gap() > before + 1e-3


def test_a_critic_steps_loss_is_wasserstein_plus_lambda_penalty_on_its_own_samples(tmp_path):
    """Recomputed apart: E[C(fake)] - E[C(real)] + lambda * GP, with real = one-hot rows, fake = the
    generator's softmax rows drawn with the step's seed, one epsilon per row from the step's other seed."""
    trainer = quiet(tmp_path, gradient_penalty=7.0)
    objective, critic = trainer.objective, trainer.discriminator
    reals = tf.constant(np.random.default_rng(0).integers(0, 20, size=[16, 6]), tf.int32)
    sample_seed, epsilon_seed = tf.constant([3, 1], tf.int64), tf.constant([4, 2], tf.int64)
    fake, _ = objective.fake_probabilities(16, sample_seed)
    real = tf.one_hot(reals, trainer.model_config.vocabulary_size)
    epsilon = tf.random.stateless_uniform([16], epsilon_seed)
    wasserstein = float(tf.reduce_mean(critic.critic(fake)) - tf.reduce_mean(critic.critic(real)))
    penalty = float(losses.gradient_penalty(critic.critic, real, fake, epsilon))
    loss, step_penalty = objective.critic_step(reals, sample_seed, epsilon_seed)
    assert float(step_penalty) == pytest.approx(penalty, rel=1e-4, abs=1e-6)
    assert float(loss) == pytest.approx(wasserstein + 7.0 * penalty, rel=1e-4, abs=1e-5)


@pytest.fixture(scope="module")
def wgan_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("wgan")
    trainer = quiet(run_dir)
    return trainer, run_dir, trainer.run()


def test_a_wgan_run_trains_through_the_loop(wgan_run):
    trainer, _, history = wgan_run
    adversarial = [r for r in history if r["phase"] == "adversarial"]
    assert [r["step"] for r in adversarial] == [0, 1, 2]
    for record in adversarial[1:]:
        for name in ("g_loss", "critic_loss", "gradient_penalty"):
            assert np.isfinite(record[name]), name
    objective = trainer.objective
    assert int(objective.critic_optimizer.iterations) == 2 * 2  # critic steps x iterations
    assert int(objective.generator_optimizer.iterations) == 2
    assert int(trainer.discriminator_optimizer.iterations) > 0  # D pre-training, shared
    assert float(objective.critic_optimizer.beta_1) == 0.5 and float(objective.critic_optimizer.beta_2) == 0.9


@pytest.mark.slow  # whole tiny runs: -m slow
def test_a_resumed_wgan_run_ends_on_the_uninterrupted_runs_metrics(wgan_run, tmp_path):
    _, _, history = wgan_run
    trainer = quiet(tmp_path)
    original = trainer.objective.generator_update
    calls = []

    def killed_in_iteration_2(iteration):
        if iteration == 2:
            raise KeyboardInterrupt
        calls.append(iteration)
        return original(iteration)

    trainer.objective.generator_update = killed_in_iteration_2
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert calls == [1]
    resumed = quiet(tmp_path, resume=True).run()
    assert without_timings(resumed) == without_timings(history)


def test_a_wgan_generator_step_raises_the_critics_score_and_leaves_it_alone(tmp_path):
    trainer = quiet(tmp_path, wgan_learning_rate=0.01)
    objective, critic = trainer.objective, trainer.discriminator
    seed = tf.constant([6, 6], tf.int64)

    def score():
        fake, _ = objective.fake_probabilities(32, seed)
        return float(tf.reduce_mean(critic.critic(fake)))

    critic_before = [w.numpy().copy() for w in critic.weights]
    before = score()
    for _ in range(5):
        objective.generator_step(tf.ones([16, 6], tf.int32), seed)
    assert score() > before + 1e-4  # -E[C(fake)]: G moves up the critic
    for a, b in zip(critic_before, critic.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_the_penalty_takes_part_in_the_critics_update(tmp_path):
    """The same critic step with and without the penalty moves the critic differently."""
    weights = {}
    for penalty in (0.0, 10.0):
        trainer = quiet(tmp_path / str(penalty), gradient_penalty=penalty)
        trainer.objective.critic_step(
            tf.ones([16, 6], tf.int32), tf.constant([1, 1], tf.int64), tf.constant([2, 2], tf.int64)
        )
        weights[penalty] = [w.numpy() for w in trainer.discriminator.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(weights[0.0], weights[10.0]))
