"""Gumbel-softmax training (GSGAN; RelGAN's training signal, with our LSTM
generator): the generator's relaxed samples softmax((l + g) * beta), each fed
back as the next input, go through D, and D's gradient reaches every
generator weight; no rollouts, no policy gradient.

An iteration is --generator_steps generator steps and then
--discriminator_steps D steps, each on one batch: fresh relaxed samples
against as many real sequences (one-hot), with --d_loss (RelGAN uses the
relativistic loss). The inverse temperature beta goes from 1 to
--gumbel_max_inverse_temperature over the adversarial iterations
(--gumbel_schedule). Sampling, evaluation and the export draw hard tokens
from the same generator, so nothing downstream changes.
"""

import numpy as np
import tensorflow as tf

from tfseqgan import distribute, gumbel, losses, text
from tfseqgan.objectives.base import Objective
from tfseqgan.optimizers import FusedAdam


def check_options(t):
    """Raises ValueError naming the flag for a setting of this objective that cannot run."""
    gumbel.inverse_temperature(t.gumbel_schedule, 0, 1, t.gumbel_max_inverse_temperature)
    if t.gumbel_feedback not in gumbel.FEEDBACKS:
        raise ValueError(f"--gumbel_feedback={t.gumbel_feedback}: expected one of {', '.join(gumbel.FEEDBACKS)}")
    if t.discriminator_steps < 0:
        raise ValueError(f"--discriminator_steps={t.discriminator_steps}: expected a value >= 0")
    if not t.adversarial_generator_learning_rate > 0:
        raise ValueError(
            f"--adversarial_generator_learning_rate={t.adversarial_generator_learning_rate}: expected a value > 0"
        )


def refuse_mid_adversarial(reader, prefix, name):
    """An objective's state is missing from `prefix`: fine before the adversarial
    phase (pre-training is shared), a ValueError (one line) after it."""
    key = "adversarial_iteration/.ATTRIBUTES/VARIABLE_VALUE"
    if reader.has_tensor(key) and int(reader.get_tensor(key)) > 0:
        raise ValueError(
            f"{prefix} was written mid-adversarial by another objective; --objective={name} can only start "
            "from a checkpoint taken before the adversarial phase"
        )


