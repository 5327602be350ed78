"""The algorithm pinned through the trainer, each step against what the paper
(Yu et al. 2017, Algorithm 1) says it is:

- the rollout policy G_beta starts from the pre-trained generator (beta <-
  theta when the adversarial phase begins) and then follows it as
  beta <- r * beta + (1 - r) * theta after each generator step, through
  resumes at any point;
- a discriminator round labels real rows real and generated rows fake, with
  the balanced real subset it claims;
- NLL-oracle, NLL-test and D accuracy, as the trainer computes them (with its
  zero-weight padding of the last batch), equal an independent NumPy
  computation.
"""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import dominate, log_softmax, softmax, tiny_configs
from test_oracle import numpy_oracle_logits

from tfseqgan import checkpoints, oracle
from tfseqgan.objectives.seqgan import ROLLOUT_STARTED_KEY
from tfseqgan.training.loop import Trainer, TrainingInterrupted

RATE = 0.8  # the paper's --rollout_update_rate


def make_trainer(run_dir, resume=False, log=None, oracle_overrides=None, **overrides):
    model, oracle_config, train, run = tiny_configs(run_dir, resume, **overrides)
    oracle_config = dataclasses.replace(oracle_config, **(oracle_overrides or {}))
    return Trainer(model, oracle_config, train, run, log=log or (lambda *args: None))


def weights_of(model):
    return [weight.numpy().copy() for weight in model.weights]


class RolloutSpy:
    """Records beta and theta where the trainer uses them: when the rollout
    rewards are computed (beta is the rollouts' policy) and around each
    delayed update."""

    def __init__(self, trainer):
        self.at_rewards = []  # (beta, theta) at each reward computation
        self.updates = []  # (beta before, theta, beta after) of each update
        rewards, update = trainer.objective.rewards, trainer.objective.update_rollout

        def spy_rewards(*args):
            self.at_rewards.append((weights_of(trainer.objective.rollout_policy), weights_of(trainer.generator)))
            return rewards(*args)

        def spy_update():
            before, theta = weights_of(trainer.objective.rollout_policy), weights_of(trainer.generator)
            update()
            self.updates.append((before, theta, weights_of(trainer.objective.rollout_policy)))

        trainer.objective.rewards = spy_rewards
        trainer.objective.update_rollout = spy_update


def assert_weights_equal(actual, expected):
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_array_equal(a, e, err_msg=f"weight {index}")


def differ(first, second):
    return any(not np.allclose(a, b) for a, b in zip(first, second))


SCHEDULE = dict(adversarial_iterations=2, generator_steps=2)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A whole tiny run (2 adversarial iterations of 2 generator steps) at the paper's rate, spied on."""
    trainer = make_trainer(tmp_path_factory.mktemp("uninterrupted"), rollout_update_rate=RATE, **SCHEDULE)
    initial_beta = weights_of(trainer.objective.rollout_policy)
    spy = RolloutSpy(trainer)
    trainer.run()
    return trainer, spy, initial_beta


@pytest.mark.parametrize("rate", [0.0, RATE])
def test_rollout_policy_starts_from_the_pretrained_generator_and_follows_it(rate, uninterrupted, tmp_path):
    if rate == RATE:
        trainer, spy, initial_beta = uninterrupted
    else:
        trainer = make_trainer(tmp_path, rollout_update_rate=rate, **SCHEDULE)
        initial_beta = weights_of(trainer.objective.rollout_policy)
        spy = RolloutSpy(trainer)
        trainer.run()
    steps = SCHEDULE["adversarial_iterations"] * SCHEDULE["generator_steps"]
    assert len(spy.at_rewards) == len(spy.updates) == steps

    # The first rollouts are by the pre-trained generator, not the initial weights.
    beta, theta = spy.at_rewards[0]
    assert differ(theta, initial_beta)  # pre-training moved theta: the check below has power
    assert_weights_equal(beta, theta)

    for step, (before, theta, after) in enumerate(spy.updates):
        # theta is the generator after this step's policy-gradient update
        assert differ(theta, spy.at_rewards[step][1]), f"step {step + 1}: the PG step moved theta"
        assert_weights_equal(before, spy.at_rewards[step][0])  # nothing else touched beta
        for b, old, new in zip(after, before, theta):
            np.testing.assert_allclose(b, rate * old + (1.0 - rate) * new, rtol=1e-6, atol=1e-7)
        if step + 1 < steps:  # the next rollouts use the updated beta
            assert_weights_equal(spy.at_rewards[step + 1][0], after)
        if rate == 0.0:
            assert_weights_equal(after, theta)
    if rate == RATE:  # beta lags theta
        assert differ(spy.at_rewards[-1][0], spy.at_rewards[-1][1])
    assert_weights_equal(weights_of(trainer.objective.rollout_policy), spy.updates[-1][2])


