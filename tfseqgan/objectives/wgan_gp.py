"""WGAN-GP on softmax outputs (Gulrajani et al. 2017, the language-model
experiment): a critic with a linear output scores the generator's softmax
distribution at every position against real one-hot sequences, with a
gradient penalty pulling the norm of its gradient towards 1 on interpolates.

The generator runs free: its input at each position is its own sampled
token (drawn with the same sampler as evaluation), and what the critic
scores is the softmax that produced each next token. The critic is the
shared CNN discriminator; its linear output is C(x) = logit(real) -
logit(fake), a linear function of its features. An iteration is, per
generator step (--generator_steps), --critic_steps critic steps and then one
generator step, each on a batch; both use Adam with that paper's betas.
"""

import numpy as np
import tensorflow as tf

from tfseqgan import distribute, losses, sampler, text
from tfseqgan.objectives.base import Objective
from tfseqgan.objectives.gumbel import refuse_mid_adversarial
from tfseqgan.optimizers import FusedAdam


def check_options(t):
    """Raises ValueError naming the flag for a setting of this objective that cannot run."""
    if t.critic_steps < 0:
        raise ValueError(f"--critic_steps={t.critic_steps}: expected a value >= 0")
    if t.gradient_penalty < 0:
        raise ValueError(f"--gradient_penalty={t.gradient_penalty}: expected a value >= 0")
    if not t.wgan_learning_rate > 0:
        raise ValueError(f"--wgan_learning_rate={t.wgan_learning_rate}: expected a value > 0")
    for name in ("wgan_beta_1", "wgan_beta_2"):
        if not 0.0 <= getattr(t, name) < 1.0:
            raise ValueError(f"--{name}={getattr(t, name)}: expected a value in [0, 1)")


