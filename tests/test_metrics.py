"""Metrics: chunked NLL and the metrics.jsonl writer."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import new_generator

from tfseqgan import metrics


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 512])
def test_mean_token_nll_equals_mean_negative_log_prob(chunk_size):
    generator = new_generator(10, 5, 4, 6, init_stddev=0.5, seed=2)
    tokens = tf.constant(np.random.default_rng(0).integers(0, 10, (7, 5)).astype(np.int32))
    expected = -float(tf.reduce_mean(generator.token_log_probs(tokens)))
    assert metrics.mean_token_nll(generator, tokens, chunk_size=chunk_size) == pytest.approx(expected, rel=1e-5)


def test_writer_appends_json_lines_and_truncates(tmp_path):
    writer = metrics.MetricsWriter(str(tmp_path))
    records = [
        {"phase": "mle", "step": 0, "nll_oracle": 3.5},
        {"phase": "mle", "step": 1, "nll_oracle": 3.0, "note": "text is kept"},
        {"phase": "adversarial", "step": 0, "nll_oracle": float("nan")},
    ]
    for step, record in enumerate(records):
        writer.write(record, step)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[1]) == records[1]
    read = metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
    assert read[:2] == records[:2] and math.isnan(read[2]["nll_oracle"])
    assert (tmp_path / "tensorboard").is_dir()
    writer.truncate_after(lambda r: r["phase"] == "mle" and r["step"] <= 0)
    assert metrics.read_metrics(str(tmp_path / "metrics.jsonl")) == records[:1]
