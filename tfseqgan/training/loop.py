"""The training loop: MLE pre-training, discriminator pre-training and the
adversarial phase of any objective, with evaluation at a set cadence,
checkpoints, stop requests (signals), progress lines and metrics.

It knows nothing of an objective's losses: the adversarial phase asks the
objective (`tfseqgan.objectives`) for one iteration at a time. The shared
steps are in `steps`, their distribution in `replicas`, the figures in
`evaluation`.

Reference: Yu et al., AAAI 2017, Algorithm 1.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfseqgan import checkpoints, distribute, faults, metrics, oracle, text
from tfseqgan.config import TextConfig
from tfseqgan.discriminator import Discriminator
from tfseqgan.generator import Generator
from tfseqgan.objectives import OBJECTIVES
from tfseqgan.optimizers import FusedAdam
from tfseqgan.training.evaluation import Evaluator
from tfseqgan.training.replicas import Replicas
from tfseqgan.training.steps import Steps, check_discriminator_options

PHASES = ("mle", "discriminator", "adversarial")
TEMPERATURES_FILE = "temperatures.json"  # --temperature_curve's figures, in the run directory


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


def _finite(value):
    return bool(np.isfinite(value))


class Trainer:
    """Owns the models, optimizers, random state and counters of one run,
    and runs its phases.

    Args:
        model_config: `config.ModelConfig`.
        oracle_config: `config.OracleConfig`.
        train_config: `config.TrainConfig`; `objective` names the adversarial
            method (a key of `objectives.OBJECTIVES`).
        run_config: `config.RunConfig`.
        log: a print-like function for progress lines.
        corpus: a `text.Corpus` to train on instead of the synthetic oracle;
            model_config.vocabulary_size must be its vocabulary's size.
        text_config: `config.TextConfig`, how a corpus run is evaluated.
        strategy: the `tf.distribute.Strategy` to train under (default: the
            default strategy, one device). Models and optimizers live in its
            scope; every step runs under `strategy.run`.
        objective: an `objectives.Objective` subclass to use instead of the
            one `train_config.objective` names.
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
        objective=None,
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
        if objective is None:
            if train_config.objective not in OBJECTIVES:
                raise ValueError(f"--objective={train_config.objective}: expected one of {', '.join(OBJECTIVES)}")
            objective = OBJECTIVES[train_config.objective]
        check_discriminator_options(train_config, self.num_replicas)
        self.model_config = model_config
        self.oracle_config = oracle_config
        self.train_config = train_config
        self.run_config = run_config
        self.log = log
        self.corpus = corpus
        self.text_config = text_config or TextConfig()
        self.replicas = Replicas(self.strategy, train_config.jit_compile)
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
        with self.strategy.scope():
            self._build_models(banned)
        self._build_state()
        self.steps = Steps(self)
        self.mle_step = self.steps.mle_step
        self.discriminator_step = self.steps.discriminator_step
        self.generate = self.steps.generate
        self.real_probability = self.steps.real_probability
        self.evaluator = Evaluator(self)
        self.objective = objective(self)  # everything above exists for it
        self._build_checkpoint()

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
        self.discriminator_optimizer = FusedAdam(t.discriminator_learning_rate)
        self.mle_optimizer.build(self.generator.trainable_variables)
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

    def _build_state(self):
        # The run's random state and counters are plain (host) variables, the
        # same on every worker: all workers draw the same seeds.
        self.rng = tf.random.Generator.from_seed(self.train_config.seed)
        self.mle_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="mle_epoch")
        self.discriminator_round = tf.Variable(0, dtype=tf.int64, trainable=False, name="discriminator_round")
        self.adversarial_iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="adversarial_iteration")
        self.stop_requested = False
        self.real_data = None
        self.test_data = None
        self.history = []
        self.output_dir = self.run_config.run_dir  # non-chief workers write to a scratch folder instead

    def _build_checkpoint(self):
        # What a checkpoint holds, by name (a name is the checkpoint's key).
        self.checkpointed = dict(
            generator=self.generator,
            discriminator=self.discriminator,
            mle_optimizer=self.mle_optimizer,
            discriminator_optimizer=self.discriminator_optimizer,
            rng=self.rng,
            mle_epoch=self.mle_epoch,
            discriminator_round=self.discriminator_round,
            adversarial_iteration=self.adversarial_iteration,
            **{
                name: scale
                for name, scale in (
                    ("generator_loss_scale", self.generator_loss_scale),
                    ("discriminator_loss_scale", self.discriminator_loss_scale),
                )
                if scale is not None
            },
        )
        extra = self.objective.checkpointed()
        clash = set(self.checkpointed) & set(extra)
        if clash:
            raise ValueError(f"objective {self.objective.name!r} checkpoints names the loop uses: {sorted(clash)}")
        self.checkpointed.update(extra)
        self.checkpoint = tf.train.Checkpoint(**self.checkpointed)
        self.checkpoint_manager = checkpoints.open_manager(
            self.checkpoint,
            os.path.join(self.run_config.run_dir, "checkpoints"),
            self.run_config.checkpoints_to_keep,
            self.log,
        )

    def mask(self, tokens):
        """Positions that count in losses (batch, time) float32: all, or (text) up to the end token."""
        if self.end_token is None:
            return tf.ones(tf.shape(tokens), tf.float32)
        return text.valid_mask(tokens, self.end_token)

    def postprocess(self, tokens):
        """Generated ids in the padded form of the real data (text: padding after the end token)."""
        return tokens if self.end_token is None else text.pad_after_end(tokens, self.end_token)

    def next_seed(self):
        """A fresh shape-(2,) int64 seed from the run's checkpointed generator."""
        return self.rng.make_seeds(1)[:, 0]

    def sample(self, num_samples, seed=None, model="generator", temperature=1.0):
        fn = self.steps.generate_at(temperature) if model == "generator" else self.steps.generate_oracle
        seed = self.next_seed() if seed is None else tf.constant(seed, tf.int64)
        return fn(tf.constant(num_samples, tf.int32), seed)

    @property
    def real_text_record(self):
        """Text runs: the real-data ceiling (training lines scored like samples), or None."""
        return self.evaluator.real_text_record

    # ------------------------------------------------------------------ data
    def make_data(self):
        """Real (training) and held-out (test) sets: the corpus splits, or
        oracle samples drawn with seeds of their own (disjoint draws)."""
        if self.corpus is not None:
            self.real_data, self.test_data = self.corpus.train_ids, self.corpus.test_ids
            self.evaluator.prepare_text()
            return
        o = self.oracle_config
        self.real_data = self.sample(o.num_real_samples, seed=[o.seed, 1], model="oracle")
        self.test_data = self.sample(o.num_test_samples, seed=[o.seed, 2], model="oracle")
        self.evaluator.prepare_oracle(self.test_data)

    def _shuffled_batches(self, *tensors):
        """Shuffles the rows of `tensors` together (seeded) and returns them as
        a distributed dataset of global batches of batch_size rows (the
        remainder dropped), and the number of batches."""
        batch = self.train_config.batch_size
        rows = int(tensors[0].shape[0])
        order = tf.argsort(tf.random.stateless_uniform([rows], self.next_seed()))
        shuffled = [tf.gather(tensor, order) for tensor in tensors]
        return self.replicas.batches(shuffled, batch), rows // batch

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
        return self.replicas.batches([tokens, labels], batch), 2 * pairs // batch

    def _step_seeds(self, count):
        """`count` shape-(2,) seeds from one draw of the run's RNG."""
        return tf.transpose(self.rng.make_seeds(count)).numpy()

    # ------------------------------------------------------------ evaluation
    def evaluate(self, phase, step, extra=None):
        """The evaluator's figures plus `extra`; writes, logs and returns the record."""
        began = time.perf_counter()
        record = self.evaluator.evaluate(phase, step)
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

    def _global_step(self, phase, step):
        t = self.train_config
        offsets = {
            "mle": 0,
            "discriminator": t.mle_epochs,
            "adversarial": t.mle_epochs + t.discriminator_pretrain_rounds,
        }
        return int(offsets[phase] + step)

    # ---------------------------------------------------- checks and saving
    def check(self, loss, phase, step):
        """Stops the run (TrainingError, nothing saved) when `loss` is NaN or Inf."""
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

    def stop_if_requested(self):
        """Checkpoints and raises TrainingInterrupted when a stop was requested."""
        if self.stop_requested:
            raise TrainingInterrupted(self._save())

    def _progress(self, target, title):
        if not self.run_config.progress:
            return None
        self.log(title)
        return keras.utils.Progbar(target, verbose=1 if sys.stdout.isatty() else 2, unit_name="step")

    # ---------------------------------------------------------------- phases
    def run_mle_epoch(self, epoch):
        """One pass of MLE steps over the shuffled real data; the mean loss."""
        batches, count = self._shuffled_batches(self.real_data)
        bar = self._progress(count, f"MLE epoch {epoch}/{self.train_config.mle_epochs}")
        total = 0.0
        for index, (tokens,) in enumerate(batches):
            loss = float(self.mle_step(tokens))
            self.check(loss, "mle", f"epoch {epoch} batch {index + 1}")
            self.stop_if_requested()
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

    def run_discriminator_round(self, num_negatives, epochs, phase, step):
        """`num_negatives` fresh samples against as many real sequences (all
        of them if fewer), `epochs` passes of D steps; (mean loss, mean
        training accuracy)."""
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
                self.check(loss, phase, f"{step} D epoch {epoch + 1} batch {index + 1}")
                self.stop_if_requested()
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

    def train_adversarial(self):
        t = self.train_config
        if int(self.adversarial_iteration) < t.adversarial_iterations:
            self.objective.begin()
        if int(self.adversarial_iteration) == 0 and t.adversarial_iterations > 0:
            self.evaluate("adversarial", 0)
        timed = []  # seconds of each iteration since the last evaluation
        while int(self.adversarial_iteration) < t.adversarial_iterations:
            iteration = int(self.adversarial_iteration) + 1
            began = time.perf_counter()
            extra = self.objective.iteration(iteration)
            self.adversarial_iteration.assign(iteration)
            timed.append(time.perf_counter() - began)
            if self.run_config.progress:
                self.log(
                    f"adversarial iteration {iteration}/{t.adversarial_iterations}: "
                    + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items())
                    + f" ({timed[-1]:.1f} s)"
                )
            if iteration % t.adversarial_eval_every == 0 or iteration == t.adversarial_iterations:
                # The mean training time of the iterations since the last evaluation (none of the
                # evaluation or checkpoint time; a process's first iteration includes its tracing).
                extra = {**extra, "iteration_seconds": float(np.mean(timed))}
                timed = []
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
            if self.run_config.resume:
                self.log(f"--resume: nothing to resume in {self.run_config.run_dir} (no checkpoint); a new run starts")
            return None
        if broken:
            self._set_aside(broken, prefix)
        # The learning rates are optimizer variables, so the checkpoint brought
        # back the old ones: the flags of this run win.
        self.mle_optimizer.learning_rate.assign(self.train_config.generator_learning_rate)
        self.discriminator_optimizer.learning_rate.assign(self.train_config.discriminator_learning_rate)
        self.objective.after_restore()
        self.log(
            f"resumed from {prefix}: MLE epoch {int(self.mle_epoch)}, D round {int(self.discriminator_round)}, "
            f"adversarial iteration {int(self.adversarial_iteration)}"
        )
        return prefix

    def _restore(self, prefix):
        """Restores checkpoint `prefix`; every object of the run must be in
        it, except state the objective added later (`Objective.added_later`),
        which older checkpoints lack: the objective then sets it
        (`Objective.upgrade`)."""
        reader = tf.train.load_checkpoint(prefix)
        missing = [name for name, key in self.objective.added_later().items() if not reader.has_tensor(key)]
        if not missing:
            self._restore_matched(self.checkpoint, prefix)
            return
        older = tf.train.Checkpoint(**{k: v for k, v in self.checkpointed.items() if k not in missing})
        self._restore_matched(older, prefix)
        self.checkpoint.save_counter.assign(older.save_counter)  # later saves continue its numbering
        self.objective.upgrade(reader, prefix, missing)

    def _restore_matched(self, checkpoint, prefix):
        """Restores `prefix` into `checkpoint`; a checkpoint of another kind of
        run (another --objective, other model sizes) is refused in one line."""
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:
            reason = " ".join(str(error).split())[:200]
            raise TrainingError(
                f"{prefix} does not hold this run's objects (--objective={self.train_config.objective}; {reason}); "
                f"resume with the flags it was written with ({os.path.join(self.run_config.run_dir, 'flags.cfg')})"
            ) from None

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
            if os.path.exists(self.metrics_writer.path):
                self.history = metrics.read_metrics(self.metrics_writer.path)
            else:
                self.log(
                    f"warning: {self.metrics_writer.path} is missing; the report covers the evaluations from here on"
                )
        elif os.path.exists(self.metrics_writer.path):
            os.remove(self.metrics_writer.path)
        self.make_data()
        self.train_mle()
        self.train_discriminator()
        self.train_adversarial()
        if self.train_config.temperature_curve:
            self.write_temperature_curve()
        if not self.is_chief:
            shutil.rmtree(self.output_dir, ignore_errors=True)
        return self.history

    def write_temperature_curve(self):
        """Scores the final generator at each of --temperature_curve's
        temperatures and writes RUN/temperatures.json (see `Evaluator.temperature_curve`)."""
        t = self.train_config
        began = time.perf_counter()
        curve = self.evaluator.temperature_curve(t.temperature_curve)
        for point in curve:
            self.log(
                f"[temperature {point['temperature']:g}] "
                + "  ".join(
                    f"{k} {v:.4f}"
                    for k, v in point.items()
                    if k != "temperature" and isinstance(v, float) and k.startswith(("nll", "bleu_", "self_bleu_"))
                )
            )
        if self.is_chief:
            document = {
                "objective": t.objective,
                "adversarial_iteration": int(self.adversarial_iteration),
                "seed": t.seed,
                "seconds": round(time.perf_counter() - began, 1),
                "curve": curve,
            }
            path = os.path.join(self.run_config.run_dir, TEMPERATURES_FILE)
            with open(path + ".tmp", "w", encoding="utf-8") as stream:
                json.dump(document, stream, indent=1)
            os.replace(path + ".tmp", path)
            self.log(f"temperature curve: {path}")
        return curve

    def weights_digest(self):
        """SHA-256 over the weights of every model of the run (the generator,
        the objective's, the discriminator): equal on every worker of a run
        that stays in sync."""
        digest = hashlib.sha256()
        for model in (self.generator, *self.objective.models().values(), self.discriminator):
            for weight in model.weights:
                digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
        return digest.hexdigest()
