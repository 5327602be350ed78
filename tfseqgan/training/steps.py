"""The compiled steps every objective shares: an MLE step of the generator,
a discriminator step, free sampling, and D's P(real).

MLE pre-training and D pre-training are made of these, and objectives reuse
them (SeqGAN's teacher forcing is MLE steps, its D round is D steps). Each
is written for one replica's rows; `replicas.Replicas` spreads it.
"""

import tensorflow as tf

from tfseqgan import distribute, losses, sampler


def token_mask_total(mask):
    """The number of positions that count in the global batch (at least 1),
    in replica context: what per-replica loss sums are divided by."""
    return tf.maximum(distribute.all_sum(tf.reduce_sum(mask)), 1.0)


def check_discriminator_options(t, replicas):
    """Raises ValueError naming the flag for a D setting that cannot run."""
    if t.d_loss not in losses.D_LOSSES:
        raise ValueError(f"--d_loss={t.d_loss}: expected one of {', '.join(losses.D_LOSSES)}")
    if t.d_loss != "standard" and (t.batch_size // replicas) % 2:
        raise ValueError(
            f"--d_loss={t.d_loss} trains D on (real, generated) pairs: --batch_size={t.batch_size} must give "
            f"each of the {replicas} replicas an even number of rows"
        )


class Steps:
    """The shared steps of a run, compiled once.

    Attributes (tf.functions):
        mle_step(tokens) -> loss: one MLE update of the generator.
        discriminator_step(tokens, labels, seed) -> (loss, accuracy): one D
            update with `--d_loss`; labels 1 real, 0 generated.
        generate(num_samples, seed) -> (num_samples, time) generated ids;
            `generate_at(temperature)` gives it at another temperature.
        generate_per_replica(num_samples, seed): each replica's share, kept
            on it (per-replica values).
        generate_oracle: as `generate`, from the oracle (None for text).
        real_probability(tokens) -> (rows,) D's P(real).
        mean_over_replicas(values) -> the mean of a per-replica value.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        replicas, t = trainer.replicas, trainer.train_config
        self.replicas = replicas
        length = trainer.model_config.sequence_length
        tokens_spec = tf.TensorSpec([None, length], tf.int32)
        seed_spec = tf.TensorSpec([2], tf.int64)
        generator, discriminator = trainer.generator, trainer.discriminator
        count = replicas.count

        # ---- MLE
        mle_gradients = replicas.gradients(
            lambda tokens, mask, total: (
                losses.mle_loss(generator, tokens, training=True, mask=mask, total=total),
                (),
            ),
            generator.trainable_variables,
            trainer.generator_loss_scale,
        )

        def mle_replica(tokens):
            mask = trainer.mask(tokens)
            loss, gradients, _ = mle_gradients(tokens, mask, token_mask_total(mask))
            return loss, gradients, ()

        mle_update = replicas.update(
            mle_replica,
            trainer.mle_optimizer,
            generator.trainable_variables,
            t.generator_clip_norm,
            trainer.generator_loss_scale,
        )

        @tf.function(input_signature=replicas.signature(tokens_spec))
        def mle_step(tokens):
            loss, _ = mle_update(tokens)
            return loss

        # ---- discriminator
        def discriminator_loss(tokens, labels, seed, offset):
            loss, _, logits = losses.discriminator_loss(
                discriminator, tokens, labels, True, seed, offset, count, kind=t.d_loss
            )
            if t.d_loss == "standard":
                correct = tf.reduce_sum(
                    tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32)
                )
            else:  # pairs ranked right (the real above the generated), counted for both rows
                pairs = tf.reshape(losses.critic_of_logits(logits), [-1, 2])
                correct = 2.0 * tf.reduce_sum(tf.cast(pairs[:, 0] > pairs[:, 1], tf.float32))
            return loss, correct

        discriminator_gradients = replicas.gradients(
            discriminator_loss, discriminator.trainable_variables, trainer.discriminator_loss_scale
        )

        def discriminator_replica(tokens, labels, seed):
            offset, rows = distribute.replica_rows(tf.shape(tokens)[0])
            loss, gradients, correct = discriminator_gradients(tokens, labels, seed, offset)
            return loss, gradients, distribute.all_sum(correct) / tf.cast(rows, tf.float32)

        discriminator_update = replicas.update(
            discriminator_replica,
            trainer.discriminator_optimizer,
            discriminator.trainable_variables,
            t.discriminator_clip_norm,
            trainer.discriminator_loss_scale,
        )

        @tf.function(input_signature=replicas.signature(tokens_spec, tf.TensorSpec([None], tf.int32), seed_spec))
        def discriminator_step(tokens, labels, seed):
            return discriminator_update(tokens, labels, seed)

        @tf.function(input_signature=[tokens_spec])
        def real_probability(tokens):
            return replicas.local(replicas.run(discriminator.real_probability, args=(tokens,)))

        self._compiled_samplers = {}  # one compiled decoding loop per model, shared by its samplers
        self.mle_step = mle_step
        self.discriminator_step = discriminator_step
        self.real_probability = real_probability
        self.generate = self.sampler(generator, gather=True)
        self.generate_per_replica = self.sampler(generator, gather=False)
        self.generate_oracle = None if trainer.oracle is None else self.sampler(trainer.oracle, gather=True)
        self.mean_over_replicas = replicas.mean()
        self._tempered = {}  # temperature: `generate` at that temperature, made on first use

    def generate_at(self, temperature):
        """`generate` drawing from softmax(logits / temperature) (compiled on first use)."""
        if float(temperature) == 1.0:
            return self.generate
        if float(temperature) not in self._tempered:
            self._tempered[float(temperature)] = self.sampler(self.trainer.generator, True, temperature)
        return self._tempered[float(temperature)]

    def sampler(self, model, gather, temperature=1.0):
        """A tf.function (num_samples, seed) -> free samples of `model`, split
        over the replicas (each draws the random numbers of its global rows),
        gathered into one tensor or (gather=False) kept on each replica; drawn
        from softmax(logits / temperature) (a Python float)."""
        replicas, trainer = self.replicas, self.trainer
        count, length = replicas.count, trainer.model_config.sequence_length
        static = replicas.jit_compile  # XLA needs the static-shape decoding loop

        key = (model.name, float(temperature))
        if key not in self._compiled_samplers:

            @replicas.compiled
            def sample(rows, offset, seed):  # rows: (local, time) zeros, its shape static under XLA
                local = tf.shape(rows)[0]
                tokens = sampler.sample_free(
                    model,
                    local,
                    seed,
                    temperature=float(temperature),
                    row_offset=offset,
                    num_rows=local * count,
                    static_shapes=static,
                )
                return trainer.postprocess(tokens)

            self._compiled_samplers[key] = sample
        sample = self._compiled_samplers[key]

        def sample_replica(num_samples, seed):
            per_replica = (num_samples + count - 1) // count
            offset, _ = distribute.replica_rows(per_replica)
            return sample(tf.zeros([per_replica, length], tf.int32), offset, seed)

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)])
        def generate(num_samples, seed):
            samples = replicas.run(sample_replica, args=(num_samples, seed))
            if not gather:  # each replica keeps its rows (the adversarial step's batch)
                return samples
            if count > 1:
                samples = replicas.strategy.gather(samples, axis=0)
            return samples[:num_samples]

        return generate
