"""SeqGAN (Yu et al., AAAI 2017, Algorithm 1): the generator is a policy
trained by REINFORCE, each token rewarded by D's judgement of Monte-Carlo
rollouts of its prefix; the rollouts are run by G_beta, a delayed copy of
the generator (beta <- r * beta + (1 - r) * theta after each generator step),
which starts from the pre-trained generator.

Options of this objective: --d_loss (the reward: P(real), or a relativistic
comparison with a batch of real sequences), --reward_baseline, --entropy_bonus,
--teacher_forcing_steps (MLE steps on real batches after each generator step),
--num_rollouts, --rollout_update_rate, --reward_precision.
"""

import numpy as np
import tensorflow as tf

from tfseqgan import distribute, losses, rollout
from tfseqgan.objectives.base import Objective
from tfseqgan.optimizers import FusedAdam
from tfseqgan.training.steps import token_mask_total

REWARD_PRECISIONS = ("auto", "float32", "bfloat16")

ROLLOUT_STARTED_KEY = "rollout_started/.ATTRIBUTES/VARIABLE_VALUE"  # absent from checkpoints before 2026-12-03
# Counters that are non-zero once the adversarial phase has taken a step.
ADVERSARIAL_PROGRESS_KEYS = (
    "adversarial_iteration/.ATTRIBUTES/VARIABLE_VALUE",
    "pg_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE",
)


def reward_dtype(reward_precision, mixed_precision, strategy):
    """The dtype D's CNN and highway score rollouts in, or None for the
    model's compute dtype: `auto` picks bfloat16 on devices with bfloat16
    matrix units unless mixed precision already sets the compute dtype."""
    if reward_precision not in REWARD_PRECISIONS:
        raise ValueError(f"--reward_precision={reward_precision}: expected one of {', '.join(REWARD_PRECISIONS)}")
    if reward_precision == "auto":
        if mixed_precision or not distribute.has_bfloat16_matrix_units(strategy):
            return None
        return tf.bfloat16
    return tf.as_dtype(reward_precision)


def check_options(t):
    """Raises ValueError naming the flag for a setting of this objective that cannot run."""
    if t.reward_baseline not in losses.REWARD_BASELINES:
        raise ValueError(f"--reward_baseline={t.reward_baseline}: expected one of {', '.join(losses.REWARD_BASELINES)}")
    if not 0.0 <= t.baseline_decay < 1.0:
        raise ValueError(f"--baseline_decay={t.baseline_decay}: expected a value in [0, 1)")
    if t.entropy_bonus < 0 or t.teacher_forcing_steps < 0:
        raise ValueError("--entropy_bonus and --teacher_forcing_steps must be >= 0")


