"""The ONNX side: a sampler step model and a scorer model, converted with tf2onnx.

tf2onnx converts neither the TensorFlow sampler's stateless random ops nor
its `tf.searchsorted`, so the sampler is one decoding step
(`graph.onnx_step_function`) that `export/onnx_sample.py` drives with a small
NumPy loop: it feeds the previous token and the LSTM state back, draws the
step's uniforms from a seeded NumPy generator, and keeps given tokens where a
prefix or an acrostic asks. The scorer is the whole
teacher-forced pass (`graph.score_tokens`).

Each model carries a `tfseqgan` metadata entry (JSON: sizes, start and end
token, tokenizer, the vocabulary file beside it), so the runner needs nothing
but the .onnx file and that vocabulary.
"""

import contextlib
import json
import logging

import onnx
import tensorflow as tf
import tf2onnx
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from tfseqgan.export import graph
from tfseqgan.export.schema import METADATA_FORMAT, METADATA_KEY

OPSET = 17
SAMPLER_FILE = "sampler.onnx"
SCORER_FILE = "scorer.onnx"


def _rename(graph_proto, mapping):
    """Renames values in a graph and in every subgraph (the If of the step)."""
    for node in graph_proto.node:
        node.input[:] = [mapping.get(name, name) for name in node.input]
        node.output[:] = [mapping.get(name, name) for name in node.output]
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _rename(attribute.g, mapping)
            for subgraph in attribute.graphs:
                _rename(subgraph, mapping)
    for value in list(graph_proto.input) + list(graph_proto.output):
        value.name = mapping.get(value.name, value.name)


@contextlib.contextmanager
def _quiet():
    """Silences the deprecation notices of TF1 graph utilities and tf2onnx's info lines."""
    loggers = [tf.get_logger(), logging.getLogger("tf2onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def convert(function, opset=OPSET):
    """A tf.function with an input signature -> ONNX ModelProto whose inputs
    and outputs carry the function's argument and output names.

    The function is frozen first (`convert_variables_to_constants_v2`): tf2onnx's
    `from_function` takes captured variables but not the captured constant of
    the generator's banned-token mask.
    """
    concrete = function.get_concrete_function()
    with _quiet():
        frozen = convert_variables_to_constants_v2(concrete)
        input_names = [tensor.name for tensor in frozen.inputs]
        output_names = [tensor.name for tensor in frozen.outputs]
        model, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=input_names, output_names=output_names, opset=opset
        )
    mapping = {name: name.split(":")[0] for name in input_names}
    outputs = concrete.structured_outputs
    mapping.update({outputs[key].name: key for key in outputs})
    _rename(model.graph, mapping)
    onnx.checker.check_model(model)
    return model


def metadata(run_model, vocabulary_file):
    """What the runner needs besides the graph: sizes, special ids, decoding."""
    generator = run_model.generator
    return {
        "format": METADATA_FORMAT,
        "vocabulary_size": generator.vocabulary_size,
        "sequence_length": generator.sequence_length,
        "hidden_dim": generator.hidden_dim,
        "start_token": generator.start_token,
        "end_token": run_model.end_token,
        "banned_tokens": list(generator.banned_tokens),
        "tokenizer": run_model.tokenizer,
        "vocabulary": vocabulary_file,
        "sampler": SAMPLER_FILE,
        "scorer": SCORER_FILE,
    }


def _save(model, path, info, role):
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(dict(info, role=role))
    model.producer_name = "tfseqgan"
    onnx.save(model, path)


def write_onnx(run_model, directory, vocabulary_file, opset=OPSET):
    """Writes sampler.onnx and scorer.onnx into `directory` (the vocabulary
    file `vocabulary_file` must be put beside them); returns their paths."""
    info = metadata(run_model, vocabulary_file)
    generator = run_model.generator
    paths = {}
    for role, file, function in (
        ("sampler", SAMPLER_FILE, graph.onnx_step_function(generator)),
        ("scorer", SCORER_FILE, graph.onnx_score_function(generator, run_model.end_token)),
    ):
        path = tf.io.gfile.join(directory, file)
        _save(convert(function, opset), path, info, role)
        paths[role] = path
    return paths
