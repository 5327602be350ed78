"""Trains SeqGAN. With no flags: the quick synthetic benchmark on a seeded
random oracle; `--dataset=poems|coco|text` trains on real text instead.
See flags/*.cfg and README.md."""

import math
import os
import re
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __name__ == "__main__":  # TensorFlow's native start-up lines ignore that variable: filter them (tfseqgan/quiet.py)
    from tfseqgan.quiet import filter_native_stderr

    filter_native_stderr()


def _stop_while_starting(signum, frame):
    """SIGINT/SIGTERM before training has begun: nothing to save, so exit at once."""
    print(f"interrupted: stopped while starting (signal {signum}); nothing to save", file=sys.stderr, flush=True)
    quiet = sys.modules.get("tfseqgan.quiet")
    if quiet is not None:
        quiet.finish()  # the filtered stderr's last lines are out before the process ends
    os._exit(128 + signum)


def _stop_during_export(signum, frame):
    """SIGINT/SIGTERM after training: the run is checkpointed; the export's temporary folder is removed."""
    pipeline = sys.modules.get("export.pipeline")
    defer = getattr(pipeline, "defer_signal", None)
    if defer is not None and defer(signum):
        return  # during the commit's renames: raised again once the export is in place
    remove = getattr(pipeline, "remove_temporary_folders", None)
    if remove is not None:
        remove()
    print(
        f"interrupted: stopped during the export (signal {signum}); training is complete and checkpointed, "
        f"export it with: python -m export --run_dir={FLAGS.run_dir}",
        file=sys.stderr,
        flush=True,
    )
    quiet = sys.modules.get("tfseqgan.quiet")
    if quiet is not None:
        quiet.finish()
    os._exit(128 + signum)


if __name__ == "__main__":  # until the trainer installs its own handlers (TensorFlow takes seconds to load)
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, _stop_while_starting)

from absl import app, flags, logging  # noqa: E402

from tfseqgan import config as config_lib  # noqa: E402
from tfseqgan.discriminator import PAPER_NUM_FILTERS, PAPER_WINDOW_SIZES  # noqa: E402

FLAGS = flags.FLAGS

# Each section: (title, [flag names]); flags.cfg is written in this order.
SECTIONS = []
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 10.0  # --temperature_curve's limits
MAX_CURVE_POINTS = 32


def _section(title, *names):
    SECTIONS.append((title, list(names)))


# Run
flags.DEFINE_string("run_dir", "runs/synthetic_quick", "Directory for checkpoints, metrics, plots.")
flags.DEFINE_bool("resume", False, "Continue the run in --run_dir from its newest checkpoint.")
flags.DEFINE_integer("seed", 0, "Seed of every random draw of the run.", lower_bound=0)
flags.DEFINE_bool("progress", True, "Show progress bars and per-iteration lines.")
flags.DEFINE_bool("plot", True, "Write nll_oracle.png (text: bleu.png) into the run directory at the end.")
flags.DEFINE_integer("checkpoints_to_keep", 3, "Checkpoints kept in run_dir/checkpoints.", lower_bound=1)
_section("Run", "run_dir", "seed", "progress", "plot", "checkpoints_to_keep")

# Export
flags.DEFINE_bool(
    "export", True, "At the end, export and verify the generator into RUN/export (SavedModel, ONNX, manifest)."
)
_section("Export", "export")

# Oracle (synthetic data)
flags.DEFINE_string("oracle_weights", "", "Oracle .npz (see README); empty: a seeded random N(0, 1) oracle.")
flags.DEFINE_integer("oracle_seed", 0, "Seed of the random oracle and of the real/test draws.", lower_bound=0)
flags.DEFINE_integer("num_real_samples", 9984, "Training sequences sampled from the oracle.", lower_bound=1)
flags.DEFINE_integer("num_test_samples", 9984, "Held-out oracle sequences for NLL-test.", lower_bound=1)
_section("Oracle", "oracle_weights", "oracle_seed", "num_real_samples", "num_test_samples")