class SeqGAN(Objective):
    """Policy gradient with rollout rewards and the delayed rollout policy.

    Attributes:
        rollout_policy: G_beta, a Generator.
        pg_optimizer: the policy-gradient optimizer (MLE has its own).
        rollout_started: whether beta <- theta was done (checkpointed).
        reward_baseline, baseline_batches: --reward_baseline=moving_average's
            per-position average and the batches it has seen.
        reward_dtype: the dtype D scores rollouts in (None: its compute dtype).
        policy_gradient_step(tokens, rewards) -> loss (tf.function).
        rewards(tokens, seed, reals) -> per-replica (rows, time) rewards.
        update_rollout(), copy_to_rollout(): the delayed update and beta <- theta.
    """

    name = "seqgan"
    title = "SeqGAN"

    def __init__(self, trainer):
        super().__init__(trainer)
        t = trainer.train_config
        check_options(t)
        self.reward_dtype = reward_dtype(t.reward_precision, t.mixed_precision, trainer.strategy)
        with trainer.strategy.scope():
            self.rollout_policy = rollout.clone_generator(trainer.generator)
            self.pg_optimizer = FusedAdam(t.policy_gradient_learning_rate)
            self.pg_optimizer.build(trainer.generator.trainable_variables)
        # Host variables, the same on every worker (as the loop's counters).
        # Whether the rollout policy was started from the pre-trained generator
        # (beta <- theta when the adversarial phase begins; see begin).
        self.rollout_started = tf.Variable(False, trainable=False, name="rollout_started")
        length = trainer.model_config.sequence_length
        self.reward_baseline = tf.Variable(tf.zeros([length]), trainable=False, name="reward_baseline")
        self.baseline_batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="baseline_batches")
        self._build_steps()

    def checkpointed(self):
        return dict(
            rollout_policy=self.rollout_policy,
            pg_optimizer=self.pg_optimizer,
            rollout_started=self.rollout_started,
            reward_baseline=self.reward_baseline,
            baseline_batches=self.baseline_batches,
        )

    def models(self):
        return {"rollout_policy": self.rollout_policy}

    # ----------------------------------------------------------------- steps
    def _build_steps(self):
        trainer, t = self.trainer, self.trainer.train_config
        replicas = trainer.replicas
        generator = trainer.generator
        length = trainer.model_config.sequence_length
        tokens_spec = tf.TensorSpec([None, length], tf.int32)
        seed_spec = tf.TensorSpec([2], tf.int64)

        def pg_loss(tokens, advantages, mask, total):
            loss = losses.policy_gradient_loss(
                generator, tokens, advantages, True, mask, total, entropy_bonus=t.entropy_bonus
            )
            return loss, ()

        pg_gradients = replicas.gradients(pg_loss, generator.trainable_variables, trainer.generator_loss_scale)

        def pg_replica(tokens, rewards):
            mask = trainer.mask(tokens)
            total = token_mask_total(mask)
            batch_mean = tf.zeros([length])  # of the rewards per position, over all replicas' rows
            if t.reward_baseline != "none":
                batch_mean = losses.batch_mean_per_position(rewards, mask, sums=distribute.all_sum)
                baseline = batch_mean
                if t.reward_baseline == "moving_average":
                    baseline, _ = losses.moving_average_baseline(
                        self.reward_baseline, self.baseline_batches, batch_mean, t.baseline_decay
                    )
                rewards = rewards - baseline  # advantages
            loss, gradients, _ = pg_gradients(tokens, rewards, mask, total)
            return loss, gradients, batch_mean

        pg_update = replicas.update(
            pg_replica,
            self.pg_optimizer,
            generator.trainable_variables,
            t.generator_clip_norm,
            trainer.generator_loss_scale,
        )

        @tf.function(input_signature=replicas.signature(tokens_spec, tf.TensorSpec([None, length], tf.float32)))
        def policy_gradient_step(tokens, rewards):
            loss, batch_mean = pg_update(tokens, rewards)
            if t.reward_baseline == "moving_average":
                _, average = losses.moving_average_baseline(
                    self.reward_baseline, self.baseline_batches, batch_mean, t.baseline_decay
                )
                self.reward_baseline.assign(average)
                self.baseline_batches.assign_add(1)
            return loss

        @replicas.compiled
        def rollout_rewards(tokens, seed, offset, reals):
            batch = tf.shape(tokens)[0]
            d, dtype = trainer.discriminator, self.reward_dtype  # --reward_precision

            def reward_fn(rows):
                return d.real_probability(rows, dtype)

            def completion_reward_fn(sequences, completions):
                return d.real_probability_of_completions(sequences, completions, dtype)

            if t.d_loss != "standard":  # relative to the real sequences `reals`
                real_critic = d.critic(reals, dtype)

                def reward_fn(rows):
                    return losses.rewards_from_critic(t.d_loss, d.critic(rows, dtype), real_critic)

                def completion_reward_fn(sequences, completions):
                    critic = d.critic_of_completions(sequences, completions, dtype)
                    return losses.rewards_from_critic(t.d_loss, critic, real_critic)

            return rollout.compute_rewards(
                self.rollout_policy,
                reward_fn,
                tokens,
                t.num_rollouts,
                seed,
                completion_reward_fn=completion_reward_fn,
                postprocess=None if trainer.end_token is None else trainer.postprocess,
                batch_offset=offset,
                global_batch=batch * replicas.count,
                static_shapes=replicas.jit_compile,
            )

        def rewards_replica(tokens, seed, reals):
            offset, _ = distribute.replica_rows(tf.shape(tokens)[0])
            return rollout_rewards(tokens, seed, offset, reals)

        @tf.function(input_signature=replicas.signature(tokens_spec, seed_spec, tokens_spec))
        def rewards(tokens, seed, reals):
            """Rollout rewards of each replica's rows; `reals`, real sequences
            the relativistic rewards compare with (every replica gets them all)."""
            return replicas.run(rewards_replica, args=(tokens, seed, reals))

        @tf.function(input_signature=[])
        def update_rollout():
            rollout.update_rollout_weights(self.rollout_policy, generator, t.rollout_update_rate)

        @tf.function(input_signature=[])
        def copy_to_rollout():
            rollout.copy_weights(self.rollout_policy, generator)

        self.policy_gradient_step = policy_gradient_step
        self.rewards = rewards
        self.update_rollout = update_rollout
        self.copy_to_rollout = copy_to_rollout

    # ---------------------------------------------------------------- phases
    def start_rollout_policy(self):
        """beta <- theta once, when the adversarial phase begins: the rollout
        policy G_beta starts from the pre-trained generator, before the first
        generator step of iteration 1. The flag is checkpointed, so no resume
        copies it again (see `upgrade` for checkpoints written before it)."""
        if not bool(self.rollout_started):
            self.copy_to_rollout()
            self.rollout_started.assign(True)

    def begin(self):
        self.start_rollout_policy()
        t = self.trainer.train_config
        dtype = (self.reward_dtype or tf.as_dtype(self.trainer.discriminator.compute_dtype)).name
        self.trainer.log(f"rewards: D scores the rollouts in {dtype} (--reward_precision={t.reward_precision})")

    def real_batch(self):
        """batch_size real sequences drawn without replacement (the relativistic
        rewards' comparison); (0, time) when --d_loss=standard (no draw)."""
        trainer, t = self.trainer, self.trainer.train_config
        if t.d_loss == "standard":
            return tf.zeros([0, trainer.model_config.sequence_length], tf.int32)
        rows = int(trainer.real_data.shape[0])
        order = tf.argsort(tf.random.stateless_uniform([rows], trainer.next_seed()))
        return tf.gather(trainer.real_data, order[: min(rows, t.batch_size)])

    def run_generator_step(self, iteration):
        """Sample a batch, reward it by rollouts, one PG step, update beta;
        returns (PG loss, mean reward)."""
        trainer = self.trainer
        # Each replica samples, rewards and differentiates its rows of the batch.
        samples = trainer.steps.generate_per_replica(
            tf.constant(trainer.train_config.batch_size, tf.int32), trainer.next_seed()
        )
        rewards = self.rewards(samples, trainer.next_seed(), self.real_batch())
        loss = float(self.policy_gradient_step(samples, rewards))
        trainer.check(loss, "adversarial", f"{iteration} (generator)")
        self.update_rollout()
        trainer.stop_if_requested()
        return loss, float(trainer.steps.mean_over_replicas(rewards))

    def generator_update(self, iteration):
        loss, mean_reward = self.run_generator_step(iteration)
        metrics = {"g_loss": loss, "mean_reward": mean_reward}
        if self.trainer.train_config.teacher_forcing_steps:
            metrics["teacher_forcing_loss"] = self.run_teacher_forcing(iteration)
        return metrics

    def run_teacher_forcing(self, iteration):
        """--teacher_forcing_steps MLE steps on real batches drawn without
        replacement (seeded); their mean loss (NaN when there are none)."""
        trainer = self.trainer
        steps, batch = trainer.train_config.teacher_forcing_steps, trainer.train_config.batch_size
        rows = min(int(trainer.real_data.shape[0]), steps * batch)
        if steps == 0 or rows < batch:
            return float("nan")
        order = tf.argsort(tf.random.stateless_uniform([int(trainer.real_data.shape[0])], trainer.next_seed()))
        chosen = tf.gather(trainer.real_data, order[:rows])
        losses_ = []
        for index, (tokens,) in enumerate(trainer.replicas.batches([chosen], batch)):
            loss = float(trainer.mle_step(tokens))
            trainer.check(loss, "adversarial", f"{iteration} (teacher forcing step {index + 1})")
            trainer.stop_if_requested()
            losses_.append(loss)
        return float(np.mean(losses_))

    def discriminator_update(self, iteration, round_):
        t = self.trainer.train_config
        d_loss, _ = self.trainer.run_discriminator_round(
            t.adversarial_discriminator_negatives,
            t.adversarial_discriminator_epochs,
            "adversarial",
            f"{iteration}.{round_}",
        )
        return {"d_loss": d_loss}

    def iteration(self, iteration):
        nan = float("nan")
        metrics = {"g_loss": nan, "mean_reward": nan, "d_loss": nan}  # the record's order
        metrics.update(super().iteration(iteration))
        return metrics

    # ----------------------------------------------------------- checkpoints
    def added_later(self):
        return {"rollout_started": ROLLOUT_STARTED_KEY}

    def upgrade(self, reader, prefix, missing):
        """A checkpoint from before `rollout_started` existed. Taken before the
        adversarial phase: beta <- theta when it begins, as now. Taken during
        it: that beta started from the untrained generator, and it is kept
        (the run continues as it began)."""
        steps = [int(reader.get_tensor(key)) for key in ADVERSARIAL_PROGRESS_KEYS if reader.has_tensor(key)]
        mid_adversarial = any(steps)
        self.rollout_started.assign(mid_adversarial)
        if mid_adversarial:
            self.trainer.log(
                f"warning: {prefix} was written mid-adversarial by a version whose rollout policy started from "
                "the untrained generator; its rollout policy is kept as it is"
            )

    def after_restore(self):
        self.pg_optimizer.learning_rate.assign(self.trainer.train_config.policy_gradient_learning_rate)