class WGANGP(Objective):
    """Attributes:
    generator_optimizer, critic_optimizer: Adam(--wgan_learning_rate, --wgan_beta_1, --wgan_beta_2).
    critic_step(reals, sample_seed, epsilon_seed) -> (loss, penalty) (tf.function).
    generator_step(reals, sample_seed) -> loss (tf.function).
    """

    name = "wgan_gp"
    title = "WGAN-GP"

    def __init__(self, trainer):
        super().__init__(trainer)
        t = trainer.train_config
        check_options(t)
        with trainer.strategy.scope():
            self.generator_optimizer = self._adam()
            self.critic_optimizer = self._adam()
            self.generator_optimizer.build(trainer.generator.trainable_variables)
            self.critic_optimizer.build(trainer.discriminator.trainable_variables)
        self._build_steps()

    def _adam(self):
        t = self.trainer.train_config
        return FusedAdam(t.wgan_learning_rate, beta_1=t.wgan_beta_1, beta_2=t.wgan_beta_2)

    def checkpointed(self):
        return {"wgan_generator_optimizer": self.generator_optimizer, "wgan_critic_optimizer": self.critic_optimizer}

    def added_later(self):
        # A shared pre-training checkpoint (another objective's, before the adversarial phase) lacks these.
        return {
            name: f"{name}/_iterations/.ATTRIBUTES/VARIABLE_VALUE"
            for name in ("wgan_generator_optimizer", "wgan_critic_optimizer")
        }

    def upgrade(self, reader, prefix, missing):
        refuse_mid_adversarial(reader, prefix, self.name)

    def after_restore(self):
        rate = self.trainer.train_config.wgan_learning_rate
        self.generator_optimizer.learning_rate.assign(rate)
        self.critic_optimizer.learning_rate.assign(rate)

    def _build_steps(self):
        trainer, t = self.trainer, self.trainer.train_config
        replicas = trainer.replicas
        generator, critic = trainer.generator, trainer.discriminator
        vocabulary = trainer.model_config.vocabulary_size
        reals_spec = tf.TensorSpec([None, trainer.model_config.sequence_length], tf.int32)
        seed_spec = tf.TensorSpec([2], tf.int64)
        static = replicas.jit_compile

        def critic_of(distributions):
            return critic.critic(distributions)  # linear output, dropout off

        def fake_distributions(rows, seed, training):
            """This replica's rows: free-running samples (their own tokens as inputs), and the
            softmax at each position; text: one-hot padding after the end token, as real rows have."""
            offset, total = distribute.replica_rows(rows)
            tokens = sampler.sample_free(generator, rows, seed, row_offset=offset, num_rows=total, static_shapes=static)
            tokens = tf.stop_gradient(trainer.postprocess(tokens))
            probabilities = tf.nn.softmax(tf.cast(generator(tokens, training=training), tf.float32))
            if trainer.end_token is not None:
                mask = trainer.mask(tokens)[:, :, tf.newaxis]
                padding = tf.one_hot(tf.fill(tf.shape(tokens), text.PAD_ID), vocabulary)
                probabilities = mask * probabilities + (1.0 - mask) * padding
            return probabilities, offset, total

        def critic_loss(reals, sample_seed, epsilon_seed):
            rows = tf.shape(reals)[0]
            fake, offset, total = fake_distributions(rows, sample_seed, False)
            fake = tf.stop_gradient(fake)
            real = tf.one_hot(reals, vocabulary)
            epsilon = tf.random.stateless_uniform([total], epsilon_seed)[offset : offset + rows]
            wasserstein = losses.wasserstein_critic_loss(critic_of(real), critic_of(fake), total)
            penalty = losses.gradient_penalty(critic_of, real, fake, epsilon, total)
            return wasserstein + t.gradient_penalty * penalty, penalty

        critic_gradients = replicas.gradients(critic_loss, critic.trainable_variables, trainer.discriminator_loss_scale)

        def critic_replica(reals, sample_seed, epsilon_seed):
            loss, gradients, penalty = critic_gradients(reals, sample_seed, epsilon_seed)
            return loss, gradients, distribute.all_sum(penalty)

        critic_update = replicas.update(
            critic_replica,
            self.critic_optimizer,
            critic.trainable_variables,
            t.discriminator_clip_norm,
            trainer.discriminator_loss_scale,
        )

        @tf.function(input_signature=replicas.signature(reals_spec, seed_spec, seed_spec))
        def critic_step(reals, sample_seed, epsilon_seed):
            return critic_update(reals, sample_seed, epsilon_seed)

        def generator_loss(reals, sample_seed):
            fake, _, total = fake_distributions(tf.shape(reals)[0], sample_seed, True)
            return -tf.reduce_sum(critic_of(fake)) / tf.cast(total, tf.float32), ()

        generator_gradients = replicas.gradients(
            generator_loss, generator.trainable_variables, trainer.generator_loss_scale
        )

        def generator_replica(reals, sample_seed):
            loss, gradients, _ = generator_gradients(reals, sample_seed)
            return loss, gradients, ()

        generator_update = replicas.update(
            generator_replica,
            self.generator_optimizer,
            generator.trainable_variables,
            t.generator_clip_norm,
            trainer.generator_loss_scale,
        )

        @tf.function(input_signature=replicas.signature(reals_spec, seed_spec))
        def generator_step(reals, sample_seed):
            loss, _ = generator_update(reals, sample_seed)
            return loss

        self.critic_step = critic_step
        self.generator_step = generator_step

        def fake_probabilities(rows, seed):
            """(rows, time, vocab) generated distributions and the offset (one device; for tests)."""
            probabilities, offset, _ = fake_distributions(rows, seed, False)
            return probabilities, offset

        self.fake_probabilities = fake_probabilities

    # ---------------------------------------------------------------- phases
    def begin(self):
        t = self.trainer.train_config
        self.trainer.log(
            f"wgan_gp: {t.critic_steps} critic step(s) per generator step, penalty weight {t.gradient_penalty:g}, "
            f"Adam({t.wgan_learning_rate:g}, {t.wgan_beta_1:g}, {t.wgan_beta_2:g})"
        )

    def discriminator_update(self, iteration, step):
        trainer = self.trainer
        loss, penalty = self.critic_step(self.replica_real_batch(), trainer.next_seed(), trainer.next_seed())
        loss = float(loss)
        trainer.check(loss, "adversarial", f"{iteration} (critic step {step})")
        trainer.stop_if_requested()
        return {"critic_loss": loss, "gradient_penalty": float(penalty)}

    def generator_update(self, iteration):
        trainer = self.trainer
        loss = float(self.generator_step(self.replica_real_batch(), trainer.next_seed()))
        trainer.check(loss, "adversarial", f"{iteration} (generator)")
        trainer.stop_if_requested()
        return {"g_loss": loss}

    def iteration(self, iteration):
        t = self.trainer.train_config
        generator, critic = [], []
        for _ in range(t.generator_steps):
            critic += [self.discriminator_update(iteration, len(critic) + 1) for _ in range(t.critic_steps)]
            generator.append(self.generator_update(iteration))
        nan = float("nan")

        def mean(records, name):
            return float(np.mean([r[name] for r in records])) if records else nan

        return {
            "g_loss": mean(generator, "g_loss"),
            "critic_loss": mean(critic, "critic_loss"),
            "gradient_penalty": mean(critic, "gradient_penalty"),
        }