# Text
flags.DEFINE_enum(
    "dataset",
    "synthetic",
    ["synthetic", "poems", "coco", "text"],
    "synthetic: the oracle benchmark; poems / coco: the corpus in --data_dir; text: --train_file and --test_file.",
)
flags.DEFINE_string("data_dir", "data", "Folder with poems/ and coco/ (python -m tfseqgan.datasets fetch makes it).")
flags.DEFINE_string("train_file", "", "--dataset=text: training sentences, one a line (UTF-8).")
flags.DEFINE_string("test_file", "", "--dataset=text: held-out sentences (BLEU references, NLL-test).")
flags.DEFINE_enum(
    "tokenizer", "auto", ["auto", "char", "word"], "auto: poems char, coco and text word; char: Unicode characters."
)
flags.DEFINE_integer(
    "max_vocab_size", 0, "At most this many ids, 4 reserved ones included; 0: no limit.", lower_bound=0
)
flags.DEFINE_integer("min_count", 1, "Tokens seen fewer times in training become <unk>.", lower_bound=1)
flags.DEFINE_enum(
    "overlong", "skip", ["skip", "truncate"], "Lines with more than --sequence_length tokens: drop or cut them."
)
flags.DEFINE_integer("num_bleu_samples", 1000, "Generated sequences scored by BLEU and Self-BLEU.", lower_bound=2)
flags.DEFINE_integer("num_bleu_references", 0, "Held-out lines used as BLEU references; 0: all.", lower_bound=0)
flags.DEFINE_integer("bleu_max_order", 5, "BLEU-2 .. BLEU-n are reported.", lower_bound=2, upper_bound=9)
flags.DEFINE_integer("num_samples_shown", 3, "Decoded samples printed at each evaluation.", lower_bound=0)
_section(
    "Text",
    "dataset",
    "data_dir",
    "train_file",
    "test_file",
    "tokenizer",
    "max_vocab_size",
    "min_count",
    "overlong",
    "num_bleu_samples",
    "num_bleu_references",
    "bleu_max_order",
    "num_samples_shown",
)

# Model
flags.DEFINE_integer(
    "vocabulary_size", 5000, "Number of token ids (synthetic; text takes its vocabulary's).", lower_bound=2
)
flags.DEFINE_integer("sequence_length", 20, "Tokens per sequence.", lower_bound=1)
flags.DEFINE_integer("start_token", 0, "Id fed at position 0 (synthetic: an ordinary id; text: <s>).", lower_bound=0)
flags.DEFINE_integer("generator_embedding_dim", 32, "Generator embedding size.", lower_bound=1)
flags.DEFINE_integer("generator_hidden_dim", 32, "Generator LSTM size.", lower_bound=1)
flags.DEFINE_float("generator_init_stddev", 0.1, "Std of the generator's N(0, s) initializers.", lower_bound=0.0)
flags.DEFINE_integer("discriminator_embedding_dim", 64, "Discriminator embedding size.", lower_bound=1)
flags.DEFINE_list("window_sizes", [str(w) for w in PAPER_WINDOW_SIZES], "Discriminator conv window widths.")
flags.DEFINE_list("num_filters", [str(f) for f in PAPER_NUM_FILTERS], "Filters per window width.")
flags.DEFINE_float(
    "dropout_rate", 0.25, "Discriminator dropout in training (1 - keep).", lower_bound=0.0, upper_bound=0.99
)
flags.DEFINE_float("l2_weight", 0.2, "L2 weight of the discriminator's output layer.", lower_bound=0.0)
_section(
    "Model",
    "vocabulary_size",
    "sequence_length",
    "start_token",
    "generator_embedding_dim",
    "generator_hidden_dim",
    "generator_init_stddev",
    "discriminator_embedding_dim",
    "window_sizes",
    "num_filters",
    "dropout_rate",
    "l2_weight",
)

# Optimizers
flags.DEFINE_integer("batch_size", 64, "Sequences per training step.", lower_bound=1)
flags.DEFINE_float("generator_learning_rate", 0.01, "Adam learning rate of G's MLE steps.", lower_bound=0.0)
flags.DEFINE_float(
    "policy_gradient_learning_rate", 0.01, "Adam learning rate of G's policy-gradient steps.", lower_bound=0.0
)
flags.DEFINE_float("generator_clip_norm", 5.0, "Global-norm clip of G's gradients; 0 disables.", lower_bound=0.0)
flags.DEFINE_float("discriminator_learning_rate", 1e-4, "Adam learning rate of D.", lower_bound=0.0)
flags.DEFINE_float("discriminator_clip_norm", 0.0, "Global-norm clip of D's gradients; 0 disables.", lower_bound=0.0)
_section(
    "Optimizers",
    "batch_size",
    "generator_learning_rate",
    "policy_gradient_learning_rate",
    "generator_clip_norm",
    "discriminator_learning_rate",
    "discriminator_clip_norm",
)