class Gumbel(Objective):
    """Attributes:
    generator_optimizer: Adam of the generator's adversarial steps.
    generator_step(reals, seed, beta) -> loss (tf.function).
    discriminator_step(reals, seed, dropout_seed, beta) -> loss (tf.function).
    """

    name = "gumbel"
    title = "Gumbel"

    def __init__(self, trainer):
        super().__init__(trainer)
        t = trainer.train_config
        check_options(t)
        with trainer.strategy.scope():
            self.generator_optimizer = FusedAdam(t.adversarial_generator_learning_rate)
            self.generator_optimizer.build(trainer.generator.trainable_variables)
        self._build_steps()

    def checkpointed(self):
        return {"gumbel_generator_optimizer": self.generator_optimizer}

    def added_later(self):
        # A checkpoint of another objective taken before the adversarial phase (a shared
        # pre-training) lacks this optimizer: `upgrade` accepts it then.
        return {"gumbel_generator_optimizer": "gumbel_generator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"}

    def upgrade(self, reader, prefix, missing):
        refuse_mid_adversarial(reader, prefix, self.name)

    def after_restore(self):
        self.generator_optimizer.learning_rate.assign(self.trainer.train_config.adversarial_generator_learning_rate)

    def _build_steps(self):
        trainer, t = self.trainer, self.trainer.train_config
        replicas = trainer.replicas
        generator, discriminator = trainer.generator, trainer.discriminator
        length, vocabulary = trainer.model_config.sequence_length, trainer.model_config.vocabulary_size
        reals_spec = tf.TensorSpec([None, length], tf.int32)
        seed_spec = tf.TensorSpec([2], tf.int64)
        beta_spec = tf.TensorSpec([], tf.float32)

        def relaxed(rows, seed, beta, training):
            """This replica's rows of a global batch of relaxed samples; text:
            one-hot padding after the end token (argmax), as real rows have."""
            offset, total = distribute.replica_rows(rows)
            samples, hard = gumbel.relaxed_sequences(
                generator, rows, seed, beta, training, offset, total, feedback=t.gumbel_feedback
            )
            if trainer.end_token is not None:
                mask = trainer.mask(trainer.postprocess(hard))[:, :, tf.newaxis]
                padding = tf.one_hot(tf.fill(tf.shape(hard), text.PAD_ID), vocabulary, dtype=samples.dtype)
                samples = mask * samples + (1.0 - mask) * padding
            return samples, total

        def generator_loss(reals, seed, beta):
            samples, total = relaxed(tf.shape(reals)[0], seed, beta, True)
            fake = discriminator.critic(samples)
            real = discriminator.critic(reals) if t.d_loss != "standard" else None
            return losses.generator_adversarial_loss(t.d_loss, real, fake, total), ()

        generator_gradients = replicas.gradients(
            generator_loss, generator.trainable_variables, trainer.generator_loss_scale
        )

        def generator_replica(reals, seed, beta):
            loss, gradients, _ = generator_gradients(reals, seed, beta)
            return loss, gradients, ()

        generator_update = replicas.update(
            generator_replica,
            self.generator_optimizer,
            generator.trainable_variables,
            t.generator_clip_norm,
            trainer.generator_loss_scale,
        )

        @tf.function(input_signature=replicas.signature(reals_spec, seed_spec, beta_spec))
        def generator_step(reals, seed, beta):
            loss, _ = generator_update(reals, seed, beta)
            return loss

        def discriminator_loss(reals, seed, dropout_seed, beta):
            rows = tf.shape(reals)[0]
            samples, _ = relaxed(rows, seed, beta, False)
            fake = tf.stop_gradient(samples)
            real = tf.one_hot(reals, vocabulary, dtype=fake.dtype)
            # Pairs real, fake, real, fake, ... (every loss): a replica's rows are then the rows
            # of the whole batch they would be on one device, dropout masks included.
            inputs = tf.reshape(tf.stack([real, fake], axis=1), [2 * rows, length, vocabulary])
            labels = tf.tile(tf.constant([1, 0], tf.int32), [rows])
            offset, _ = distribute.replica_rows(2 * rows)
            loss, _, _ = losses.discriminator_loss(
                discriminator, inputs, labels, True, dropout_seed, offset, replicas.count, kind=t.d_loss
            )
            return loss, ()

        discriminator_gradients = replicas.gradients(
            discriminator_loss, discriminator.trainable_variables, trainer.discriminator_loss_scale
        )

        def discriminator_replica(reals, seed, dropout_seed, beta):
            loss, gradients, _ = discriminator_gradients(reals, seed, dropout_seed, beta)
            return loss, gradients, ()

        discriminator_update = replicas.update(
            discriminator_replica,
            trainer.discriminator_optimizer,
            discriminator.trainable_variables,
            t.discriminator_clip_norm,
            trainer.discriminator_loss_scale,
        )

        @tf.function(input_signature=replicas.signature(reals_spec, seed_spec, seed_spec, beta_spec))
        def discriminator_step(reals, seed, dropout_seed, beta):
            loss, _ = discriminator_update(reals, seed, dropout_seed, beta)
            return loss

        self.generator_step = generator_step
        self.discriminator_step = discriminator_step

        def fake_rows(rows, seed, beta):
            """(rows, time, vocab) relaxed samples as D sees them (one device; for tests)."""
            return relaxed(rows, seed, beta, False)[0]

        self.fake_rows = fake_rows

    # ---------------------------------------------------------------- phases
    def beta(self, iteration):
        """beta of adversarial iteration `iteration` (1-based): 1 at the first, as RelGAN's schedule."""
        t = self.trainer.train_config
        return gumbel.inverse_temperature(
            t.gumbel_schedule, iteration - 1, t.adversarial_iterations, t.gumbel_max_inverse_temperature
        )

    def begin(self):
        t = self.trainer.train_config
        self.trainer.log(
            f"gumbel: inverse temperature 1 -> {t.gumbel_max_inverse_temperature:g} ({t.gumbel_schedule}), "
            f"{t.gumbel_feedback} feedback, D loss {t.d_loss}, {t.discriminator_steps} D step(s) per iteration"
        )

    def generator_update(self, iteration):
        trainer = self.trainer
        beta = tf.constant(self.beta(iteration), tf.float32)
        loss = float(self.generator_step(self.replica_real_batch(), trainer.next_seed(), beta))
        trainer.check(loss, "adversarial", f"{iteration} (generator)")
        trainer.stop_if_requested()
        return {"g_loss": loss}

    def discriminator_update(self, iteration, step):
        trainer = self.trainer
        beta = tf.constant(self.beta(iteration), tf.float32)
        reals = self.replica_real_batch()
        loss = float(self.discriminator_step(reals, trainer.next_seed(), trainer.next_seed(), beta))
        trainer.check(loss, "adversarial", f"{iteration} (D step {step})")
        trainer.stop_if_requested()
        return {"d_loss": loss}

    def iteration(self, iteration):
        t = self.trainer.train_config
        generator = [self.generator_update(iteration) for _ in range(t.generator_steps)]
        discriminator = [self.discriminator_update(iteration, step + 1) for step in range(t.discriminator_steps)]
        nan = float("nan")
        return {
            "g_loss": float(np.mean([r["g_loss"] for r in generator])) if generator else nan,
            "d_loss": float(np.mean([r["d_loss"] for r in discriminator])) if discriminator else nan,
            "inverse_temperature": self.beta(iteration),
        }
