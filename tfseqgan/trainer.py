"""The SeqGAN training loop: MLE pre-training, discriminator pre-training and
adversarial training, each step a compiled `tf.function`.

Reference: Yu et al., AAAI 2017, Algorithm 1.
"""

import hashlib
import os
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfseqgan import bleu, checkpoints, distribute, faults, losses, metrics, oracle, rollout, sampler, text
from tfseqgan.config import TextConfig
from tfseqgan.discriminator import Discriminator
from tfseqgan.generator import Generator
from tfseqgan.optimizers import FusedAdam

PHASES = ("mle", "discriminator", "adversarial")


class TrainingError(RuntimeError):
    """A run cannot go on (a NaN loss, a run directory in the wrong state)."""


class TrainingInterrupted(RuntimeError):
    """A stop was requested (SIGINT/SIGTERM); `checkpoint` holds the state.

    The checkpoint keeps the weights reached so far, with the phase counters of
    the last completed epoch, round or iteration: `--resume` repeats the
    unfinished one from those weights, so no training is lost.
    """

    def __init__(self, checkpoint):
        super().__init__(f"stopped on request; checkpoint written to {checkpoint}")
        self.checkpoint = checkpoint


def _check_variants(t, replicas):
    """Raises ValueError naming the flag for a variant setting that cannot run."""
    if t.d_loss not in losses.D_LOSSES:
        raise ValueError(f"--d_loss={t.d_loss}: expected one of {', '.join(losses.D_LOSSES)}")
    if t.reward_baseline not in losses.REWARD_BASELINES:
        raise ValueError(f"--reward_baseline={t.reward_baseline}: expected one of {', '.join(losses.REWARD_BASELINES)}")
    if not 0.0 <= t.baseline_decay < 1.0:
        raise ValueError(f"--baseline_decay={t.baseline_decay}: expected a value in [0, 1)")
    if t.entropy_bonus < 0 or t.teacher_forcing_steps < 0:
        raise ValueError("--entropy_bonus and --teacher_forcing_steps must be >= 0")
    if t.d_loss != "standard" and (t.batch_size // replicas) % 2:
        raise ValueError(
            f"--d_loss={t.d_loss} trains D on (real, generated) pairs: --batch_size={t.batch_size} must give "
            f"each of the {replicas} replicas an even number of rows"
        )


REWARD_PRECISIONS = ("auto", "float32", "bfloat16")


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


ROLLOUT_STARTED_KEY = "rollout_started/.ATTRIBUTES/VARIABLE_VALUE"  # absent from checkpoints before 2026-12-03
# Counters that are non-zero once the adversarial phase has taken a step.
ADVERSARIAL_PROGRESS_KEYS = (
    "adversarial_iteration/.ATTRIBUTES/VARIABLE_VALUE",
    "pg_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE",
)


def _finite(value):
    return bool(np.isfinite(value))


class SeqGANTrainer:
    """Owns the models, optimizers, random state and counters of one run.

    Args:
        model_config: `config.ModelConfig`.
        oracle_config: `config.OracleConfig`.
        train_config: `config.TrainConfig`.
        run_config: `config.RunConfig`.
        log: a print-like function for progress lines.
        corpus: a `text.Corpus` to train on instead of the synthetic oracle;
            model_config.vocabulary_size must be its vocabulary's size.
        text_config: `config.TextConfig`, how a corpus run is evaluated.
        strategy: the `tf.distribute.Strategy` to train under (default: the
            default strategy, one device). Models, optimizers and the rollout
            copy live in its scope; every step runs under `strategy.run`.
    """

    def __init__(
        self,
        model_config,
        oracle_config,
        train_config,
        run_config,
        log=print,
        corpus=None,
        text_config=None,
        strategy=None,
    ):
        self.strategy = strategy or tf.distribute.get_strategy()
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.is_chief = distribute.is_chief(self.strategy)
        if train_config.batch_size % self.num_replicas:
            raise ValueError(
                f"--batch_size={train_config.batch_size} must be a multiple of the {self.num_replicas} replicas"
            )
        if train_config.mixed_precision not in ("", "bfloat16", "float16"):
            raise ValueError(f"mixed_precision {train_config.mixed_precision!r}: expected '', bfloat16 or float16")
        _check_variants(train_config, self.num_replicas)
        self.model_config = model_config
        self.oracle_config = oracle_config
        self.train_config = train_config
        self.run_config = run_config
        self.log = log
        self.corpus = corpus
        self.text_config = text_config or TextConfig()
        keras.utils.set_random_seed(train_config.seed)
        m, t = model_config, train_config

        if corpus is not None:
            if m.vocabulary_size != len(corpus.vocabulary) or m.sequence_length != corpus.sequence_length:
                raise ValueError(
                    f"the corpus has {len(corpus.vocabulary)} ids and length {corpus.sequence_length}, but the model "
                    f"config asks for {m.vocabulary_size} and {m.sequence_length}"
                )
            if m.start_token != text.START_ID:
                raise ValueError(f"text runs start every sequence with {text.START} (id {text.START_ID})")
            self.end_token = text.END_ID
            banned = (text.PAD_ID, text.START_ID)
            self.oracle = None
        else:
            self.end_token = None
            banned = ()
            with self.strategy.scope():
                self.oracle = self._build_oracle()
        self.dtype_policy = f"mixed_{t.mixed_precision}" if t.mixed_precision else "float32"
        self.reward_dtype = reward_dtype(t.reward_precision, t.mixed_precision, self.strategy)
        with self.strategy.scope():
            self._build_models(banned)
        self._build_rest()

    def _build_models(self, banned):
        m, t = self.model_config, self.train_config
        self.generator = Generator(
            m.vocabulary_size,
            m.sequence_length,
            embedding_dim=m.generator_embedding_dim,
            hidden_dim=m.generator_hidden_dim,
            start_token=m.start_token,
            init_stddev=m.generator_init_stddev,
            seed=t.seed,
            banned_tokens=banned,
            dtype=self.dtype_policy,
            name="generator",
        )
        self.rollout_policy = rollout.clone_generator(self.generator)
        self.discriminator = Discriminator(
            m.vocabulary_size,
            m.sequence_length,
            embedding_dim=m.discriminator_embedding_dim,
            window_sizes=m.window_sizes,
            num_filters=m.num_filters,
            dropout_rate=m.dropout_rate,
            l2_weight=m.l2_weight,
            seed=t.seed + 1000,
            dtype=self.dtype_policy,
            name="discriminator",
        )
        # Clipping is done on the gradient summed over replicas (see
        # distribute.apply_summed_gradients), not by the optimizers. FusedAdam:
        # Keras' Adam with TensorFlow's one-pass update kernel (optimizers.py).
        self.mle_optimizer = FusedAdam(t.generator_learning_rate)
        self.pg_optimizer = FusedAdam(t.policy_gradient_learning_rate)
        self.discriminator_optimizer = FusedAdam(t.discriminator_learning_rate)
        self.mle_optimizer.build(self.generator.trainable_variables)
        self.pg_optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        float16 = t.mixed_precision == "float16"
        self.generator_loss_scale = distribute.LossScale(name="generator_loss_scale") if float16 else None
        self.discriminator_loss_scale = distribute.LossScale(name="discriminator_loss_scale") if float16 else None

    def _build_oracle(self):
        m, oracle_config = self.model_config, self.oracle_config
        if oracle_config.weights_path:
            arrays = oracle.load_oracle_arrays(oracle_config.weights_path)
            shape = arrays["embedding"].shape + (arrays["Wo"].shape[0],)
            expected = (m.vocabulary_size, m.generator_embedding_dim, m.generator_hidden_dim)
            if shape != expected:
                raise ValueError(
                    f"{oracle_config.weights_path}: oracle has (vocabulary, embedding, hidden) = {shape}, "
                    f"but the flags ask for {expected}"
                )
        else:
            arrays = oracle.random_oracle_arrays(
                m.vocabulary_size, m.generator_embedding_dim, m.generator_hidden_dim, oracle_config.seed
            )
        return oracle.build_oracle(arrays, m.sequence_length, m.start_token)

    def _build_rest(self):
        t, run_config = self.train_config, self.run_config
        # The run's random state and counters are plain (host) variables, the
        # same on every worker: all workers draw the same seeds.
        self.rng = tf.random.Generator.from_seed(t.seed)
        self.mle_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="mle_epoch")
        self.discriminator_round = tf.Variable(0, dtype=tf.int64, trainable=False, name="discriminator_round")
        self.adversarial_iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="adversarial_iteration")
        # Whether the rollout policy was started from the pre-trained generator
        # (beta <- theta when the adversarial phase begins; see start_rollout_policy).
        self.rollout_started = tf.Variable(False, trainable=False, name="rollout_started")
        # --reward_baseline=moving_average: the average per position and the batches it has seen.
        length = self.model_config.sequence_length
        self.reward_baseline = tf.Variable(tf.zeros([length]), trainable=False, name="reward_baseline")
        self.baseline_batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="baseline_batches")
        # What a checkpoint holds, by name (a name is the checkpoint's key).
        self.checkpointed = dict(
            generator=self.generator,
            rollout_policy=self.rollout_policy,
            discriminator=self.discriminator,
            mle_optimizer=self.mle_optimizer,
            pg_optimizer=self.pg_optimizer,
            discriminator_optimizer=self.discriminator_optimizer,
            rng=self.rng,
            mle_epoch=self.mle_epoch,
            discriminator_round=self.discriminator_round,
            adversarial_iteration=self.adversarial_iteration,
            rollout_started=self.rollout_started,
            reward_baseline=self.reward_baseline,
            baseline_batches=self.baseline_batches,
            **{
                name: scale
                for name, scale in (
                    ("generator_loss_scale", self.generator_loss_scale),
                    ("discriminator_loss_scale", self.discriminator_loss_scale),
                )
                if scale is not None
            },
        )
        self.checkpoint = tf.train.Checkpoint(**self.checkpointed)
        self.checkpoint_manager = checkpoints.open_manager(
            self.checkpoint, os.path.join(run_config.run_dir, "checkpoints"), run_config.checkpoints_to_keep, self.log
        )
        self._build_steps()
        self.stop_requested = False
        self.real_data = None
        self.test_data = None
        self.history = []
        self.real_text_record = None
        self.output_dir = run_config.run_dir  # non-chief workers write to a scratch folder instead

    def _mask(self, tokens):
        """Positions that count in losses (batch, time) float32: all, or (text) up to the end token."""
        if self.end_token is None:
            return tf.ones(tf.shape(tokens), tf.float32)
        return text.valid_mask(tokens, self.end_token)

    def _postprocess(self, tokens):
        """Generated ids in the padded form of the real data (text: padding after the end token)."""
        return tokens if self.end_token is None else text.pad_after_end(tokens, self.end_token)

    # ----------------------------------------------------------------- steps
    def _build_steps(self):
        """The compiled steps. Each runs a replica function under
        `strategy.run`: with one device it gets plain tensors, with several
        the per-replica values of a distributed dataset or of another step.
        With --jit_compile the per-replica computation is XLA-compiled;
        the cross-replica sums and the optimizer update stay outside it."""
        strategy, t = self.strategy, self.train_config
        replicas = self.num_replicas
        length = self.model_config.sequence_length
        tokens_spec = tf.TensorSpec([None, length], tf.int32)
        seed_spec = tf.TensorSpec([2], tf.int64)
        static = t.jit_compile  # XLA needs the static-shape decoding loop

        def signature(*specs):  # plain tensors on one replica; distributed values trace by their own specs
            return list(specs) if replicas == 1 else None

        def compiled(fn):
            return tf.function(fn, jit_compile=True) if t.jit_compile else fn

        def scaled(loss, loss_scale):
            return loss if loss_scale is None else loss * loss_scale.scale

        def local(value):  # a value all replicas hold alike (all-reduced), as one tensor
            return distribute.first_local(strategy, value)

        # ---- per-replica computations
        @compiled
        def generator_gradients(tokens, rewards, mask, total):
            """Gradients of this replica's share of the MLE (rewards None) or PG loss."""
            with tf.GradientTape() as tape:
                if rewards is None:
                    loss = losses.mle_loss(self.generator, tokens, training=True, mask=mask, total=total)
                else:
                    loss = losses.policy_gradient_loss(
                        self.generator, tokens, rewards, True, mask, total, entropy_bonus=t.entropy_bonus
                    )
                scaled_loss = scaled(loss, self.generator_loss_scale)
            return loss, tape.gradient(scaled_loss, self.generator.trainable_variables)

        @compiled
        def discriminator_gradients(tokens, labels, seed, offset):
            with tf.GradientTape() as tape:
                loss, _, logits = losses.discriminator_loss(
                    self.discriminator, tokens, labels, True, seed, offset, replicas, kind=t.d_loss
                )
                scaled_loss = scaled(loss, self.discriminator_loss_scale)
            gradients = tape.gradient(scaled_loss, self.discriminator.trainable_variables)
            if t.d_loss == "standard":
                correct = tf.reduce_sum(
                    tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32)
                )
            else:  # pairs ranked right (the real above the generated), counted for both rows
                pairs = tf.reshape(losses.critic_of_logits(logits), [-1, 2])
                correct = 2.0 * tf.reduce_sum(tf.cast(pairs[:, 0] > pairs[:, 1], tf.float32))
            return loss, gradients, correct

        def sample_rows(model):
            @compiled
            def sample(rows, offset, seed):  # rows: (local, time) zeros, its shape static under XLA
                count = tf.shape(rows)[0]
                tokens = sampler.sample_free(
                    model, count, seed, row_offset=offset, num_rows=count * replicas, static_shapes=static
                )
                return self._postprocess(tokens)

            return sample

        samplers = {"generator": sample_rows(self.generator)}
        if self.oracle is not None:
            samplers["oracle"] = sample_rows(self.oracle)

        @compiled
        def rollout_rewards(tokens, seed, offset, reals):
            batch = tf.shape(tokens)[0]
            d, dtype = self.discriminator, self.reward_dtype  # --reward_precision

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
                postprocess=None if self.end_token is None else self._postprocess,
                batch_offset=offset,
                global_batch=batch * replicas,
                static_shapes=static,
            )

        def nll_sums(model):
            @compiled
            def sums(tokens, weights):  # (negative log-likelihood, positions) over weighted rows
                log_probs = model.token_log_probs(tokens, training=False)  # (rows, time)
                mask = self._mask(tokens) * weights[:, tf.newaxis]
                return tf.stack([-tf.reduce_sum(log_probs * mask), tf.reduce_sum(mask)])

            return sums

        nll = {"generator": nll_sums(self.generator)}
        if self.oracle is not None:
            nll["oracle"] = nll_sums(self.oracle)

        @compiled
        def judged_real(tokens, weights):  # (rows judged real, rows)
            real = tf.cast(self.discriminator.real_probability(tokens) > 0.5, tf.float32)
            return tf.stack([tf.reduce_sum(real * weights), tf.reduce_sum(weights)])

        # ---- replica functions: a global loss and the summed gradient
        def generator_replica(tokens, rewards):
            mask = self._mask(tokens)
            total = tf.maximum(distribute.all_sum(tf.reduce_sum(mask)), 1.0)
            batch_mean = tf.zeros([length])  # of the rewards per position, over all replicas' rows
            if rewards is not None and t.reward_baseline != "none":
                batch_mean = losses.batch_mean_per_position(rewards, mask, sums=distribute.all_sum)
                baseline = batch_mean
                if t.reward_baseline == "moving_average":
                    baseline, _ = losses.moving_average_baseline(
                        self.reward_baseline, self.baseline_batches, batch_mean, t.baseline_decay
                    )
                rewards = rewards - baseline  # advantages
            loss, gradients = generator_gradients(tokens, rewards, mask, total)
            loss = distribute.all_sum(loss)
            gradients, finite = distribute.sum_gradients(
                loss, gradients, t.generator_clip_norm, self.generator_loss_scale
            )
            return loss, gradients, finite, batch_mean

        def discriminator_replica(tokens, labels, seed):
            offset, rows = distribute.replica_rows(tf.shape(tokens)[0])
            loss, gradients, correct = discriminator_gradients(tokens, labels, seed, offset)
            loss = distribute.all_sum(loss)
            gradients, finite = distribute.sum_gradients(
                loss, gradients, t.discriminator_clip_norm, self.discriminator_loss_scale
            )
            return loss, gradients, finite, distribute.all_sum(correct) / tf.cast(rows, tf.float32)

        def sample_replica(model, num_samples, seed):
            per_replica = (num_samples + replicas - 1) // replicas
            offset, _ = distribute.replica_rows(per_replica)
            return samplers[model](tf.zeros([per_replica, length], tf.int32), offset, seed)

        def rewards_replica(tokens, seed, reals):
            offset, _ = distribute.replica_rows(tf.shape(tokens)[0])
            return rollout_rewards(tokens, seed, offset, reals)

        # ---- steps; updates are applied in cross-replica context
        def generator_step(optimizer, tokens, rewards):
            loss, gradients, finite, batch_mean = local(strategy.run(generator_replica, args=(tokens, rewards)))
            variables = self.generator.trainable_variables
            distribute.apply_if_finite(optimizer, gradients, variables, finite, self.generator_loss_scale)
            if rewards is not None and t.reward_baseline == "moving_average":
                _, average = losses.moving_average_baseline(
                    self.reward_baseline, self.baseline_batches, batch_mean, t.baseline_decay
                )
                self.reward_baseline.assign(average)
                self.baseline_batches.assign_add(1)
            return loss

        @tf.function(input_signature=signature(tokens_spec))
        def mle_step(tokens):
            return generator_step(self.mle_optimizer, tokens, None)

        @tf.function(input_signature=signature(tokens_spec, tf.TensorSpec([None], tf.int32), seed_spec))
        def discriminator_step(tokens, labels, seed):
            loss, gradients, finite, accuracy = local(strategy.run(discriminator_replica, args=(tokens, labels, seed)))
            variables = self.discriminator.trainable_variables
            optimizer, scale = self.discriminator_optimizer, self.discriminator_loss_scale
            distribute.apply_if_finite(optimizer, gradients, variables, finite, scale)
            return loss, accuracy

        @tf.function(input_signature=signature(tokens_spec, tf.TensorSpec([None, length], tf.float32)))
        def policy_gradient_step(tokens, rewards):
            return generator_step(self.pg_optimizer, tokens, rewards)

        @tf.function(input_signature=signature(tokens_spec, seed_spec, tokens_spec))
        def rewards(tokens, seed, reals):
            """Rollout rewards of each replica's rows; `reals`, real sequences
            the relativistic rewards compare with (every replica gets them all)."""
            return strategy.run(rewards_replica, args=(tokens, seed, reals))

        @tf.function(input_signature=[])
        def update_rollout():
            rollout.update_rollout_weights(self.rollout_policy, self.generator, t.rollout_update_rate)

        @tf.function(input_signature=[])
        def copy_to_rollout():
            rollout.copy_weights(self.rollout_policy, self.generator)

        def sampler_for(model, gather):
            @tf.function(input_signature=[tf.TensorSpec([], tf.int32), seed_spec])
            def generate(num_samples, seed):
                samples = strategy.run(lambda n, s: sample_replica(model, n, s), args=(num_samples, seed))
                if not gather:  # each replica keeps its rows (the adversarial step's batch)
                    return samples
                if replicas > 1:
                    samples = strategy.gather(samples, axis=0)
                return samples[:num_samples]

            return generate

        def summed(fn):
            @tf.function
            def step(tokens, weights):
                return local(strategy.run(lambda x, w: distribute.all_sum(fn(x, w)), args=(tokens, weights)))

            return step

        @tf.function(input_signature=[tokens_spec])
        def real_probability(tokens):
            return local(strategy.run(self.discriminator.real_probability, args=(tokens,)))

        @tf.function
        def mean_over_replicas(values):
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, strategy.run(tf.reduce_mean, args=(values,)), axis=None)

        self.mle_step = mle_step
        self.discriminator_step = discriminator_step
        self.policy_gradient_step = policy_gradient_step
        self.rewards = rewards
        self.update_rollout = update_rollout
        self.copy_to_rollout = copy_to_rollout
        self.generate = sampler_for("generator", gather=True)
        self.generate_per_replica = sampler_for("generator", gather=False)
        self.generate_oracle = None if self.oracle is None else sampler_for("oracle", gather=True)
        self.real_probability = real_probability
        self.nll_step = {name: summed(fn) for name, fn in nll.items()}
        self.judged_real_step = summed(judged_real)
        self.mean_over_replicas = mean_over_replicas

    def next_seed(self):
        """A fresh shape-(2,) int64 seed from the run's checkpointed generator."""
        return self.rng.make_seeds(1)[:, 0]

    def sample(self, num_samples, seed=None, model="generator"):
        fn = self.generate if model == "generator" else self.generate_oracle
        seed = self.next_seed() if seed is None else tf.constant(seed, tf.int64)
        return fn(tf.constant(num_samples, tf.int32), seed)

    # ------------------------------------------------------------------ data
    def make_data(self):
        """Real (training) and held-out (test) sets: the corpus splits, or
        oracle samples drawn with seeds of their own (disjoint draws)."""
        if self.corpus is not None:
            self.real_data, self.test_data = self.corpus.train_ids, self.corpus.test_ids
            self._prepare_text_evaluation()
            return
        o = self.oracle_config
        self.real_data = self.sample(o.num_real_samples, seed=[o.seed, 1], model="oracle")
        self.test_data = self.sample(o.num_test_samples, seed=[o.seed, 2], model="oracle")
        # BLEU of id sequences against the held-out oracle samples (as Texygen scores its oracle runs).
        self.bleu_references = bleu.Reference(self.test_data.numpy().tolist(), self.text_config.bleu_max_order)

    def _prepare_text_evaluation(self):
        """BLEU references (a seeded subset of the held-out split when asked)
        and the real-data ceiling: training lines that are not references,
        scored like generated text."""
        c, corpus = self.text_config, self.corpus
        picker = np.random.default_rng([self.train_config.seed, 11])
        references = corpus.test_tokens
        if c.num_bleu_references and c.num_bleu_references < len(references):
            chosen = np.sort(picker.choice(len(references), c.num_bleu_references, replace=False))
            references = [references[i] for i in chosen]
        self.bleu_references = bleu.Reference(references, c.bleu_max_order)
        excluded = {tuple(r) for r in references}
        candidates = [tokens for tokens in corpus.train_tokens if tuple(tokens) not in excluded]
        count = min(c.num_bleu_samples, len(candidates))
        if count < 2:
            self.log("real data: fewer than 2 training lines outside the references; no ceiling to report")
            return
        real = [candidates[i] for i in np.sort(picker.choice(len(candidates), count, replace=False))]
        self.real_text_record = {"phase": "real", "step": 0, **self._text_scores(real)}
        self.log(
            f"real data ({count} training lines vs {len(references)} references): "
            + "  ".join(f"{k} {v:.4f}" for k, v in self.real_text_record.items() if isinstance(v, float))
        )

    def _text_scores(self, hypotheses):
        """BLEU-n against the references, Self-BLEU-n, and the distinct share."""
        order = self.text_config.bleu_max_order
        scores = {}
        per_sentence = [self.bleu_references.score(h) for h in hypotheses]
        for n in range(2, order + 1):
            scores[f"bleu_{n}"] = float(np.mean([s[n] for s in per_sentence]))
        if len(hypotheses) > 1:
            scores.update({f"self_bleu_{n}": float(v) for n, v in bleu.self_bleu(hypotheses, order).items()})
        distinct = len({tuple(h) for h in hypotheses})
        scores["distinct_samples"] = distinct
        scores["distinct_share"] = distinct / max(1, len(hypotheses))
        return scores

    def _shuffled_batches(self, *tensors):
        """Shuffles the rows of `tensors` together (seeded) and returns them as
        a distributed dataset of global batches of batch_size rows (the
        remainder dropped), and the number of batches."""
        batch = self.train_config.batch_size
        rows = int(tensors[0].shape[0])
        order = tf.argsort(tf.random.stateless_uniform([rows], self.next_seed()))
        shuffled = [tf.gather(tensor, order) for tensor in tensors]
        return distribute.distributed_batches(self.strategy, shuffled, batch), rows // batch

    def _summed_over(self, step, tokens, rows_per_replica=512):
        """Sums `step` (tokens, weights) -> vector over all rows of `tokens`,
        spread over the replicas in batches (the last one padded with
        zero-weight rows)."""
        batch = rows_per_replica * self.num_replicas
        rows = int(tokens.shape[0])
        padded = -(-rows // batch) * batch
        weights = tf.concat([tf.ones([rows]), tf.zeros([padded - rows])], axis=0)
        tokens = tf.pad(tokens, [[0, padded - rows], [0, 0]])
        total = 0.0
        for batch_tokens, batch_weights in distribute.distributed_batches(self.strategy, (tokens, weights), batch):
            total += step(batch_tokens, batch_weights).numpy()
        return total

    def mean_token_nll(self, tokens, model="generator"):
        """Mean per-token NLL of `tokens` under the generator or the oracle
        (text: up to the end token), computed under the strategy."""
        nll, positions = self._summed_over(self.nll_step[model], tokens)
        return float(nll / max(positions, 1.0))

    def share_judged_real(self, tokens):
        """The share of `tokens` rows with D's P(real) > 0.5."""
        real, rows = self._summed_over(self.judged_real_step, tokens)
        return float(real / max(rows, 1.0))

    def _step_seeds(self, count):
        """`count` shape-(2,) seeds from one draw of the run's RNG."""
        return tf.transpose(self.rng.make_seeds(count)).numpy()

    # ------------------------------------------------------------ evaluation
    def evaluate(self, phase, step, extra=None):
        """NLL-oracle, NLL-test and D accuracy; writes and returns a record."""
        t = self.train_config
        began = time.perf_counter()
        eval_seed = [t.seed, 7]  # the same draw each time: curves compare like with like
        record = {"phase": phase, "step": int(step)}
        if self.corpus is None:
            samples = self.sample(t.num_eval_samples, seed=eval_seed)
            record["nll_oracle"] = self.mean_token_nll(samples, model="oracle")
            record["nll_test"] = self.mean_token_nll(self.test_data)
            record.update(self._text_scores(samples[: self.text_config.num_bleu_samples].numpy().tolist()))
        else:
            samples = self.sample(self.text_config.num_bleu_samples, seed=eval_seed)
            record["nll_test"] = self.mean_token_nll(self.test_data)
            record.update(self._text_scores([self.corpus.vocabulary.decode(row) for row in samples.numpy()]))
            self._write_samples(phase, step, samples)
        count = min(t.num_discriminator_eval_samples, int(self.test_data.shape[0]))
        if count:
            fake = samples[:count]
            real = self.test_data[:count]
            record["d_accuracy_real"] = self.share_judged_real(real)
            record["d_accuracy_fake"] = 1.0 - self.share_judged_real(fake)
        record.update(extra or {})
        record["eval_seconds"] = round(time.perf_counter() - began, 3)
        record["elapsed_seconds"] = round(time.perf_counter() - self._started, 3)
        self.history.append(record)
        self.metrics_writer.write(record, self._global_step(phase, step))
        self.log(
            f"[{phase} {step}] "
            + "  ".join(
                f"{k} {v:.4f}"
                for k, v in record.items()
                if isinstance(v, float) and k.startswith(("nll", "d_", "g_", "bleu_2", "self_bleu_2", "distinct"))
            )
        )
        return record

    def _write_samples(self, phase, step, samples):
        """Decoded samples to run_dir/samples/<phase>_<step>.txt; a few on the terminal."""
        lines = self.corpus.decode(samples)
        folder = os.path.join(self.output_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{phase}_{int(step):04d}.txt")
        with open(path + ".tmp", "w", encoding="utf-8") as stream:
            stream.write("\n".join(lines) + "\n")
        os.replace(path + ".tmp", path)
        shown = lines[: self.text_config.num_samples_shown]
        if shown and self.run_config.progress:
            poems = self.corpus.tokenizer == "char"
            self.log(f"samples ({path}):")
            for line in shown:
                self.log(("  " + text.format_poem(line).replace("\n", "\n  ")) if poems else f"  {line}")

    def _global_step(self, phase, step):
        t = self.train_config
        offsets = {
            "mle": 0,
            "discriminator": t.mle_epochs,
            "adversarial": t.mle_epochs + t.discriminator_pretrain_rounds,
        }
        return int(offsets[phase] + step)

    # ---------------------------------------------------------------- phases
    def _check(self, loss, phase, step):
        loss = faults.arrive(f"{phase}_step", loss)
        if not _finite(loss):
            latest = self.checkpoint_manager.latest_checkpoint or "none yet"
            raise TrainingError(
                f"{phase} loss is {float(loss)} at {phase} step {step}; stopped without saving. "
                f"Last good checkpoint: {latest}"
            )

    def _save(self):
        """Writes a checkpoint; it is synced and read back whole before the
        state file names it and before rotation deletes the oldest one.
        Only the chief writes into the run directory: every worker takes part
        in a save (it may need collective ops), the others into a scratch
        folder that is deleted.

        Raises:
            TrainingError: the write failed (a full disk, ...): its partial
                files are removed, and the previous checkpoint is untouched.
        """
        if not self.is_chief:
            with distribute.ScratchDir() as scratch:
                tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1).save()
            return self.checkpoint_manager.latest_checkpoint
        manager = self.checkpoint_manager
        previous = manager.latest_checkpoint
        written = []

        def commit(prefix):  # TensorFlow calls it once the files are complete, before the state file
            written.append(prefix)
            checkpoints.sync(prefix)
            checkpoints.verify(prefix)
            faults.arrive("checkpoint_commit")

        try:
            faults.arrive("checkpoint_write")
            written.append(os.path.join(manager.directory, f"ckpt-{int(self.checkpoint.save_counter) + 1}"))
            return manager.save(options=tf.train.CheckpointOptions(experimental_write_callbacks=[commit]))
        except (OSError, tf.errors.OpError, checkpoints.CheckpointCorrupt) as error:
            prefix = written[-1] if written else None
            cleanup = ""
            if prefix and prefix not in checkpoints.recorded(manager.directory):
                checkpoints.discard(prefix)
                cleanup = "; its partial files are removed"
            raise TrainingError(
                f"could not write checkpoint {prefix or manager.directory} ({checkpoints.describe(error)}){cleanup}. "
                f"Last good checkpoint: {previous or 'none yet'} (untouched); "
                "continue with --resume once the cause is fixed"
            ) from None

    def request_stop(self):
        """Asks the run to checkpoint and raise TrainingInterrupted after the
        step in progress (safe to call from a signal handler)."""
        self.stop_requested = True

    def _stop_if_requested(self):
        if self.stop_requested:
            raise TrainingInterrupted(self._save())

    def _progress(self, target, title):
        if not self.run_config.progress:
            return None
        self.log(title)
        return keras.utils.Progbar(target, verbose=1 if sys.stdout.isatty() else 2, unit_name="step")

    def run_mle_epoch(self, epoch):
        """One pass of MLE steps over the shuffled real data; the mean loss."""
        batches, count = self._shuffled_batches(self.real_data)
        bar = self._progress(count, f"MLE epoch {epoch}/{self.train_config.mle_epochs}")
        total = 0.0
        for index, (tokens,) in enumerate(batches):
            loss = float(self.mle_step(tokens))
            self._check(loss, "mle", f"epoch {epoch} batch {index + 1}")
            self._stop_if_requested()
            total += loss
            if bar:
                bar.update(index + 1, [("g_loss", loss)])
        return total / max(1, count)

    def train_mle(self):
        t = self.train_config
        if int(self.mle_epoch) == 0 and t.mle_epochs > 0:
            self.evaluate("mle", 0)
        while int(self.mle_epoch) < t.mle_epochs:
            epoch = int(self.mle_epoch) + 1
            loss = self.run_mle_epoch(epoch)
            self.mle_epoch.assign(epoch)
            if epoch % t.mle_eval_every == 0 or epoch == t.mle_epochs:
                self.evaluate("mle", epoch, {"g_loss": loss})
                self._save()

    def _paired_batches(self, positives, negatives):
        """Batches of (real, generated) pairs for the relativistic D losses:
        each side shuffled on its own (seeded), then rows alternate real,
        generated, so every batch (and every replica's slice of one) holds
        whole pairs."""
        pairs = min(int(positives.shape[0]), int(negatives.shape[0]))
        sides = []
        for side in (positives, negatives):
            order = tf.argsort(tf.random.stateless_uniform([side.shape[0]], self.next_seed()))
            sides.append(tf.gather(side, order[:pairs]))
        tokens = tf.reshape(tf.stack(sides, axis=1), [2 * pairs, -1])
        labels = tf.tile(tf.constant([1, 0], tf.int32), [pairs])
        batch = self.train_config.batch_size
        return distribute.distributed_batches(self.strategy, [tokens, labels], batch), 2 * pairs // batch

    def run_discriminator_round(self, num_negatives, epochs, phase, step):
        negatives = self.sample(num_negatives)
        positives = self.real_data
        if num_negatives < positives.shape[0]:  # a balanced round: as many real as fake
            order = tf.argsort(tf.random.stateless_uniform([positives.shape[0]], self.next_seed()))
            positives = tf.gather(positives, order[:num_negatives])
        tokens = tf.concat([positives, negatives], axis=0)
        labels = tf.concat([tf.ones([positives.shape[0]], tf.int32), tf.zeros([num_negatives], tf.int32)], axis=0)
        losses_, accuracies = [], []
        for epoch in range(epochs):
            if self.train_config.d_loss == "standard":
                batches, count = self._shuffled_batches(tokens, labels)
            else:
                batches, count = self._paired_batches(positives, negatives)
            seeds = self._step_seeds(count)
            bar = self._progress(count, f"{phase} round {step}, D epoch {epoch + 1}/{epochs}")
            for index, (batch_tokens, batch_labels) in enumerate(batches):
                loss, accuracy = self.discriminator_step(batch_tokens, batch_labels, seeds[index])
                loss, accuracy = float(loss), float(accuracy)
                self._check(loss, phase, f"{step} D epoch {epoch + 1} batch {index + 1}")
                self._stop_if_requested()
                losses_.append(loss)
                accuracies.append(accuracy)
                if bar:
                    bar.update(index + 1, [("d_loss", loss), ("d_acc", accuracy)])
        if not losses_:
            return float("nan"), float("nan")
        return float(np.mean(losses_)), float(np.mean(accuracies))

    def train_discriminator(self):
        t = self.train_config
        while int(self.discriminator_round) < t.discriminator_pretrain_rounds:
            round_ = int(self.discriminator_round) + 1
            d_loss, d_accuracy = self.run_discriminator_round(
                t.discriminator_negatives, t.discriminator_epochs, "discriminator", round_
            )
            self.discriminator_round.assign(round_)
            last = round_ == t.discriminator_pretrain_rounds
            if last or round_ % max(1, t.mle_eval_every) == 0:
                self.evaluate("discriminator", round_, {"d_loss": d_loss, "d_train_accuracy": d_accuracy})
            self._save()  # after the evaluation, as in the other phases: a kill between them repeats the round

    def real_batch(self):
        """batch_size real sequences drawn without replacement (the relativistic
        rewards' comparison); (0, time) when --d_loss=standard (no draw)."""
        t = self.train_config
        if t.d_loss == "standard":
            return tf.zeros([0, self.model_config.sequence_length], tf.int32)
        rows = int(self.real_data.shape[0])
        order = tf.argsort(tf.random.stateless_uniform([rows], self.next_seed()))
        return tf.gather(self.real_data, order[: min(rows, t.batch_size)])

    def run_generator_step(self, iteration):
        """Sample a batch, reward it by rollouts, one PG step, update beta."""
        # Each replica samples, rewards and differentiates its rows of the batch.
        samples = self.generate_per_replica(tf.constant(self.train_config.batch_size, tf.int32), self.next_seed())
        rewards = self.rewards(samples, self.next_seed(), self.real_batch())
        loss = float(self.policy_gradient_step(samples, rewards))
        self._check(loss, "adversarial", f"{iteration} (generator)")
        self.update_rollout()
        self._stop_if_requested()
        return loss, float(self.mean_over_replicas(rewards))

    def run_teacher_forcing(self, iteration):
        """--teacher_forcing_steps MLE steps on real batches drawn without
        replacement (seeded); their mean loss (NaN when there are none)."""
        steps, batch = self.train_config.teacher_forcing_steps, self.train_config.batch_size
        rows = min(int(self.real_data.shape[0]), steps * batch)
        if steps == 0 or rows < batch:
            return float("nan")
        order = tf.argsort(tf.random.stateless_uniform([int(self.real_data.shape[0])], self.next_seed()))
        chosen = tf.gather(self.real_data, order[:rows])
        losses_ = []
        for index, (tokens,) in enumerate(distribute.distributed_batches(self.strategy, [chosen], batch)):
            loss = float(self.mle_step(tokens))
            self._check(loss, "adversarial", f"{iteration} (teacher forcing step {index + 1})")
            self._stop_if_requested()
            losses_.append(loss)
        return float(np.mean(losses_))

    def start_rollout_policy(self):
        """beta <- theta once, when the adversarial phase begins: the rollout
        policy G_beta starts from the pre-trained generator, before the first
        generator step of iteration 1. The flag is checkpointed, so no resume
        copies it again (see `_restore` for checkpoints written before it)."""
        if not bool(self.rollout_started):
            self.copy_to_rollout()
            self.rollout_started.assign(True)

    def train_adversarial(self):
        t = self.train_config
        if int(self.adversarial_iteration) < t.adversarial_iterations:
            self.start_rollout_policy()
            dtype = (self.reward_dtype or tf.as_dtype(self.discriminator.compute_dtype)).name
            self.log(f"rewards: D scores the rollouts in {dtype} (--reward_precision={t.reward_precision})")
        if int(self.adversarial_iteration) == 0 and t.adversarial_iterations > 0:
            self.evaluate("adversarial", 0)
        while int(self.adversarial_iteration) < t.adversarial_iterations:
            iteration = int(self.adversarial_iteration) + 1
            began = time.perf_counter()
            g_losses, mean_rewards, tf_losses = [], [], []
            for _ in range(t.generator_steps):
                loss, mean_reward = self.run_generator_step(iteration)
                g_losses.append(loss)
                mean_rewards.append(mean_reward)
                if t.teacher_forcing_steps:
                    tf_losses.append(self.run_teacher_forcing(iteration))
            d_loss = d_accuracy = float("nan")
            for round_ in range(t.discriminator_rounds):
                d_loss, d_accuracy = self.run_discriminator_round(
                    t.adversarial_discriminator_negatives,
                    t.adversarial_discriminator_epochs,
                    "adversarial",
                    f"{iteration}.{round_ + 1}",
                )
            self.adversarial_iteration.assign(iteration)
            if self.run_config.progress:
                self.log(
                    f"adversarial iteration {iteration}/{t.adversarial_iterations}: g_loss {np.mean(g_losses):.4f} "
                    f"mean_reward {np.mean(mean_rewards):.4f} d_loss {d_loss:.4f} "
                    f"({time.perf_counter() - began:.1f} s)"
                )
            if iteration % t.adversarial_eval_every == 0 or iteration == t.adversarial_iterations:
                extra = {"g_loss": float(np.mean(g_losses)), "mean_reward": float(np.mean(mean_rewards))}
                extra["d_loss"] = d_loss
                if tf_losses:
                    extra["teacher_forcing_loss"] = float(np.mean(tf_losses))
                self.evaluate("adversarial", iteration, extra)
                self._save()

    # ------------------------------------------------------------------- run
    def restore_or_start(self):
        """Restores the newest readable checkpoint with --resume; refuses to
        overwrite a run that has one without it.

        A checkpoint that cannot be read (a truncated or corrupted file, a
        missing one) is reported by a warning naming the file, set aside as
        `*.corrupt`, and the previous one is tried.

        Raises:
            TrainingError: checkpoints but no --resume, or none readable.
        """
        manager = self.checkpoint_manager
        found = checkpoints.candidates(manager, self.log)
        if found and not self.run_config.resume:
            raise TrainingError(
                f"{self.run_config.run_dir} already holds a run (checkpoint {found[0]}); "
                "pass --resume to continue it or choose another --run_dir"
            )
        broken = []
        for prefix in found:
            try:
                checkpoints.verify(prefix)
            except checkpoints.CheckpointCorrupt as error:
                self.log(f"warning: checkpoint {prefix} is damaged: {error}; trying the previous one")
                broken.append((prefix, error))
                continue
            self._restore(prefix)
            break
        else:
            if broken:
                raise TrainingError(
                    f"no readable checkpoint in {manager.directory}: "
                    + "; ".join(str(error) for _, error in broken)
                    + ". Start afresh in another --run_dir"
                )
            return None
        if broken:
            self._set_aside(broken, prefix)
        # The learning rates are optimizer variables, so the checkpoint brought
        # back the old ones: the flags of this run win.
        self.mle_optimizer.learning_rate.assign(self.train_config.generator_learning_rate)
        self.pg_optimizer.learning_rate.assign(self.train_config.policy_gradient_learning_rate)
        self.discriminator_optimizer.learning_rate.assign(self.train_config.discriminator_learning_rate)
        self.log(
            f"resumed from {prefix}: MLE epoch {int(self.mle_epoch)}, D round {int(self.discriminator_round)}, "
            f"adversarial iteration {int(self.adversarial_iteration)}"
        )
        return prefix

    def _restore(self, prefix):
        """Restores checkpoint `prefix`; every object of the run must be in it,
        except `rollout_started`, which versions before 2026-12-03 did not
        write (it then stays False: see start_rollout_policy)."""
        if tf.train.load_checkpoint(prefix).has_tensor(ROLLOUT_STARTED_KEY):
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
            return
        older = tf.train.Checkpoint(**{k: v for k, v in self.checkpointed.items() if k != "rollout_started"})
        older.restore(prefix).assert_existing_objects_matched()
        self.checkpoint.save_counter.assign(older.save_counter)  # later saves continue its numbering
        reader = tf.train.load_checkpoint(prefix)
        steps = [int(reader.get_tensor(key)) for key in ADVERSARIAL_PROGRESS_KEYS if reader.has_tensor(key)]
        mid_adversarial = any(steps)
        # Taken before the adversarial phase: beta <- theta when it begins, as
        # now. Taken during it: that beta started from the untrained generator,
        # and it is kept (the run continues as it began).
        self.rollout_started.assign(mid_adversarial)
        if mid_adversarial:
            self.log(
                f"warning: {prefix} was written mid-adversarial by a version whose rollout policy started from "
                "the untrained generator; its rollout policy is kept as it is"
            )

    def _set_aside(self, broken, restored):
        """Moves broken checkpoints out of the way (`*.corrupt`), makes the
        state file name the restored one as the newest, and reopens the
        manager on it, so later saves and rotation never count them."""
        directory = self.checkpoint_manager.directory
        bad = {os.path.basename(prefix) for prefix, _ in broken}
        for prefix, _ in broken:
            checkpoints.set_aside(prefix)
        kept = [
            p
            for p in checkpoints.recorded(directory) or [restored]
            if os.path.basename(p) not in bad and checkpoints.number(p) <= checkpoints.number(restored)
        ]
        checkpoints.record(directory, sorted(set(kept) | {restored}, key=checkpoints.number))
        self.checkpoint_manager = checkpoints.open_manager(
            self.checkpoint, directory, self.run_config.checkpoints_to_keep, self.log
        )
        self.log(f"set aside {', '.join(sorted(bad))} in {directory} as *{checkpoints.CORRUPT_SUFFIX}")

    def run(self):
        """Runs (or resumes) all three phases; returns the evaluation records."""
        os.makedirs(self.run_config.run_dir, exist_ok=True)
        self._started = time.perf_counter()
        resumed = self.restore_or_start()
        if not self.is_chief:  # metrics and samples of other workers go to a scratch copy
            self.output_dir = tempfile.mkdtemp(prefix=f"tfseqgan-{distribute.worker_name(self.strategy)}-")
            chief_metrics = os.path.join(self.run_config.run_dir, metrics.METRICS_FILE)
            if resumed and os.path.exists(chief_metrics):
                shutil.copy(chief_metrics, self.output_dir)
        self.metrics_writer = metrics.MetricsWriter(self.output_dir)
        if resumed:
            position = {
                p: int(v)
                for p, v in zip(PHASES, (self.mle_epoch, self.discriminator_round, self.adversarial_iteration))
            }
            # Records past the checkpoint (or of a phase that restarts at 0) are re-made.
            self.metrics_writer.truncate_after(lambda r: 0 < position[r["phase"]] and r["step"] <= position[r["phase"]])
            self.history = metrics.read_metrics(self.metrics_writer.path)
        elif os.path.exists(self.metrics_writer.path):
            os.remove(self.metrics_writer.path)
        self.make_data()
        self.train_mle()
        self.train_discriminator()
        self.train_adversarial()
        if not self.is_chief:
            shutil.rmtree(self.output_dir, ignore_errors=True)
        return self.history

    def weights_digest(self):
        """SHA-256 over the generator's, rollout copy's and discriminator's
        weights: equal on every worker of a run that stays in sync."""
        digest = hashlib.sha256()
        for model in (self.generator, self.rollout_policy, self.discriminator):
            for weight in model.weights:
                digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
        return digest.hexdigest()
