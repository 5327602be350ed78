"""--temperature_curve: the final generator scored over sampling temperatures
(the quality-diversity protocol of Caccia et al. 2020)."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import log_softmax, new_generator, tiny_configs

from tfseqgan import sampler
from tfseqgan.training.loop import TEMPERATURES_FILE, Trainer


def test_token_log_probs_at_a_temperature_are_those_of_the_divided_logits():
    generator = new_generator(vocabulary_size=10, sequence_length=5)
    tokens = tf.constant(np.random.default_rng(0).integers(0, 10, (3, 5)).astype(np.int32))
    logits = generator(tokens).numpy()  # (batch, time, vocab)
    for temperature in (0.5, 1.0, 1.7):
        expected = np.take_along_axis(log_softmax(logits / temperature), tokens.numpy()[..., None], axis=2)[..., 0]
        got = generator.token_log_probs(tokens, temperature=temperature).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # and they differ from temperature 1's (the temperature is not ignored)
    assert not np.allclose(generator.token_log_probs(tokens, temperature=0.5), generator.token_log_probs(tokens))


@pytest.fixture(scope="module")
def curve_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("curve_run")
    trainer = Trainer(*tiny_configs(run_dir, temperature_curve=(0.05, 1.0, 3.0)), log=lambda *args: None)
    history = trainer.run()
    with open(run_dir / TEMPERATURES_FILE, encoding="utf-8") as stream:
        document = json.load(stream)
    return trainer, history, document


def test_the_curve_point_at_temperature_1_is_the_final_evaluation(curve_run):
    trainer, history, document = curve_run
    assert [p["temperature"] for p in document["curve"]] == [0.05, 1.0, 3.0]
    assert document["adversarial_iteration"] == trainer.train_config.adversarial_iterations
    final = history[-1]
    assert final["phase"] == "adversarial" and final["step"] == trainer.train_config.adversarial_iterations
    at_one = document["curve"][1]
    for key in ("nll_oracle", "nll_test", "bleu_2", "self_bleu_2", "distinct_share"):
        assert at_one[key] == pytest.approx(final[key], rel=1e-6), key
    assert "d_accuracy_real" not in at_one


def test_the_curve_samples_and_scores_at_each_temperature(curve_run):
    trainer, _, document = curve_run
    cold, one, hot = document["curve"]
    # NLL-test at a temperature is the mean NLL of the held-out rows under softmax(logits / T)
    tokens = trainer.test_data
    logits = trainer.generator(tokens).numpy()
    for point in (cold, hot):
        log_probs = np.take_along_axis(log_softmax(logits / point["temperature"]), tokens.numpy()[..., None], axis=2)[
            ..., 0
        ]
        assert point["nll_test"] == pytest.approx(-log_probs.mean(), rel=1e-4)
    # The cold samples are (nearly) the greedy sequence: few distinct rows, and the oracle rates
    # them differently from the samples at temperature 1.
    greedy = sampler.sample_free(trainer.generator, 1, tf.constant([0, 0], tf.int64), greedy=True).numpy()
    cold_samples = trainer.sample(64, seed=[trainer.train_config.seed, 7], temperature=0.01).numpy()
    assert (cold_samples == greedy).all(axis=1).mean() > 0.9
    assert cold["distinct_share"] < one["distinct_share"] <= hot["distinct_share"]
    assert cold["nll_oracle"] != one["nll_oracle"] != hot["nll_oracle"]
    assert all(math.isfinite(p["nll_test"]) for p in document["curve"])


def test_no_curve_without_the_flag(tmp_path):
    trainer = Trainer(*tiny_configs(tmp_path, adversarial_iterations=0), log=lambda *args: None)
    trainer.run()
    assert not (tmp_path / TEMPERATURES_FILE).exists()