# Schedule
flags.DEFINE_integer("mle_epochs", 30, "MLE pre-training epochs over the real data.", lower_bound=0)
flags.DEFINE_integer("mle_eval_every", 5, "Evaluate every N MLE epochs (and D rounds).", lower_bound=1)
flags.DEFINE_integer("discriminator_pretrain_rounds", 5, "D pre-training rounds.", lower_bound=0)
flags.DEFINE_integer(
    "discriminator_negatives",
    9984,
    "Fresh generated negatives per D pre-training round (as many real sequences are drawn).",
    lower_bound=1,
)
flags.DEFINE_integer("discriminator_epochs", 1, "Epochs over real + negatives per D pre-training round.", lower_bound=0)
flags.DEFINE_integer("adversarial_iterations", 15, "Adversarial iterations.", lower_bound=0)
flags.DEFINE_integer(
    "generator_steps", 1, "Generator steps per adversarial iteration (seqgan: policy-gradient steps).", lower_bound=0
)
flags.DEFINE_integer(
    "discriminator_rounds",
    1,
    "D rounds per adversarial iteration (seqgan; gumbel: --discriminator_steps).",
    lower_bound=0,
)
flags.DEFINE_integer("adversarial_discriminator_epochs", 1, "Epochs per adversarial D round.", lower_bound=0)
flags.DEFINE_integer(
    "adversarial_discriminator_negatives", 2048, "Fresh negatives per adversarial D round.", lower_bound=1
)
flags.DEFINE_integer("num_rollouts", 16, "Monte-Carlo rollouts per prefix.", lower_bound=1)
flags.DEFINE_float(
    "rollout_update_rate",
    0.8,
    "beta <- r*beta + (1-r)*theta after each G step; 0: rollouts use the current G.",
    lower_bound=0.0,
    upper_bound=1.0,
)
flags.DEFINE_integer("adversarial_eval_every", 5, "Evaluate every N adversarial iterations.", lower_bound=1)
flags.DEFINE_integer("num_eval_samples", 9984, "Generated sequences for NLL-oracle.", lower_bound=1)
flags.DEFINE_integer(
    "num_discriminator_eval_samples", 1024, "Real and fake sequences for D accuracy; 0 skips.", lower_bound=0
)
flags.DEFINE_list(
    "temperature_curve",
    [],
    "Sampling temperatures (e.g. 0.6,0.8,1,1.2,1.4) at which the final generator is scored (NLL-oracle, "
    f"NLL-test, BLEU, Self-BLEU) into RUN/temperatures.json: a quality-diversity curve; at most "
    f"{MAX_CURVE_POINTS} values in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}].",
)
_section(
    "Schedule",
    "mle_epochs",
    "mle_eval_every",
    "discriminator_pretrain_rounds",
    "discriminator_negatives",
    "discriminator_epochs",
    "adversarial_iterations",
    "generator_steps",
    "discriminator_rounds",
    "adversarial_discriminator_epochs",
    "adversarial_discriminator_negatives",
    "num_rollouts",
    "rollout_update_rate",
    "adversarial_eval_every",
    "num_eval_samples",
    "num_discriminator_eval_samples",
    "temperature_curve",
)