def resume_copy(source, destination, log=None, **overrides):
    shutil.copytree(source, destination)
    trainer = make_trainer(destination, resume=True, log=log, rollout_update_rate=RATE, **overrides)
    return trainer, RolloutSpy(trainer)


@pytest.fixture(scope="module")
def resumed_chain(tmp_path_factory):
    """The same run as `uninterrupted`, made by pre-training alone and then two
    resumes of one adversarial iteration each; the folders and both spies."""
    root = tmp_path_factory.mktemp("chain")
    make_trainer(root / "pretrained", rollout_update_rate=RATE, **dict(SCHEDULE, adversarial_iterations=0)).run()
    first, first_spy = resume_copy(root / "pretrained", root / "one", **dict(SCHEDULE, adversarial_iterations=1))
    first.run()
    second, second_spy = resume_copy(root / "one", root / "two", **SCHEDULE)
    second.run()
    return root, first_spy, second_spy


def test_resumes_at_any_point_give_the_betas_of_an_uninterrupted_run(uninterrupted, resumed_chain):
    _, expected, _ = uninterrupted
    _, first_spy, second_spy = resumed_chain
    seen = first_spy.at_rewards + second_spy.at_rewards
    assert len(seen) == len(expected.at_rewards) == 4
    for (beta, theta), (expected_beta, expected_theta) in zip(seen, expected.at_rewards):
        assert_weights_equal(theta, expected_theta)
        assert_weights_equal(beta, expected_beta)
    # The resume mid-adversarial kept beta (a second beta <- theta would make them equal).
    assert differ(*second_spy.at_rewards[0])


def rewrite_in_old_layout(run_dir):
    """Re-writes the run's newest checkpoint as versions before 2026-12-03
    wrote it: the same objects without `rollout_started`. Returns its prefix."""
    trainer = make_trainer(run_dir, resume=True, rollout_update_rate=RATE, **SCHEDULE)
    trainer.restore_or_start()
    older = tf.train.Checkpoint(**{k: v for k, v in trainer.checkpointed.items() if k != "rollout_started"})
    older.save_counter.assign(trainer.checkpoint.save_counter)
    shutil.rmtree(run_dir / "checkpoints")
    prefix = tf.train.CheckpointManager(older, str(run_dir / "checkpoints"), max_to_keep=1).save()
    assert not tf.train.load_checkpoint(prefix).has_tensor(ROLLOUT_STARTED_KEY)
    return prefix


def test_a_checkpoint_of_the_old_layout_taken_before_the_adversarial_phase_starts_beta_from_theta(
    uninterrupted, resumed_chain, tmp_path
):
    _, expected, _ = uninterrupted
    shutil.copytree(resumed_chain[0] / "pretrained", tmp_path / "pretrained")
    old = rewrite_in_old_layout(tmp_path / "pretrained")
    lines = []
    trainer, spy = resume_copy(tmp_path / "pretrained", tmp_path / "resumed", log=lines.append, **SCHEDULE)
    trainer.run()
    assert len(spy.at_rewards) == len(expected.at_rewards)
    for (beta, theta), (expected_beta, expected_theta) in zip(spy.at_rewards, expected.at_rewards):
        assert_weights_equal(theta, expected_theta)
        assert_weights_equal(beta, expected_beta)
    assert not [line for line in lines if "rollout policy is kept" in line]
    # later checkpoints continue the old one's numbering
    assert checkpoints.number(trainer.checkpoint_manager.latest_checkpoint) > checkpoints.number(old)


