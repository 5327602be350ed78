"""Tiny run directories for the export tests, as main.py leaves them."""

import os

import tensorflow as tf

from export.restore import write_model_json
from tfseqgan import text
from tfseqgan.generator import Generator

POEM_CHARACTERS = list("春夏秋冬风花雪月山水，。")
POEM_TOKENS = list(text.RESERVED_TOKENS) + POEM_CHARACTERS
POEM_LENGTH = 8  # a "quatrain" of four 2-token lines


def make_run(run_dir, kind, seed=0):
    """A run directory as main.py leaves it: model.json, vocab.txt (text), a checkpoint."""
    os.makedirs(run_dir, exist_ok=True)
    if kind == "poem":
        generator = Generator(
            len(POEM_TOKENS),
            POEM_LENGTH,
            embedding_dim=4,
            hidden_dim=8,
            start_token=text.START_ID,
            init_stddev=1.0,  # spread logits: temperature and greedy choices matter
            seed=seed,
            banned_tokens=(text.PAD_ID, text.START_ID),
            name="generator",
        )
        text.Vocabulary(POEM_TOKENS).save(os.path.join(run_dir, text.VOCABULARY_FILE))
        write_model_json(run_dir, generator, "char", text.END_ID, "poems")
    else:
        generator = Generator(12, 6, embedding_dim=4, hidden_dim=8, init_stddev=1.0, seed=seed, name="generator")
        write_model_json(run_dir, generator, "ids", None, "synthetic")
    counter = tf.Variable(3, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(generator=generator, mle_epoch=counter)
    tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, "checkpoints"), max_to_keep=1).save()
    return generator
