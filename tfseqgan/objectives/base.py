"""What the training loop asks of an adversarial method."""

import numpy as np
import tensorflow as tf


class Objective:
    """One adversarial method: its extra models and state, and its generator
    and discriminator updates. The loop (`training.loop.Trainer`) owns the
    generator, the discriminator, their MLE and D optimizers, the data, the
    schedule, evaluation and checkpoints; an objective reads them from
    `self.trainer` and adds what its method needs.

    A subclass implements `generator_update` and usually
    `discriminator_update`; the rest has defaults. Its compiled steps are
    written for one replica's rows and built with `trainer.replicas`
    (`Replicas.gradients` and `Replicas.update`), never with `strategy.run`.

    Args:
        trainer: the `training.loop.Trainer`. The objective is built outside
            the strategy's scope (open `trainer.strategy.scope()` for models
            and optimizers; host variables go outside it), after the shared
            models, optimizers, RNG, counters, steps and evaluator, and
            before the checkpoint, which then holds `checkpointed()`.
    """

    name = ""  # the --objective value
    title = "adversarial"  # how the report and the plot name it

    def __init__(self, trainer):
        self.trainer = trainer

    def checkpointed(self):
        """The objective's state by checkpoint key: models, optimizers, variables."""
        return {}

    def models(self):
        """Models the objective adds (for weight digests), by name."""
        return {}

    def added_later(self):
        """{name: checkpoint tensor key} of state that older checkpoints lack;
        such a checkpoint is restored without it and `upgrade` is called."""
        return {}

    def upgrade(self, reader, prefix, missing):
        """Sets the state named in `missing` after restoring an older checkpoint.

        Args:
            reader: a `tf.train.CheckpointReader` of `prefix`.
            prefix: the checkpoint's path prefix.
            missing: names from `added_later` that it lacks.
        """

    def after_restore(self):
        """Called after any restore: reapply this run's flags (learning rates)."""

    def begin(self):
        """Called once per process when the adversarial phase has iterations left, before the first."""

    def generator_update(self, iteration):
        """One generator update; returns its metrics {name: float}."""
        raise NotImplementedError

    def discriminator_update(self, iteration, round_):
        """One discriminator (or critic) update; returns its metrics {name: float}."""
        return {}

    def replica_real_batch(self):
        """One global batch of real sequences drawn without replacement
        (seeded by the run's RNG), split over the replicas: what an
        objective's step takes as its real rows."""
        trainer = self.trainer
        batch, rows = trainer.train_config.batch_size, int(trainer.real_data.shape[0])
        order = tf.argsort(tf.random.stateless_uniform([rows], trainer.next_seed()))
        chosen = tf.gather(trainer.real_data, order[:batch])
        (reals,) = next(iter(trainer.replicas.batches([chosen], batch)))
        return reals

    def iteration(self, iteration):
        """One adversarial iteration: --generator_steps generator updates,
        then --discriminator_rounds discriminator updates. Returns the
        metrics recorded for it: each generator metric averaged over the
        steps, and the last discriminator update's metrics."""
        t = self.trainer.train_config
        generator = [self.generator_update(iteration) for _ in range(t.generator_steps)]
        discriminator = {}
        for round_ in range(t.discriminator_rounds):
            discriminator = self.discriminator_update(iteration, round_ + 1)
        return {**mean_of_records(generator), **discriminator}


def mean_of_records(records):
    """{name: mean over the records that have it} in first-seen order."""
    names = list(dict.fromkeys(name for record in records for name in record))
    return {name: float(np.mean([r[name] for r in records if name in r])) for name in names}