def test_a_checkpoint_of_the_old_layout_taken_mid_adversarial_keeps_its_beta(uninterrupted, resumed_chain, tmp_path):
    """Its beta started from the untrained generator; the run keeps it and says so."""
    _, expected, _ = uninterrupted
    shutil.copytree(resumed_chain[0] / "one", tmp_path / "one")
    rewrite_in_old_layout(tmp_path / "one")
    lines = []
    trainer, spy = resume_copy(tmp_path / "one", tmp_path / "resumed", log=lines.append, **SCHEDULE)
    trainer.run()
    assert_weights_equal(spy.at_rewards[0][0], expected.at_rewards[2][0])
    assert [line for line in lines if "rollout policy is kept" in line]


def test_a_stop_during_the_first_iteration_does_not_copy_beta_again(resumed_chain, tmp_path):
    """A signal mid-iteration checkpoints after the generator step in progress;
    the resume repeats the iteration from there, with the beta it had."""
    shutil.copytree(resumed_chain[0] / "pretrained", tmp_path / "run")
    trainer = make_trainer(tmp_path / "run", resume=True, rollout_update_rate=RATE, **SCHEDULE)
    spy = RolloutSpy(trainer)
    update = trainer.objective.update_rollout

    def stop_after_the_first_update():
        update()
        trainer.request_stop()

    trainer.objective.update_rollout = stop_after_the_first_update
    with pytest.raises(TrainingInterrupted):
        trainer.run()
    assert int(trainer.adversarial_iteration) == 0 and len(spy.updates) == 1
    shutil.copytree(tmp_path / "run", tmp_path / "old_layout")
    rewrite_in_old_layout(tmp_path / "old_layout")  # as a version before the flag wrote it
    for run_dir in ("run", "old_layout"):
        lines = []
        resumed = make_trainer(tmp_path / run_dir, resume=True, log=lines.append, rollout_update_rate=RATE, **SCHEDULE)
        resumed_spy = RolloutSpy(resumed)
        resumed.run()
        beta, theta = resumed_spy.at_rewards[0]
        assert_weights_equal(beta, spy.updates[0][2])
        assert differ(beta, theta)  # a second beta <- theta would make them equal
        assert bool([line for line in lines if "rollout policy is kept" in line]) == (run_dir == "old_layout")


def perturbed(model, seed):
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(weight + rng.normal(0.0, 0.5, weight.shape).astype(np.float32))


