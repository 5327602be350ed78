"""Shared fixtures of the tfseqgan test suite.

Everything is tiny (vocabulary ~10-20, length ~5-6, batch 2-16) so the default
suite stays fast on a 2-core CPU machine; deterministic sampling comes from
making one output logit huge (see `dominate`). The plain helpers below are
imported by the test modules (`from conftest import ...`).
"""

import dataclasses
import os
import sys
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import settings  # noqa: E402

from tfseqgan.config import ModelConfig, OracleConfig, RunConfig, TrainConfig  # noqa: E402
from tfseqgan.generator import Generator  # noqa: E402

# CI runs the property tests derandomised (`--hypothesis-profile=ci`), so a red
# run repeats; locally they draw new examples each run.
settings.register_profile("ci", derandomize=True, print_blob=True)

ORACLE_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "oracle" / "target_lstm.npz"

# The schedule of the trainer and CLI tests: every phase runs, each for one or
# two steps, in a few seconds.
TINY_MODEL = ModelConfig(vocabulary_size=20, sequence_length=6, window_sizes=(1, 2, 3), num_filters=(4, 4, 4))
TINY_ORACLE = OracleConfig(num_real_samples=128, num_test_samples=64)
TINY_TRAIN = TrainConfig(
    batch_size=16,
    mle_epochs=2,
    mle_eval_every=1,
    discriminator_pretrain_rounds=1,
    discriminator_negatives=64,
    discriminator_epochs=1,
    adversarial_iterations=2,
    discriminator_rounds=1,
    adversarial_discriminator_epochs=1,
    adversarial_discriminator_negatives=64,
    num_rollouts=2,
    adversarial_eval_every=1,
    num_eval_samples=64,
    num_discriminator_eval_samples=32,
    # Rewards in float32 on every CPU: --reward_precision=auto would pick
    # bfloat16 where the CPU has AVX512-BF16 or AMX, and the tests' exact
    # comparisons would then depend on the machine. The bfloat16 path has
    # tests of its own that ask for it.
    reward_precision="float32",
)


@pytest.fixture(autouse=True)
def fixed_seed():
    """Every test starts from the same global Keras / TF / NumPy seed."""
    keras.utils.set_random_seed(0)


@pytest.fixture
def oracle_path():
    """The paper's oracle weights from ../shared; skips the test when absent."""
    if not ORACLE_PATH.is_file():
        pytest.skip(f"oracle weights not found at {ORACLE_PATH} (the repo expects ../shared beside it)")
    return ORACLE_PATH


def new_generator(vocabulary_size=10, sequence_length=5, embedding_dim=4, hidden_dim=6, init_stddev=0.1, seed=1):
    """A tiny seeded Generator."""
    return Generator(
        vocabulary_size,
        sequence_length,
        embedding_dim=embedding_dim,
        hidden_dim=hidden_dim,
        init_stddev=init_stddev,
        seed=seed,
    )


def dominate(generator, token, value=50.0):
    """Makes `token` certain: zero output kernel, bias +value on `token`, 0 elsewhere."""
    generator.output_layer.kernel.assign(tf.zeros_like(generator.output_layer.kernel))
    bias = np.zeros(generator.vocabulary_size, np.float32)
    bias[token] = value
    generator.output_layer.bias.assign(bias)
    return generator


def tiny_configs(run_dir, resume=False, **train_overrides):
    """(model, oracle, train, run) configs of the tiny schedule, quiet and without a plot."""
    train = dataclasses.replace(TINY_TRAIN, **train_overrides)
    run = RunConfig(run_dir=str(run_dir), resume=resume, progress=False, write_plot=False)
    return TINY_MODEL, TINY_ORACLE, train, run


def log_softmax(logits, axis=-1):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits, axis=-1):
    return np.exp(log_softmax(logits, axis))


def load_bench_script(name):
    """bench/NAME.py as a module (the bench scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