# Objective
flags.DEFINE_enum(
    "objective",
    "seqgan",
    ["seqgan", "gumbel", "wgan_gp"],
    "The adversarial method: seqgan (policy gradient with Monte-Carlo rollout rewards; the paper); gumbel "
    "(Gumbel-softmax relaxed samples through D, RelGAN's training signal); wgan_gp (a critic with a gradient "
    "penalty scores the generator's softmax outputs, Gulrajani et al. 2017).",
)
flags.DEFINE_float(
    "gumbel_max_inverse_temperature",
    100.0,
    "--objective=gumbel: the inverse temperature beta goes from 1 to this (RelGAN: 100 or 1000 on text).",
    lower_bound=1.0,
)
flags.DEFINE_enum(
    "gumbel_schedule",
    "exponential",
    ["exponential", "linear", "constant"],
    "--objective=gumbel: beta over the adversarial iterations; exponential: max ** (i / N) (RelGAN).",
)
flags.DEFINE_enum(
    "gumbel_feedback",
    "relaxed",
    ["relaxed", "hard"],
    "--objective=gumbel: the next position's input: the relaxed vector (v @ E, GSGAN) or the hard id (RelGAN).",
)
flags.DEFINE_float(
    "adversarial_generator_learning_rate",
    1e-4,
    "--objective=gumbel: Adam learning rate of G's steps through D.",
    lower_bound=0.0,
)
flags.DEFINE_integer(
    "discriminator_steps", 5, "--objective=gumbel: D steps (one batch each) per adversarial iteration.", lower_bound=0
)
flags.DEFINE_integer("critic_steps", 5, "--objective=wgan_gp: critic steps per generator step.", lower_bound=0)
flags.DEFINE_float(
    "gradient_penalty", 10.0, "--objective=wgan_gp: weight of the gradient penalty (lambda).", lower_bound=0.0
)
flags.DEFINE_float(
    "wgan_learning_rate", 1e-4, "--objective=wgan_gp: Adam learning rate of G and the critic.", lower_bound=0.0
)
flags.DEFINE_float("wgan_beta_1", 0.5, "--objective=wgan_gp: Adam beta_1.", lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_float("wgan_beta_2", 0.9, "--objective=wgan_gp: Adam beta_2.", lower_bound=0.0, upper_bound=0.9999)
_section(
    "Objective",
    "objective",
    "gumbel_max_inverse_temperature",
    "gumbel_schedule",
    "gumbel_feedback",
    "adversarial_generator_learning_rate",
    "discriminator_steps",
    "critic_steps",
    "gradient_penalty",
    "wgan_learning_rate",
    "wgan_beta_1",
    "wgan_beta_2",
)

# Variants (defaults: the paper)
flags.DEFINE_enum(
    "d_loss",
    "standard",
    ["standard", "relativistic", "relativistic_average"],
    "standard: D's cross-entropy, reward P(real); relativistic (RSGAN): D ranks (real, generated) pairs, reward "
    "the chance of ranking above a real sequence of the batch; relativistic_average (RaSGAN): against the other "
    "side's mean.",
)
flags.DEFINE_integer(
    "teacher_forcing_steps", 0, "MLE steps on real batches after each adversarial G step (0: none).", lower_bound=0
)
flags.DEFINE_enum(
    "reward_baseline",
    "none",
    ["none", "batch_mean", "moving_average"],
    "Subtracted from the rewards per position: none (the paper), the batch's mean, or a moving average of it.",
)
flags.DEFINE_float(
    "baseline_decay", 0.9, "Decay of --reward_baseline=moving_average.", lower_bound=0.0, upper_bound=0.999
)
flags.DEFINE_float("entropy_bonus", 0.0, "Weight of the policy's entropy in the PG loss (0: none).", lower_bound=0.0)
_section("Variants", "d_loss", "teacher_forcing_steps", "reward_baseline", "baseline_decay", "entropy_bonus")


# Devices
flags.DEFINE_enum(
    "strategy",
    "auto",
    ["auto", "mirrored", "multi_worker", "tpu"],
    "auto: one GPU if present, else the CPU; mirrored: all local GPUs (or --devices); "
    "multi_worker: MultiWorkerMirroredStrategy over the cluster in TF_CONFIG; tpu: TPUStrategy on --tpu.",
)
flags.DEFINE_list("devices", [], "--strategy=mirrored: devices to mirror over, e.g. /gpu:0,/gpu:1; empty: all GPUs.")
flags.DEFINE_string("tpu", "", "--strategy=tpu: TPU name or grpc:// address; empty: the TPU VM's own.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile every step (static-shape decoding); what TPUs need.")
flags.DEFINE_enum(
    "mixed_precision",
    "none",
    ["none", "bfloat16", "float16"],
    "Compute the LSTM, CNN and highway in this type (weights, logits, softmax and losses stay float32); "
    "float16 adds dynamic loss scaling.",
)
flags.DEFINE_enum(
    "reward_precision",
    "auto",
    ["auto", "float32", "bfloat16"],
    "Precision of D's CNN and highway when scoring rollouts for rewards (the rest stays as --mixed_precision "
    "says). auto: bfloat16 on devices with bfloat16 matrix units (AMX/AVX512-BF16 CPUs, Ampere+ GPUs, TPUs), "
    "else the compute dtype.",
)
_section("Devices", "strategy", "devices", "tpu", "jit_compile", "mixed_precision", "reward_precision")


class FlagError(ValueError):
    """A flag value that cannot work; main prints it as one line and exits 2."""


def _int_list(name):
    values = []
    for item in FLAGS[name].value:
        try:
            values.append(int(item))
        except ValueError:
            raise FlagError(f"--{name}: expected comma-separated integers, got {item!r}") from None
        if values[-1] < 1:
            raise FlagError(f"--{name}: values must be >= 1, got {values[-1]}")
    if not values:
        raise FlagError(f"--{name}: expected at least one value")
    return tuple(values)


def parse_temperatures(items):
    """--temperature_curve's values as a tuple of floats (raises FlagError)."""
    values = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise FlagError(f"--temperature_curve: expected comma-separated numbers, got {item!r}") from None
        if not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:  # also refuses NaN
            raise FlagError(
                f"--temperature_curve: temperatures must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], got {item}"
            )
        values.append(value)
    if len(values) > MAX_CURVE_POINTS:
        raise FlagError(f"--temperature_curve: at most {MAX_CURVE_POINTS} temperatures, got {len(values)}")
    return tuple(values)


def _check_finite_floats():
    """absl's bounds let NaN through (every comparison with it is false), and Inf past an upper-bound-free flag."""
    for _, names in SECTIONS:
        for name in names:
            value = FLAGS[name].value
            if isinstance(value, float) and not math.isfinite(value):
                raise FlagError(f"--{name}={value}: expected a finite number")


def build_configs():
    """Turns the flags into the library's typed configs (raises FlagError)."""
    _check_finite_floats()
    windows, filters = _int_list("window_sizes"), _int_list("num_filters")
    if len(windows) != len(filters):
        raise FlagError(f"--window_sizes has {len(windows)} values but --num_filters has {len(filters)}")
    if max(windows) > FLAGS.sequence_length:
        raise FlagError(f"--window_sizes: {max(windows)} exceeds --sequence_length={FLAGS.sequence_length}")
    text_run = FLAGS.dataset != "synthetic"
    if not text_run and FLAGS.start_token >= FLAGS.vocabulary_size:
        raise FlagError(f"--start_token={FLAGS.start_token} must be < --vocabulary_size={FLAGS.vocabulary_size}")
    for name in ("discriminator_negatives", "adversarial_discriminator_negatives") + (
        () if text_run else ("num_real_samples",)
    ):
        if FLAGS[name].value < FLAGS.batch_size:
            raise FlagError(f"--{name}={FLAGS[name].value} is smaller than one batch (--batch_size={FLAGS.batch_size})")
    if FLAGS.dataset == "text" and not (FLAGS.train_file and FLAGS.test_file):
        raise FlagError("--dataset=text needs --train_file and --test_file")
    if FLAGS.dataset != "text" and (FLAGS.train_file or FLAGS.test_file):
        raise FlagError(f"--train_file and --test_file need --dataset=text, not --dataset={FLAGS.dataset}")
    if not text_run and FLAGS.oracle_weights and not os.path.isfile(FLAGS.oracle_weights):
        raise FlagError(f"--oracle_weights: {FLAGS.oracle_weights}: no such file")
    model = config_lib.ModelConfig(
        vocabulary_size=FLAGS.vocabulary_size,
        sequence_length=FLAGS.sequence_length,
        start_token=FLAGS.start_token,
        generator_embedding_dim=FLAGS.generator_embedding_dim,
        generator_hidden_dim=FLAGS.generator_hidden_dim,
        generator_init_stddev=FLAGS.generator_init_stddev,
        discriminator_embedding_dim=FLAGS.discriminator_embedding_dim,
        window_sizes=windows,
        num_filters=filters,
        dropout_rate=FLAGS.dropout_rate,
        l2_weight=FLAGS.l2_weight,
    )
    oracle = config_lib.OracleConfig(
        weights_path=FLAGS.oracle_weights,
        seed=FLAGS.oracle_seed,
        num_real_samples=FLAGS.num_real_samples,
        num_test_samples=FLAGS.num_test_samples,
    )
    train = config_lib.TrainConfig(
        **{
            f.name: FLAGS[f.name].value
            for f in config_lib.dataclasses.fields(config_lib.TrainConfig)
            if f.name not in ("seed", "mixed_precision", "temperature_curve")
        },
        seed=FLAGS.seed,
        temperature_curve=parse_temperatures(FLAGS.temperature_curve),
        mixed_precision="" if FLAGS.mixed_precision == "none" else FLAGS.mixed_precision,
    )
    if FLAGS.d_loss != "standard" and FLAGS.batch_size % 2:
        raise FlagError(f"--d_loss={FLAGS.d_loss} trains D on (real, generated) pairs: --batch_size must be even")
    if FLAGS.devices and FLAGS.strategy != "mirrored":
        raise FlagError(f"--devices applies to --strategy=mirrored, not --strategy={FLAGS.strategy}")
    if FLAGS.tpu and FLAGS.strategy != "tpu":
        raise FlagError(f"--tpu applies to --strategy=tpu, not --strategy={FLAGS.strategy}")
    text = config_lib.TextConfig(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        train_file=FLAGS.train_file,
        test_file=FLAGS.test_file,
        tokenizer="" if FLAGS.tokenizer == "auto" else FLAGS.tokenizer,
        max_vocab_size=FLAGS.max_vocab_size,
        min_count=FLAGS.min_count,
        overlong=FLAGS.overlong,
        num_bleu_samples=FLAGS.num_bleu_samples,
        num_bleu_references=FLAGS.num_bleu_references,
        bleu_max_order=FLAGS.bleu_max_order,
        num_samples_shown=FLAGS.num_samples_shown,
    )
    run = config_lib.RunConfig(
        run_dir=FLAGS.run_dir,
        resume=FLAGS.resume,
        checkpoints_to_keep=FLAGS.checkpoints_to_keep,
        progress=FLAGS.progress,
        write_plot=FLAGS.plot,
    )
    return model, oracle, train, run, text


def resolved_flags_text():
    """The run's flags as a flagfile, grouped by section."""
    lines = ["# Resolved flags of this run; repeat it with --flagfile=<this file>."]
    for title, names in SECTIONS:
        lines.append(f"\n# {title}")
        for name in names:
            lines.append(FLAGS[name].serialize())
    return "\n".join(lines) + "\n"


def parse_flags(argv):
    """absl's parsing, with a bad flag reported as one line (exit 2) instead
    of absl's two-line message."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        message = re.sub(r"^ERROR:+\s*", "", " ".join(str(error).split()))  # absl's flagfile errors start so
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value)", file=sys.stderr)
        return 2
    logging.set_verbosity(logging.WARNING)
    return _run(received=[])


def _run(received):
    """main() after its argument check; `received` collects the signals."""
    from tfseqgan import faults

    try:
        faults.from_environment()  # test-only fault injection; nothing unless TFSEQGAN_FAULT is set
        model, oracle, train, run, text_config = build_configs()
    except (FlagError, faults.FaultSpecError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import tensorflow as tf

    from tfseqgan import distribute, runlock
    from tfseqgan.checkpoints import describe
    from tfseqgan.text import CorpusError
    from tfseqgan.training.loop import TrainingError, TrainingInterrupted
    from tfseqgan.training.session import Session

    try:  # first: multi-worker and TPU strategies set up the runtime before any op runs
        strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.devices, FLAGS.tpu)
    except (ValueError, RuntimeError) as error:
        print(f"error: --strategy={FLAGS.strategy}: {error}", file=sys.stderr)
        return 2
    chief = distribute.is_chief(strategy)
    if strategy.num_replicas_in_sync > 1 or not chief:
        print(
            f"strategy {FLAGS.strategy}: {strategy.num_replicas_in_sync} replicas; this process: "
            f"{distribute.worker_name(strategy)}{' (chief)' if chief else ''}"
        )
    session = Session()
    session.signals = received
    try:
        history = session.train(model, oracle, train, run, text_config, strategy, resolved_flags_text())
    except TrainingInterrupted as interrupted:
        print(f"interrupted: {interrupted}; continue with --resume --run_dir={run.run_dir}", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)
    except (CorpusError, TrainingError, ValueError, runlock.RunDirectoryInUse) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (OSError, tf.errors.OpError) as error:  # a full disk, a file that cannot be written, ...
        print(
            f"error: {describe(error)}. Last good checkpoint: {session.last_checkpoint() or 'none yet'}",
            file=sys.stderr,
        )
        return 1
    if history is None:  # a worker that is not the chief
        return 0
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_during_export)
    print(f"run directory: {run.run_dir}")
    if FLAGS.export:
        from export.pipeline import export_run, summary_lines
        from export.restore import ExportError

        try:
            manifest = export_run(run.run_dir, os.path.join(run.run_dir, "export"))
        except ExportError as error:
            print(f"error: export: {error}", file=sys.stderr)
            return 1
        for line in summary_lines(manifest):
            print(line)
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