def test_rollout_rewards_come_from_the_rollout_policy_not_the_generator(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.make_data()
    tokens = trainer.sample(16, seed=[1, 2])
    seed, reals = tf.constant([3, 4], tf.int64), trainer.objective.real_batch()
    before = trainer.objective.rewards(tokens, seed, reals).numpy()
    perturbed(trainer.generator, 0)  # theta moves: the same rewards
    np.testing.assert_array_equal(trainer.objective.rewards(tokens, seed, reals).numpy(), before)
    perturbed(trainer.objective.rollout_policy, 1)  # beta moves: other completions, other prefix rewards
    after = trainer.objective.rewards(tokens, seed, reals).numpy()
    assert not np.allclose(after[:, :-1], before[:, :-1])
    np.testing.assert_array_equal(after[:, -1], before[:, -1])  # the last token's: D of the whole sequence


# ------------------------------------------------------------ discriminator round
def distinct_real_rows(count, length, vocabulary=10):
    """`count` different rows of ids < `vocabulary` (the generator below only makes 19s)."""
    digits = (np.arange(count)[:, np.newaxis] // vocabulary ** np.arange(length)) % vocabulary
    return digits.astype(np.int32)


@pytest.mark.parametrize("d_loss", ["standard", "relativistic"])
@pytest.mark.parametrize("num_negatives", [32, 128])
def test_discriminator_round_labels_real_rows_real_and_generated_rows_fake(d_loss, num_negatives, tmp_path):
    trainer = make_trainer(tmp_path, d_loss=d_loss)
    trainer.make_data()
    real = distinct_real_rows(128, trainer.model_config.sequence_length)
    trainer.real_data = tf.constant(real)
    dominate(trainer.generator, 19)  # every generated row is all 19s
    seen = []
    step = trainer.discriminator_step

    def spy_step(tokens, labels, seed):
        seen.append((tokens.numpy(), labels.numpy()))
        return step(tokens, labels, seed)

    trainer.discriminator_step = spy_step
    epochs, batch = 2, trainer.train_config.batch_size
    trainer.run_discriminator_round(num_negatives, epochs, "discriminator", 1)

    batches_per_epoch = 2 * num_negatives // batch
    assert len(seen) == epochs * batches_per_epoch
    real_rows = {row.tobytes() for row in real}
    positives_per_epoch = []
    for epoch in range(epochs):
        positives = []
        for tokens, labels in seen[epoch * batches_per_epoch : (epoch + 1) * batches_per_epoch]:
            generated = np.all(tokens == 19, axis=1)
            assert generated.any() and (~generated).any()
            np.testing.assert_array_equal(labels, (~generated).astype(np.int32))  # 1 = real
            if d_loss != "standard":  # whole (real, generated) pairs in every batch
                np.testing.assert_array_equal(labels, np.tile([1, 0], batch // 2))
            positives += [row.tobytes() for row in tokens[labels == 1]]
        # balanced: as many real rows as generated ones, each a different row of the real data
        assert len(positives) == len(set(positives)) == num_negatives
        assert set(positives) <= real_rows
        positives_per_epoch.append(set(positives))
    assert positives_per_epoch[0] == positives_per_epoch[1]  # one real subset a round, reshuffled each epoch


# ------------------------------------------------------------ evaluation against NumPy
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_generator_log_probs(generator, tokens):
    """log G(tokens[:, t] | tokens[:, :t]) (rows, time) from the weights, float64: Keras'
    LSTMCell gates in the order (input, forget, candidate, output); banned ids get no mass."""
    weight = {name: value.numpy().astype(np.float64) for name, value in _generator_weights(generator).items()}
    hidden = weight["recurrent"].shape[0]
    rows, time = tokens.shape
    h, c = np.zeros((rows, hidden)), np.zeros((rows, hidden))
    inputs = np.full(rows, generator.start_token)
    log_probs = np.zeros((rows, time))
    for t in range(time):
        z = weight["embedding"][inputs] @ weight["kernel"] + h @ weight["recurrent"] + weight["bias"]
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        logits = h @ weight["output_kernel"] + weight["output_bias"]
        logits[:, list(generator.banned_tokens)] = -1e9  # never drawn: out of the normaliser too
        log_probs[:, t] = log_softmax(logits)[np.arange(rows), tokens[:, t]]
        inputs = tokens[:, t]
    return log_probs


def _generator_weights(generator):
    return {
        "embedding": generator.embedding.embeddings,
        "kernel": generator.cell.kernel,
        "recurrent": generator.cell.recurrent_kernel,
        "bias": generator.cell.bias,
        "output_kernel": generator.output_layer.kernel,
        "output_bias": generator.output_layer.bias,
    }


def numpy_real_probability(discriminator, tokens):
    """P(real) (rows,) with dropout off: embedding, VALID convolutions + ReLU,
    max over time, highway, 2 logits (index 1 = real), float64."""
    read = lambda variable: variable.numpy().astype(np.float64)  # noqa: E731
    embedded = read(discriminator.embedding.embeddings)[tokens]  # (rows, time, embed)
    time = tokens.shape[1]
    pooled = []
    for conv in discriminator.convolutions:
        kernel, width = read(conv.kernel), conv.kernel_size[0]
        positions = time - width + 1
        outputs = sum(embedded[:, tap : tap + positions] @ kernel[tap] for tap in range(width)) + read(conv.bias)
        pooled.append(np.maximum(outputs, 0.0).max(axis=1))
    features = np.concatenate(pooled, axis=1)
    highway = discriminator.highway
    gate = sigmoid(features @ read(highway.gate.kernel) + read(highway.gate.bias))
    transform = np.maximum(features @ read(highway.transform.kernel) + read(highway.transform.bias), 0.0)
    features = gate * transform + (1.0 - gate) * features
    logits = features @ read(discriminator.output_layer.kernel) + read(discriminator.output_layer.bias)
    return softmax(logits)[:, 1]


def test_evaluation_figures_equal_a_numpy_computation(tmp_path):
    # Row counts that are not multiples of the evaluation batch (512 rows): the
    # last batch is padded with zero-weight rows, which must not count.
    trainer = make_trainer(
        tmp_path,
        oracle_overrides=dict(num_test_samples=600),
        num_eval_samples=700,
        num_discriminator_eval_samples=300,
        mle_epochs=1,
        discriminator_pretrain_rounds=1,
        adversarial_iterations=0,
    )
    record = trainer.run()[-1]
    assert record["phase"] == "discriminator"  # nothing trained after it: the weights are the evaluated ones
    t, m = trainer.train_config, trainer.model_config
    samples = trainer.sample(t.num_eval_samples, seed=[t.seed, 7]).numpy()  # the evaluation's draw
    test_data = trainer.test_data.numpy()
    assert samples.shape == (700, m.sequence_length) and test_data.shape == (600, m.sequence_length)

    arrays = oracle.random_oracle_arrays(
        m.vocabulary_size, m.generator_embedding_dim, m.generator_hidden_dim, trainer.oracle_config.seed
    )
    oracle_logits = numpy_oracle_logits(arrays, samples, m.start_token)
    oracle_log_probs = np.take_along_axis(log_softmax(oracle_logits), samples[..., np.newaxis], axis=2)
    assert record["nll_oracle"] == pytest.approx(-oracle_log_probs.mean(), rel=1e-5)
    assert record["nll_test"] == pytest.approx(
        -numpy_generator_log_probs(trainer.generator, test_data).mean(), rel=1e-5
    )

    count = t.num_discriminator_eval_samples
    judged_real = numpy_real_probability(trainer.discriminator, test_data[:count]) > 0.5
    judged_fake = numpy_real_probability(trainer.discriminator, samples[:count]) <= 0.5
    # the comparison has power: swapping the real and generated rows would change both figures
    assert abs(judged_real.mean() - (1.0 - judged_fake.mean())) > 2.0 / count
    assert record["d_accuracy_real"] == pytest.approx(judged_real.mean(), abs=1.01 / count)
    assert record["d_accuracy_fake"] == pytest.approx(judged_fake.mean(), abs=1.01 / count)


CHECKPOINTS = os.path.join(os.path.dirname(__file__), "data", "checkpoints")


@pytest.mark.parametrize("layout", ["before_rollout_started", "before_split"])
def test_checkpoints_written_by_earlier_versions_resume(tmp_path, layout):
    """Real checkpoints written by the old code (tests/data/checkpoints/make_checkpoint.py):
    mid-adversarial, so their rollout policy is kept, every value comes back, and the run goes on."""
    folder = os.path.join(CHECKPOINTS, layout)
    with open(os.path.join(folder, "expected.json"), encoding="utf-8") as stream:
        expected = json.load(stream)
    run_dir = tmp_path / "run"
    shutil.copytree(folder, run_dir / "checkpoints")
    lines = []
    trainer = Trainer(*tiny_configs(run_dir, True, adversarial_iterations=2), log=lines.append)
    prefix = trainer.restore_or_start()
    assert os.path.basename(prefix) == expected["checkpoint"]
    assert trainer.weights_digest() == expected["weights_sha256"]  # generator, rollout policy, discriminator
    assert [int(trainer.mle_epoch), int(trainer.discriminator_round), int(trainer.adversarial_iteration)] == [
        expected["mle_epoch"],
        expected["discriminator_round"],
        expected["adversarial_iteration"],
    ]
    assert [int(x) for x in trainer.rng.state.numpy()] == expected["rng_state"]
    assert bool(trainer.objective.rollout_started)  # mid-adversarial: beta is never copied again
    warned = any("written mid-adversarial by a version" in line for line in lines)
    assert warned == (layout == "before_rollout_started")
    history = trainer.run()
    assert [r["step"] for r in history if r["phase"] == "adversarial"] == [2]
    assert os.path.basename(trainer.checkpoint_manager.latest_checkpoint) == "ckpt-5"
