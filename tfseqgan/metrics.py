"""Evaluation figures and where they are written: metrics.jsonl, TensorBoard."""

import json
import math
import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# TensorBoard's scalar plugin reads summaries tagged with this metadata; writing
# them with the core `tf.summary.write` avoids depending on the tensorboard
# package just to log (install tensorboard to view them).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)


METRICS_FILE = "metrics.jsonl"


def mean_token_nll(model, tokens, chunk_size=512, end_token=None):
    """Mean per-token NLL (nats) of `tokens` (rows, time) under `model`, in
    chunks so the (rows, time, vocab) logits never exist at once. With
    `end_token`, positions after a sequence's first end token (its padding)
    are left out."""
    total = count = 0.0
    rows = int(tokens.shape[0])
    for begin in range(0, rows, chunk_size):
        chunk = tokens[begin : begin + chunk_size]
        chunk_total, chunk_count = _negative_log_likelihood_sum(model, chunk, -1 if end_token is None else end_token)
        total += float(chunk_total)
        count += float(chunk_count)
    return total / max(count, 1.0)


@tf.function(reduce_retracing=True)
def _negative_log_likelihood_sum(model, tokens, end_token):
    log_probs = model.token_log_probs(tokens, training=False)  # (rows, time)
    ended_before = tf.cumsum(tf.cast(tf.equal(tokens, end_token), tf.float32), axis=1, exclusive=True) > 0
    mask = 1.0 - tf.cast(ended_before, tf.float32)
    return -tf.reduce_sum(log_probs * mask), tf.reduce_sum(mask)


class MetricsWriter:
    """Appends one JSON object a line to run_dir/metrics.jsonl and mirrors the
    numeric fields to TensorBoard under run_dir/tensorboard."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, METRICS_FILE)
        self.summary_writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))

    def write(self, record, global_step):
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, sort_keys=True) + "\n")
        with self.summary_writer.as_default(step=global_step):
            phase = record.get("phase", "run")
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    tf.summary.write(f"{phase}/{key}", tf.constant(value, tf.float32), metadata=_SCALAR_METADATA)
        self.summary_writer.flush()

    def truncate_after(self, keep):
        """Drops records for which keep(record) is False (used on resume, so
        records written after the restored checkpoint are not duplicated)."""
        if not os.path.exists(self.path):
            return
        records = read_metrics(self.path)
        kept = [r for r in records if keep(r)]
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as stream:
            for record in kept:
                stream.write(json.dumps(record, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


def read_metrics(path):
    """The records of a metrics.jsonl file. A last line cut short (a run
    killed while appending it) is left out: its evaluation came after the
    newest checkpoint, so a resumed run makes it again."""
    with open(path, encoding="utf-8") as stream:
        lines = stream.read().split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: an unfinished append
                continue
            raise ValueError(f"{path}:{number}: not a JSON record") from None
    return records
