"""The training options: every flag of `tfseqgan-train` (`python main.py`),
their checks, and their translation into the typed configs of
`tfseqgan/config.py`.

The command line (tfseqgan/cli/train.py) and the Python API (tfseqgan/api.py)
both define these flags on a `absl.flags.FlagValues` (the CLI on absl's global
one, the API on a private one per call), parse them the same way and call the
same `build_configs`: one set of defaults, bounds and error messages.
"""

import functools
import math
import os

from absl import flags

from tfseqgan import config as config_lib
from tfseqgan.config import PAPER_NUM_FILTERS, PAPER_WINDOW_SIZES

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 10.0  # --temperature_curve's limits
MAX_CURVE_POINTS = 32


def define_flags(fv):
    """Defines every training flag on the FlagValues `fv`.

    Returns:
        The sections, [(title, [flag names])], in the order flags.cfg lists them.
    """
    sections = []

    def section(title, *names):
        sections.append((title, list(names)))

    string = functools.partial(flags.DEFINE_string, flag_values=fv)
    boolean = functools.partial(flags.DEFINE_bool, flag_values=fv)
    integer = functools.partial(flags.DEFINE_integer, flag_values=fv)
    real = functools.partial(flags.DEFINE_float, flag_values=fv)
    enum = functools.partial(flags.DEFINE_enum, flag_values=fv)
    strings = functools.partial(flags.DEFINE_list, flag_values=fv)

    # Run
    string("run_dir", "runs/synthetic_quick", "Directory for checkpoints, metrics, plots.")
    boolean("resume", False, "Continue the run in --run_dir from its newest checkpoint.")
    integer("seed", 0, "Seed of every random draw of the run.", lower_bound=0)
    boolean("progress", True, "Show progress bars and per-iteration lines.")
    boolean("plot", True, "Write nll_oracle.png (text: bleu.png) into the run directory at the end.")
    integer("checkpoints_to_keep", 3, "Checkpoints kept in run_dir/checkpoints.", lower_bound=1)
    section("Run", "run_dir", "seed", "progress", "plot", "checkpoints_to_keep")

    # Export
    boolean("export", True, "At the end, export and verify the generator into RUN/export (SavedModel, ONNX, manifest).")
    section("Export", "export")

    # Oracle (synthetic data)
    string("oracle_weights", "", "Oracle .npz (see README); empty: a seeded random N(0, 1) oracle.")
    integer("oracle_seed", 0, "Seed of the random oracle and of the real/test draws.", lower_bound=0)
    integer("num_real_samples", 9984, "Training sequences sampled from the oracle.", lower_bound=1)
    integer("num_test_samples", 9984, "Held-out oracle sequences for NLL-test.", lower_bound=1)
    section("Oracle", "oracle_weights", "oracle_seed", "num_real_samples", "num_test_samples")

    # Text
    enum(
        "dataset",
        "synthetic",
        ["synthetic", "poems", "coco", "text"],
        "synthetic: the oracle benchmark; poems / coco: the corpus in --data_dir; text: --train_file and --test_file.",
    )
    string("data_dir", "data", "Folder with poems/ and coco/ (python -m tfseqgan.datasets fetch makes it).")
    string("train_file", "", "--dataset=text: training sentences, one a line (UTF-8).")
    string("test_file", "", "--dataset=text: held-out sentences (BLEU references, NLL-test).")
    enum(
        "tokenizer", "auto", ["auto", "char", "word"], "auto: poems char, coco and text word; char: Unicode characters."
    )
    integer("max_vocab_size", 0, "At most this many ids, 4 reserved ones included; 0: no limit.", lower_bound=0)
    integer("min_count", 1, "Tokens seen fewer times in training become <unk>.", lower_bound=1)
    enum("overlong", "skip", ["skip", "truncate"], "Lines with more than --sequence_length tokens: drop or cut them.")
    integer("num_bleu_samples", 1000, "Generated sequences scored by BLEU and Self-BLEU.", lower_bound=2)
    integer("num_bleu_references", 0, "Held-out lines used as BLEU references; 0: all.", lower_bound=0)
    integer("bleu_max_order", 5, "BLEU-2 .. BLEU-n are reported.", lower_bound=2, upper_bound=9)
    integer("num_samples_shown", 3, "Decoded samples printed at each evaluation.", lower_bound=0)
    section(
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
    integer("vocabulary_size", 5000, "Number of token ids (synthetic; text takes its vocabulary's).", lower_bound=2)
    integer("sequence_length", 20, "Tokens per sequence.", lower_bound=1)
    integer("start_token", 0, "Id fed at position 0 (synthetic: an ordinary id; text: <s>).", lower_bound=0)
    integer("generator_embedding_dim", 32, "Generator embedding size.", lower_bound=1)
    integer("generator_hidden_dim", 32, "Generator LSTM size.", lower_bound=1)
    real("generator_init_stddev", 0.1, "Std of the generator's N(0, s) initializers.", lower_bound=0.0)
    integer("discriminator_embedding_dim", 64, "Discriminator embedding size.", lower_bound=1)
    strings("window_sizes", [str(w) for w in PAPER_WINDOW_SIZES], "Discriminator conv window widths.")
    strings("num_filters", [str(f) for f in PAPER_NUM_FILTERS], "Filters per window width.")
    real("dropout_rate", 0.25, "Discriminator dropout in training (1 - keep).", lower_bound=0.0, upper_bound=0.99)
    real("l2_weight", 0.2, "L2 weight of the discriminator's output layer.", lower_bound=0.0)
    section(
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
    integer("batch_size", 64, "Sequences per training step.", lower_bound=1)
    real("generator_learning_rate", 0.01, "Adam learning rate of G's MLE steps.", lower_bound=0.0)
    real("policy_gradient_learning_rate", 0.01, "Adam learning rate of G's policy-gradient steps.", lower_bound=0.0)
    real("generator_clip_norm", 5.0, "Global-norm clip of G's gradients; 0 disables.", lower_bound=0.0)
    real("discriminator_learning_rate", 1e-4, "Adam learning rate of D.", lower_bound=0.0)
    real("discriminator_clip_norm", 0.0, "Global-norm clip of D's gradients; 0 disables.", lower_bound=0.0)
    section(
        "Optimizers",
        "batch_size",
        "generator_learning_rate",
        "policy_gradient_learning_rate",
        "generator_clip_norm",
        "discriminator_learning_rate",
        "discriminator_clip_norm",
    )

    # Schedule
    integer("mle_epochs", 30, "MLE pre-training epochs over the real data.", lower_bound=0)
    integer("mle_eval_every", 5, "Evaluate every N MLE epochs (and D rounds).", lower_bound=1)
    integer("discriminator_pretrain_rounds", 5, "D pre-training rounds.", lower_bound=0)
    integer(
        "discriminator_negatives",
        9984,
        "Fresh generated negatives per D pre-training round (as many real sequences are drawn).",
        lower_bound=1,
    )
    integer("discriminator_epochs", 1, "Epochs over real + negatives per D pre-training round.", lower_bound=0)
    integer("adversarial_iterations", 15, "Adversarial iterations.", lower_bound=0)
    integer(
        "generator_steps",
        1,
        "Generator steps per adversarial iteration (seqgan: policy-gradient steps).",
        lower_bound=0,
    )
    integer(
        "discriminator_rounds",
        1,
        "D rounds per adversarial iteration (seqgan; gumbel: --discriminator_steps).",
        lower_bound=0,
    )
    integer("adversarial_discriminator_epochs", 1, "Epochs per adversarial D round.", lower_bound=0)
    integer("adversarial_discriminator_negatives", 2048, "Fresh negatives per adversarial D round.", lower_bound=1)
    integer("num_rollouts", 16, "Monte-Carlo rollouts per prefix.", lower_bound=1)
    real(
        "rollout_update_rate",
        0.8,
        "beta <- r*beta + (1-r)*theta after each G step; 0: rollouts use the current G.",
        lower_bound=0.0,
        upper_bound=1.0,
    )
    integer("adversarial_eval_every", 5, "Evaluate every N adversarial iterations.", lower_bound=1)
    integer("num_eval_samples", 9984, "Generated sequences for NLL-oracle.", lower_bound=1)
    integer("num_discriminator_eval_samples", 1024, "Real and fake sequences for D accuracy; 0 skips.", lower_bound=0)
    strings(
        "temperature_curve",
        [],
        "Sampling temperatures (e.g. 0.6,0.8,1,1.2,1.4) at which the final generator is scored (NLL-oracle, "
        f"NLL-test, BLEU, Self-BLEU) into RUN/temperatures.json: a quality-diversity curve; at most "
        f"{MAX_CURVE_POINTS} values in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}].",
    )
    section(
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
    enum(
        "objective",
        "seqgan",
        ["seqgan", "gumbel", "wgan_gp"],
        "The adversarial method: seqgan (policy gradient with Monte-Carlo rollout rewards; the paper); gumbel "
        "(Gumbel-softmax relaxed samples through D, RelGAN's training signal); wgan_gp (a critic with a gradient "
        "penalty scores the generator's softmax outputs, Gulrajani et al. 2017).",
    )
    real(
        "gumbel_max_inverse_temperature",
        100.0,
        "--objective=gumbel: the inverse temperature beta goes from 1 to this (RelGAN: 100 or 1000 on text).",
        lower_bound=1.0,
    )
    enum(
        "gumbel_schedule",
        "exponential",
        ["exponential", "linear", "constant"],
        "--objective=gumbel: beta over the adversarial iterations; exponential: max ** (i / N) (RelGAN).",
    )
    enum(
        "gumbel_feedback",
        "relaxed",
        ["relaxed", "hard"],
        "--objective=gumbel: the next position's input: the relaxed vector (v @ E, GSGAN) or the hard id (RelGAN).",
    )
    real(
        "adversarial_generator_learning_rate",
        1e-4,
        "--objective=gumbel: Adam learning rate of G's steps through D.",
        lower_bound=0.0,
    )
    integer(
        "discriminator_steps",
        5,
        "--objective=gumbel: D steps (one batch each) per adversarial iteration.",
        lower_bound=0,
    )
    integer("critic_steps", 5, "--objective=wgan_gp: critic steps per generator step.", lower_bound=0)
    real("gradient_penalty", 10.0, "--objective=wgan_gp: weight of the gradient penalty (lambda).", lower_bound=0.0)
    real("wgan_learning_rate", 1e-4, "--objective=wgan_gp: Adam learning rate of G and the critic.", lower_bound=0.0)
    real("wgan_beta_1", 0.5, "--objective=wgan_gp: Adam beta_1.", lower_bound=0.0, upper_bound=0.999)
    real("wgan_beta_2", 0.9, "--objective=wgan_gp: Adam beta_2.", lower_bound=0.0, upper_bound=0.9999)
    section(
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
    enum(
        "d_loss",
        "standard",
        ["standard", "relativistic", "relativistic_average"],
        "standard: D's cross-entropy, reward P(real); relativistic (RSGAN): D ranks (real, generated) pairs, reward "
        "the chance of ranking above a real sequence of the batch; relativistic_average (RaSGAN): against the other "
        "side's mean.",
    )
    integer(
        "teacher_forcing_steps", 0, "MLE steps on real batches after each adversarial G step (0: none).", lower_bound=0
    )
    enum(
        "reward_baseline",
        "none",
        ["none", "batch_mean", "moving_average"],
        "Subtracted from the rewards per position: none (the paper), the batch's mean, or a moving average of it.",
    )
    real("baseline_decay", 0.9, "Decay of --reward_baseline=moving_average.", lower_bound=0.0, upper_bound=0.999)
    real("entropy_bonus", 0.0, "Weight of the policy's entropy in the PG loss (0: none).", lower_bound=0.0)
    section("Variants", "d_loss", "teacher_forcing_steps", "reward_baseline", "baseline_decay", "entropy_bonus")

    # Devices
    enum(
        "strategy",
        "auto",
        ["auto", "mirrored", "multi_worker", "tpu"],
        "auto: one GPU if present, else the CPU; mirrored: all local GPUs (or --devices); "
        "multi_worker: MultiWorkerMirroredStrategy over the cluster in TF_CONFIG; tpu: TPUStrategy on --tpu.",
    )
    strings("devices", [], "--strategy=mirrored: devices to mirror over, e.g. /gpu:0,/gpu:1; empty: all GPUs.")
    string("tpu", "", "--strategy=tpu: TPU name or grpc:// address; empty: the TPU VM's own.")
    boolean("jit_compile", False, "XLA-compile every step (static-shape decoding); what TPUs need.")
    enum(
        "mixed_precision",
        "none",
        ["none", "bfloat16", "float16"],
        "Compute the LSTM, CNN and highway in this type (weights, logits, softmax and losses stay float32); "
        "float16 adds dynamic loss scaling.",
    )
    enum(
        "reward_precision",
        "auto",
        ["auto", "float32", "bfloat16"],
        "Precision of D's CNN and highway when scoring rollouts for rewards (the rest stays as --mixed_precision "
        "says). auto: bfloat16 on devices with bfloat16 matrix units (AMX/AVX512-BF16 CPUs, Ampere+ GPUs, TPUs), "
        "else the compute dtype.",
    )
    section("Devices", "strategy", "devices", "tpu", "jit_compile", "mixed_precision", "reward_precision")
    return sections


# Each section: (title, [flag names]); flags.cfg is written in this order.
SECTIONS = define_flags(flags.FlagValues())


class FlagError(ValueError):
    """A flag value that cannot work; main prints it as one line and exits 2."""


def _int_list(fv, name):
    values = []
    for item in fv[name].value:
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


def _check_finite_floats(fv):
    """absl's bounds let NaN through (every comparison with it is false), and Inf past an upper-bound-free flag."""
    for _, names in SECTIONS:
        for name in names:
            value = fv[name].value
            if isinstance(value, float) and not math.isfinite(value):
                raise FlagError(f"--{name}={value}: expected a finite number")


def build_configs(fv):
    """Turns the parsed flags `fv` into the library's typed configs (raises FlagError)."""
    _check_finite_floats(fv)
    windows, filters = _int_list(fv, "window_sizes"), _int_list(fv, "num_filters")
    if len(windows) != len(filters):
        raise FlagError(f"--window_sizes has {len(windows)} values but --num_filters has {len(filters)}")
    if max(windows) > fv.sequence_length:
        raise FlagError(f"--window_sizes: {max(windows)} exceeds --sequence_length={fv.sequence_length}")
    text_run = fv.dataset != "synthetic"
    if not text_run and fv.start_token >= fv.vocabulary_size:
        raise FlagError(f"--start_token={fv.start_token} must be < --vocabulary_size={fv.vocabulary_size}")
    for name in ("discriminator_negatives", "adversarial_discriminator_negatives") + (
        () if text_run else ("num_real_samples",)
    ):
        if fv[name].value < fv.batch_size:
            raise FlagError(f"--{name}={fv[name].value} is smaller than one batch (--batch_size={fv.batch_size})")
    if fv.dataset == "text" and not (fv.train_file and fv.test_file):
        raise FlagError("--dataset=text needs --train_file and --test_file")
    if fv.dataset != "text" and (fv.train_file or fv.test_file):
        raise FlagError(f"--train_file and --test_file need --dataset=text, not --dataset={fv.dataset}")
    if not text_run and fv.oracle_weights and not os.path.isfile(fv.oracle_weights):
        raise FlagError(f"--oracle_weights: {fv.oracle_weights}: no such file")
    model = config_lib.ModelConfig(
        vocabulary_size=fv.vocabulary_size,
        sequence_length=fv.sequence_length,
        start_token=fv.start_token,
        generator_embedding_dim=fv.generator_embedding_dim,
        generator_hidden_dim=fv.generator_hidden_dim,
        generator_init_stddev=fv.generator_init_stddev,
        discriminator_embedding_dim=fv.discriminator_embedding_dim,
        window_sizes=windows,
        num_filters=filters,
        dropout_rate=fv.dropout_rate,
        l2_weight=fv.l2_weight,
    )
    oracle = config_lib.OracleConfig(
        weights_path=fv.oracle_weights,
        seed=fv.oracle_seed,
        num_real_samples=fv.num_real_samples,
        num_test_samples=fv.num_test_samples,
    )
    train = config_lib.TrainConfig(
        **{
            f.name: fv[f.name].value
            for f in config_lib.dataclasses.fields(config_lib.TrainConfig)
            if f.name not in ("seed", "mixed_precision", "temperature_curve")
        },
        seed=fv.seed,
        temperature_curve=parse_temperatures(fv.temperature_curve),
        mixed_precision="" if fv.mixed_precision == "none" else fv.mixed_precision,
    )
    if fv.d_loss != "standard" and fv.batch_size % 2:
        raise FlagError(f"--d_loss={fv.d_loss} trains D on (real, generated) pairs: --batch_size must be even")
    if fv.devices and fv.strategy != "mirrored":
        raise FlagError(f"--devices applies to --strategy=mirrored, not --strategy={fv.strategy}")
    if fv.tpu and fv.strategy != "tpu":
        raise FlagError(f"--tpu applies to --strategy=tpu, not --strategy={fv.strategy}")
    text = config_lib.TextConfig(
        dataset=fv.dataset,
        data_dir=fv.data_dir,
        train_file=fv.train_file,
        test_file=fv.test_file,
        tokenizer="" if fv.tokenizer == "auto" else fv.tokenizer,
        max_vocab_size=fv.max_vocab_size,
        min_count=fv.min_count,
        overlong=fv.overlong,
        num_bleu_samples=fv.num_bleu_samples,
        num_bleu_references=fv.num_bleu_references,
        bleu_max_order=fv.bleu_max_order,
        num_samples_shown=fv.num_samples_shown,
    )
    run = config_lib.RunConfig(
        run_dir=fv.run_dir,
        resume=fv.resume,
        checkpoints_to_keep=fv.checkpoints_to_keep,
        progress=fv.progress,
        write_plot=fv.plot,
    )
    return model, oracle, train, run, text


def resolved_flags_text(fv):
    """The run's flags as a flagfile, grouped by section."""
    lines = ["# Resolved flags of this run; repeat it with --flagfile=<this file>."]
    for title, names in SECTIONS:
        lines.append(f"\n# {title}")
        for name in names:
            lines.append(fv[name].serialize())
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ presets
PRESET_ARGUMENT = "--preset"


def presets_dir():
    """The folder of the flagfile presets: `tfseqgan/presets/` in an installed
    package (the wheel ships the checkout's `flags/` there), else the
    checkout's `flags/`."""
    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "presets")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "flags")


def preset_names():
    """The presets' names (flagfile names without .cfg), sorted."""
    folder = presets_dir()
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(name[: -len(".cfg")] for name in names if name.endswith(".cfg"))


def preset_path(name):
    """The flagfile of preset `name` (raises FlagError naming the presets there are)."""
    names = preset_names()
    if name not in names:
        raise FlagError(
            f"{PRESET_ARGUMENT}={name}: no such preset; expected one of {', '.join(names) or '(none found)'}"
        )
    return os.path.join(presets_dir(), name + ".cfg")


def expand_presets(argv):
    """argv with each `--preset=NAME` (or `--preset NAME`) replaced by
    `--flagfile=<its path>`, in place, so flags after it override it as flags
    after a flagfile do (raises FlagError)."""
    result, index = [], 0
    while index < len(argv):
        item = argv[index]
        if item == PRESET_ARGUMENT:
            if index + 1 == len(argv):
                raise FlagError(f"{PRESET_ARGUMENT}: expected a preset name, e.g. {PRESET_ARGUMENT}=poem_quick")
            result.append(f"--flagfile={preset_path(argv[index + 1])}")
            index += 2
            continue
        if item.startswith(PRESET_ARGUMENT + "="):
            result.append(f"--flagfile={preset_path(item[len(PRESET_ARGUMENT) + 1 :])}")
        else:
            result.append(item)
        index += 1
    return result
