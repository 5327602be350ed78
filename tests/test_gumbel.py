"""Gumbel-softmax relaxation: D reads distributions, relaxed samples tend to
the hard Gumbel-max draws, gradients reach every generator weight."""

import numpy as np
import pytest
import tensorflow as tf

from tfseqgan import gumbel
from tfseqgan.discriminator import Discriminator
from tfseqgan.generator import Generator

VOCAB, TIME = 12, 5


def generator(seed=3, **kwargs):
    return Generator(VOCAB, TIME, embedding_dim=8, hidden_dim=8, init_stddev=1.0, seed=seed, **kwargs)


def discriminator(seed=4):
    return Discriminator(VOCAB, TIME, embedding_dim=6, window_sizes=(1, 2, 3), num_filters=(3, 3, 3), seed=seed)


def test_a_one_hot_input_to_d_equals_the_id_input():
    d = discriminator()
    ids = tf.constant(np.random.default_rng(0).integers(0, VOCAB, (7, TIME)), tf.int32)
    one_hot = tf.one_hot(ids, VOCAB)
    np.testing.assert_allclose(d(one_hot).numpy(), d(ids).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d.critic(one_hot).numpy(), d.critic(ids).numpy(), rtol=1e-6, atol=1e-6)
    # The bfloat16 scoring path (--reward_precision) reads distributions too.
    np.testing.assert_allclose(
        d.real_probability(one_hot, tf.bfloat16).numpy(), d.real_probability(ids, tf.bfloat16).numpy(), atol=1e-6
    )
    # A mixture embeds as the mixture of embeddings, so D's view of it differs from either id's.
    mixed = 0.5 * one_hot + 0.5 * tf.roll(one_hot, 1, axis=2)
    assert not np.allclose(d(mixed).numpy(), d(ids).numpy())


def test_a_one_hot_input_to_the_generator_step_equals_the_id_input():
    g = generator()
    ids = tf.constant([1, 5, 7], tf.int32)
    state = g.initial_state(3)
    by_id, (h1, _) = g.step(ids, state)
    by_vector, (h2, _) = g.step_vectors(tf.one_hot(ids, VOCAB), state)
    np.testing.assert_allclose(by_vector.numpy(), by_id.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h2.numpy(), h1.numpy(), rtol=1e-6, atol=1e-6)


def test_relaxed_samples_tend_to_the_gumbel_max_draws_as_beta_grows():
    g = generator()
    seed = tf.constant([5, 6], tf.int64)
    hard = gumbel.gumbel_max_sequences(g, 64, seed).numpy()
    gaps, agreement = [], []
    for beta in (1.0, 10.0, 100.0, 1e4):
        relaxed, relaxed_hard = gumbel.relaxed_sequences(g, 64, seed, beta)
        relaxed = relaxed.numpy()
        np.testing.assert_allclose(relaxed.sum(-1), 1.0, rtol=1e-5)
        # The argmax of each relaxed vector is the perturbed logits' argmax.
        np.testing.assert_array_equal(relaxed.argmax(-1), relaxed_hard.numpy())
        gaps.append(float(np.mean(1.0 - relaxed.max(-1))))  # how far from one-hot
        agreement.append(float(np.mean(relaxed_hard.numpy() == hard)))  # with the hard sampler, same noise
    assert gaps[0] > 0.1 and gaps[-1] < 1e-4, gaps
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:])), gaps
    assert agreement[0] < 1.0 and agreement[-1] == 1.0, agreement
    assert all(later >= earlier for earlier, later in zip(agreement, agreement[1:])), agreement


def test_gumbel_max_draws_follow_the_generators_distribution():
    """argmax(l + g) is a draw from softmax(l): the first token's frequencies over many rows."""
    g = generator()
    rows = 20000
    first = gumbel.gumbel_max_sequences(g, rows, tf.constant([1, 2], tf.int64)).numpy()[:, 0]
    logits, _ = g.step(tf.fill([1], g.start_token), g.initial_state(1))
    expected = tf.nn.softmax(logits[0]).numpy()
    observed = np.bincount(first, minlength=VOCAB) / rows
    # 4 standard errors of each frequency.
    np.testing.assert_array_less(np.abs(observed - expected), 4 * np.sqrt(expected * (1 - expected) / rows) + 1e-4)


def test_ds_judgement_of_relaxed_samples_has_a_gradient_on_every_generator_weight():
    g, d = generator(), discriminator()
    with tf.GradientTape() as tape:
        relaxed, _ = gumbel.relaxed_sequences(g, 16, tf.constant([7, 8], tf.int64), 2.0)
        loss = -tf.reduce_mean(d.critic(relaxed))
    gradients = tape.gradient(loss, g.trainable_variables)
    assert len(gradients) == len(g.trainable_variables) > 0
    for variable, gradient in zip(g.trainable_variables, gradients):
        assert gradient is not None, variable.path
        assert float(tf.reduce_max(tf.abs(tf.convert_to_tensor(gradient)))) > 0, variable.path


@pytest.mark.parametrize(
    "schedule, expected",
    [("exponential", [1.0, 10.0, 100.0, 1000.0]), ("linear", [1.0, 334.0, 667.0, 1000.0]), ("constant", [1000.0] * 4)],
)
def test_inverse_temperature_schedules(schedule, expected):
    got = [gumbel.inverse_temperature(schedule, i, 3, 1000.0) for i in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_bad_schedule_settings_name_the_flag():
    with pytest.raises(ValueError, match="--gumbel_schedule=cosine"):
        gumbel.inverse_temperature("cosine", 0, 3, 10.0)
    with pytest.raises(ValueError, match="--gumbel_max_inverse_temperature=0.5"):
        gumbel.inverse_temperature("linear", 0, 3, 0.5)


def test_generator_adversarial_losses_by_hand():
    from tfseqgan import losses

    real = tf.constant([1.0, -0.5])
    fake = tf.constant([0.2, 0.3])

    def softplus(x):
        return np.log1p(np.exp(x))

    r, f = real.numpy(), fake.numpy()
    standard = np.mean(softplus(-f))  # -log sigmoid(C(fake))
    rsgan = np.mean(softplus(r - f))  # -log sigmoid(C(fake) - C(real)), pairs
    rasgan = (np.sum(softplus(-(f - r.mean()))) + np.sum(softplus(r - f.mean()))) / 4
    assert float(losses.generator_adversarial_loss("standard", real, fake)) == pytest.approx(standard, rel=1e-6)
    assert float(losses.generator_adversarial_loss("relativistic", real, fake)) == pytest.approx(rsgan, rel=1e-6)
    got = float(losses.generator_adversarial_loss("relativistic_average", real, fake))
    assert got == pytest.approx(rasgan, rel=1e-6)
    # The generator's side is the D loss with the roles swapped: lower when fakes score higher.
    higher = losses.generator_adversarial_loss("relativistic", real, fake + 1.0)
    assert float(higher) < float(losses.generator_adversarial_loss("relativistic", real, fake))
    assert float(losses.generator_adversarial_loss("standard", real, fake, total=4)) == pytest.approx(standard / 2)
