"""Tiny run directories for the export tests, as main.py leaves them."""

import os

import tensorflow as tf

from tfseqgan import text
from tfseqgan.export.restore import write_model_json
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


POEM_VOCABULARY_SIZE = len(POEM_TOKENS)


def step_metadata(vocabulary_size=POEM_VOCABULARY_SIZE, sequence_length=POEM_LENGTH, hidden_dim=3, **overrides):
    """The `tfseqgan` metadata of a sampler step (as tfseqgan/export/onnx_model.py writes it)."""
    info = {
        "format": 1,
        "vocabulary_size": vocabulary_size,
        "sequence_length": sequence_length,
        "hidden_dim": hidden_dim,
        "start_token": text.START_ID,
        "end_token": text.END_ID,
        "banned_tokens": [text.PAD_ID, text.START_ID],
        "tokenizer": "char",
        "vocabulary": "vocab.txt",
        "sampler": "sampler.onnx",
        "scorer": "scorer.onnx",
        "role": "sampler",
    }
    info.update(overrides)
    return info


def constant_step_model(path, info, emitted, signature_change=None, hidden_dim=None, vocabulary_size=None):
    """Writes a sampler step graph (built with onnx.helper, no TensorFlow) that
    emits `emitted` for every row and passes the state through; `info` goes
    into its metadata as is (a dict is JSON-encoded, a string is kept).

    signature_change: None, "drop greedy" (one input fewer) or "wide h" (h and
    c one wider than info's hidden_dim).
    hidden_dim, vocabulary_size: the graph's sizes (default: info's, or 3 and
    the poem vocabulary's when info is a string).
    """
    import json

    import onnx
    from onnx import TensorProto, helper

    if hidden_dim is None:
        hidden_dim = info["hidden_dim"] if isinstance(info, dict) else 3
    if vocabulary_size is None:
        vocabulary_size = info["vocabulary_size"] if isinstance(info, dict) else len(POEM_TOKENS)
    hidden = hidden_dim + (signature_change == "wide h")
    vocabulary = vocabulary_size
    inputs = [
        helper.make_tensor_value_info("token", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", hidden]),
        helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", hidden]),
        helper.make_tensor_value_info("temperature", TensorProto.FLOAT, []),
        helper.make_tensor_value_info("uniforms", TensorProto.FLOAT, ["batch", 2]),
        helper.make_tensor_value_info("bias", TensorProto.FLOAT, [vocabulary]),
        helper.make_tensor_value_info("greedy", TensorProto.BOOL, []),
    ]
    if signature_change == "drop greedy":
        inputs.pop()
    nodes = [
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("zero", TensorProto.INT32, [], [0])),
        helper.make_node("Constant", [], ["id"], value=helper.make_tensor("id", TensorProto.INT32, [], [emitted])),
        helper.make_node("Mul", ["token", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "id"], ["next_token"]),
        helper.make_node("Identity", ["h"], ["next_h"]),
        helper.make_node("Identity", ["c"], ["next_c"]),
    ]
    outputs = [
        helper.make_tensor_value_info("next_token", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("next_h", TensorProto.FLOAT, ["batch", hidden]),
        helper.make_tensor_value_info("next_c", TensorProto.FLOAT, ["batch", hidden]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "step", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key = "tfseqgan"
    entry.value = info if isinstance(info, str) else json.dumps(info)
    onnx.save(model, str(path))
    return path


def model_folder(folder, info=None, emitted=4, tokens=POEM_TOKENS, signature_change=None, **sizes):
    """folder/sampler.onnx (a constant step, see constant_step_model; `sizes` go to it) and folder/vocab.txt."""
    os.makedirs(folder, exist_ok=True)
    info = step_metadata() if info is None else info
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as stream:
        stream.write("\n".join(tokens) + "\n")
    return str(constant_step_model(os.path.join(folder, "sampler.onnx"), info, emitted, signature_change, **sizes))
