"""Typed configuration of a run. `tfseqgan/options.py` fills these from flags; the library
never reads flags itself. Defaults are the paper's synthetic settings
(see REFERENCE.md in the shared docs)."""

import dataclasses

# The paper's discriminator (Yu et al. 2017, appendix): conv window widths and filters per width.
PAPER_WINDOW_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
PAPER_NUM_FILTERS = (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of the generator, discriminator and oracle."""

    vocabulary_size: int = 5000
    sequence_length: int = 20
    start_token: int = 0
    generator_embedding_dim: int = 32
    generator_hidden_dim: int = 32
    generator_init_stddev: float = 0.1
    discriminator_embedding_dim: int = 64
    window_sizes: tuple = PAPER_WINDOW_SIZES
    num_filters: tuple = PAPER_NUM_FILTERS
    dropout_rate: float = 0.25
    l2_weight: float = 0.2


@dataclasses.dataclass(frozen=True)
class OracleConfig:
    """The synthetic benchmark's oracle: weights from `weights_path`, or a
    seeded N(0, 1) LSTM when it is empty."""

    weights_path: str = ""
    seed: int = 0
    num_real_samples: int = 9984
    num_test_samples: int = 9984


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Schedule and optimizers of the three phases. Every count may be 0."""

    batch_size: int = 64
    generator_learning_rate: float = 0.01  # MLE
    policy_gradient_learning_rate: float = 0.01  # the paper's code uses one rate for MLE and PG
    generator_clip_norm: float = 5.0
    discriminator_learning_rate: float = 1e-4
    discriminator_clip_norm: float = 0.0  # 0: no clipping (the paper's D)
    mle_epochs: int = 120
    mle_eval_every: int = 5
    discriminator_pretrain_rounds: int = 50
    discriminator_negatives: int = 9984
    discriminator_epochs: int = 3
    adversarial_iterations: int = 200
    generator_steps: int = 1
    discriminator_rounds: int = 5
    adversarial_discriminator_epochs: int = 3
    adversarial_discriminator_negatives: int = 9984
    num_rollouts: int = 16
    rollout_update_rate: float = 0.8
    adversarial_eval_every: int = 5
    num_eval_samples: int = 9984
    num_discriminator_eval_samples: int = 1024
    # Sampling temperatures the final generator is scored at (RUN/temperatures.json); empty: none.
    temperature_curve: tuple = ()
    objective: str = "seqgan"  # the adversarial method, a key of tfseqgan.objectives.OBJECTIVES
    # --objective=gumbel (RelGAN's training signal on our LSTM): beta from 1 to this, by the schedule;
    # TextGAN-PyTorch's RelGAN runs: 2 on the oracle, RelGAN's paper 100 or 1000 on real text.
    gumbel_max_inverse_temperature: float = 100.0
    gumbel_schedule: str = "exponential"  # "exponential" (RelGAN), "linear" or "constant"
    gumbel_feedback: str = "relaxed"  # the next input: "relaxed" vector (GSGAN) or "hard" id (RelGAN)
    adversarial_generator_learning_rate: float = 1e-4  # Adam rate of G's steps through D (gumbel)
    discriminator_steps: int = 5  # D steps per adversarial iteration (gumbel), one batch each
    # --objective=wgan_gp (Gulrajani et al. 2017): critic steps per G step, the penalty's weight, and
    # Adam(1e-4, beta_1 0.5, beta_2 0.9) for G and critic, as in that paper's released language model.
    critic_steps: int = 5
    gradient_penalty: float = 10.0
    wgan_learning_rate: float = 1e-4
    wgan_beta_1: float = 0.5
    wgan_beta_2: float = 0.9
    # Variants (the paper's choices are the defaults): D loss and reward, teacher
    # forcing, the policy gradient's baseline and entropy bonus.
    d_loss: str = "standard"  # "standard", "relativistic" (RSGAN) or "relativistic_average" (RaSGAN)
    teacher_forcing_steps: int = 0  # MLE steps on real batches after each adversarial G step
    reward_baseline: str = "none"  # "none", "batch_mean" or "moving_average" (per position)
    baseline_decay: float = 0.9  # of the moving-average baseline
    entropy_bonus: float = 0.0  # weight of the policy's entropy in the PG loss
    seed: int = 0
    jit_compile: bool = False  # XLA-compile every step's computation (static shapes)
    mixed_precision: str = ""  # "", "bfloat16" or "float16" (with dynamic loss scaling)
    # Precision of D's CNN and highway when it scores rollouts for rewards:
    # "auto" (bfloat16 where the device has bfloat16 matrix units and no
    # mixed precision is set, else the compute dtype), "float32" or "bfloat16".
    reward_precision: str = "auto"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Where a run writes, and how it reports."""

    run_dir: str = "runs/synthetic"
    resume: bool = False
    checkpoints_to_keep: int = 3
    progress: bool = True
    write_plot: bool = True


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """A real-text corpus and how it is judged (ignored by the synthetic benchmark).

    `dataset` is `synthetic`, one of the bundled corpora in `data_dir`
    (`poems`, `coco`), or `text` with explicit `train_file` / `test_file`.
    BLEU takes `num_bleu_samples` generated sequences against
    `num_bleu_references` lines of the held-out split (0: all of them).
    """

    dataset: str = "synthetic"
    data_dir: str = "data"
    train_file: str = ""
    test_file: str = ""
    tokenizer: str = ""  # empty: the dataset's own (poems: char, coco: word)
    max_vocab_size: int = 0  # 0: every token seen min_count times
    min_count: int = 1
    overlong: str = "skip"
    num_bleu_samples: int = 1000
    num_bleu_references: int = 0
    bleu_max_order: int = 5
    num_samples_shown: int = 3
