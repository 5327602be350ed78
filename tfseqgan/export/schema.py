"""The schema of a model description: what `RUN/model.json` and the `tfseqgan`
metadata entry of the ONNX models may hold (the standard library only, so the
ONNX runner stays free of TensorFlow).

Both are untrusted input: every key is known, every value has its type and
its range (ids inside the vocabulary, sizes bounded) and the weights they
imply are bounded before anything is allocated. A failure is a `SchemaError`
whose one-line message names the file, the key and what was expected.
"""

import json

from tfseqgan.export.limits import (
    MAX_LAYER_SIZE,
    MAX_PARAMETERS,
    MAX_SEED_VALUE,
    MAX_SEQUENCE_LENGTH,
    MAX_TIME_BY_VOCABULARY,
    MAX_VOCABULARY_SIZE,
    UNKNOWN_ID,
)

TOKENIZERS = ("char", "word", "ids")
METADATA_KEY = "tfseqgan"  # the ONNX models' metadata entry
MANIFEST_FILE = "manifest.json"  # an export's table of contents
MANIFEST_FORMAT = 1
ROLES = ("sampler", "scorer")
METADATA_FORMAT = 1
METADATA_KEYS = (
    "format",
    "vocabulary_size",
    "sequence_length",
    "hidden_dim",
    "start_token",
    "end_token",
    "banned_tokens",
    "tokenizer",
    "vocabulary",
    "sampler",
    "scorer",
    "role",
)
MODEL_FORMAT = 1
MODEL_KEYS = ("format", "generator", "tokenizer", "end_token", "dataset")
MODEL_OPTIONAL_KEYS = ("dataset",)
GENERATOR_KEYS = (
    "vocabulary_size",
    "sequence_length",
    "embedding_dim",
    "hidden_dim",
    "start_token",
    "init_stddev",
    "seed",
    "banned_tokens",
)
GENERATOR_OPTIONAL_KEYS = ("init_stddev", "seed", "banned_tokens", "name", "trainable", "dtype")
MAX_INIT_STDDEV = 100.0
MAX_NAME_LENGTH = 255


class SchemaError(ValueError):
    """A description that does not fit the schema; the message is one line."""


def _shown(value):
    text = json.dumps(value, ensure_ascii=True) if _jsonable(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value):
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def parse_json(data, source):
    """bytes or str -> the JSON value; SchemaError for anything that is not JSON."""
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        return json.loads(data)
    except UnicodeDecodeError:
        raise SchemaError(f"{source}: not UTF-8 text") from None
    except RecursionError:
        raise SchemaError(f"{source}: not JSON (nested too deeply)") from None
    except ValueError as error:
        raise SchemaError(f"{source}: not JSON ({error})") from None


def _object(value, source, keys, optional=()):
    if not isinstance(value, dict):
        raise SchemaError(f"{source}: expected a JSON object, got {type(value).__name__} {_shown(value)}")
    unknown = sorted(set(value) - set(keys) - set(optional))
    if unknown:
        raise SchemaError(f"{source}: unknown key(s) {', '.join(map(_shown, unknown))}; known: {', '.join(keys)}")
    missing = [key for key in keys if key not in value and key not in optional]
    if missing:
        raise SchemaError(f"{source}: missing key(s) {', '.join(missing)}")
    return value


def integer(values, key, low, high, source):
    """values[key], an integer (not a bool) in [low, high]."""
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SchemaError(f"{source}: {key} must be an integer in [{low}, {high}], got {_shown(value)}")
    return value


def _choice(values, key, choices, source):
    value = values[key]
    if not isinstance(value, str) or value not in choices:
        raise SchemaError(f"{source}: {key} must be one of {', '.join(choices)}, got {_shown(value)}")
    return value


def plain_file_name(values, key, source):
    """values[key], a plain file name: no folder part, no '..', no control characters."""
    name = values[key]
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_NAME_LENGTH
        or name in (".", "..")
        or any(separator in name for separator in ("/", "\\"))
        or any(ord(character) < 32 or ord(character) == 127 for character in name)
    ):
        raise SchemaError(
            f"{source}: {key} must be a plain file name inside the model's folder (no '/', no '..'), got {_shown(name)}"
        )
    return name


def check_ids(values, source, vocabulary_size):
    """start_token, end_token (or null) and banned_tokens, all inside the vocabulary."""
    top = vocabulary_size - 1
    integer(values, "start_token", 0, top, source)
    if values.get("end_token") is not None:
        integer(values, "end_token", 0, top, source)
    banned = values.get("banned_tokens", [])
    if not isinstance(banned, list):
        raise SchemaError(f"{source}: banned_tokens must be a list of ids, got {_shown(banned)}")
    for token in banned:
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token <= top:
            raise SchemaError(f"{source}: banned_tokens must hold ids in [0, {top}], got {_shown(token)}")
    if len(set(banned)) != len(banned):
        raise SchemaError(f"{source}: banned_tokens lists an id twice: {_shown(banned)}")
    if len(banned) >= vocabulary_size:
        raise SchemaError(f"{source}: banned_tokens leaves no id to draw")


def check_sizes(vocabulary_size, sequence_length, end_token, source):
    """What the decoders allocate and index beyond the weights.

    A (time, vocab) logit bias (acrostics, the ONNX loop) is at most
    MAX_TIME_BY_VOCABULARY floats; a text vocabulary (one with an end token)
    holds the reserved ids <pad> <s> </s> <unk> and at least one token.
    """
    if sequence_length * vocabulary_size > MAX_TIME_BY_VOCABULARY:
        raise SchemaError(
            f"{source}: sequence_length x vocabulary_size = {sequence_length * vocabulary_size:,}, "
            f"more than the {MAX_TIME_BY_VOCABULARY:,} allowed"
        )
    if end_token is not None and vocabulary_size <= UNKNOWN_ID + 1:
        raise SchemaError(
            f"{source}: vocabulary_size must be at least {UNKNOWN_ID + 2} with an end token "
            f"(the reserved ids 0-{UNKNOWN_ID} and a token), got {vocabulary_size}"
        )


def check_onnx_metadata(info, source):
    """The `tfseqgan` metadata entry of sampler.onnx / scorer.onnx (see export/onnx_model.py)."""
    _object(info, source, METADATA_KEYS)
    integer(info, "format", METADATA_FORMAT, METADATA_FORMAT, source)
    vocabulary_size = integer(info, "vocabulary_size", 2, MAX_VOCABULARY_SIZE, source)
    sequence_length = integer(info, "sequence_length", 1, MAX_SEQUENCE_LENGTH, source)
    hidden_dim = integer(info, "hidden_dim", 1, MAX_LAYER_SIZE, source)
    if vocabulary_size * (hidden_dim + 1) > MAX_PARAMETERS:
        raise SchemaError(
            f"{source}: vocabulary_size x hidden_dim = {vocabulary_size * hidden_dim} output weights, "
            f"more than the {MAX_PARAMETERS} allowed"
        )
    check_ids(info, source, vocabulary_size)
    check_sizes(vocabulary_size, sequence_length, info["end_token"], source)
    _choice(info, "tokenizer", TOKENIZERS, source)
    _choice(info, "role", ROLES, source)
    for key in ("vocabulary", "sampler", "scorer"):
        plain_file_name(info, key, source)
    return info


def parameter_count(vocabulary_size, embedding_dim, hidden_dim):
    """Weights of the generator: embedding, LSTM (4 gates), output layer."""
    lstm = 4 * hidden_dim * (embedding_dim + hidden_dim + 1)
    return vocabulary_size * embedding_dim + lstm + hidden_dim * vocabulary_size + vocabulary_size


def check_generator_config(config, source):
    """The generator's Keras config in model.json (`Generator.get_config`)."""
    source = f"{source}: generator"
    _object(config, source, GENERATOR_KEYS, GENERATOR_OPTIONAL_KEYS)
    vocabulary_size = integer(config, "vocabulary_size", 2, MAX_VOCABULARY_SIZE, source)
    integer(config, "sequence_length", 1, MAX_SEQUENCE_LENGTH, source)
    embedding_dim = integer(config, "embedding_dim", 1, MAX_LAYER_SIZE, source)
    hidden_dim = integer(config, "hidden_dim", 1, MAX_LAYER_SIZE, source)
    parameters = parameter_count(vocabulary_size, embedding_dim, hidden_dim)
    if parameters > MAX_PARAMETERS:
        raise SchemaError(f"{source}: {parameters} weights, more than the {MAX_PARAMETERS} allowed")
    check_ids(config, source, vocabulary_size)
    stddev = config.get("init_stddev", 0.1)
    if isinstance(stddev, bool) or not isinstance(stddev, int | float) or not 0 < stddev <= MAX_INIT_STDDEV:
        raise SchemaError(f"{source}: init_stddev must be a number in (0, {MAX_INIT_STDDEV:g}], got {_shown(stddev)}")
    if config.get("seed") is not None:
        integer(config, "seed", 0, MAX_SEED_VALUE, source)
    if "name" in config and not isinstance(config["name"], str):
        raise SchemaError(f"{source}: name must be a string, got {_shown(config['name'])}")
    if "trainable" in config and not isinstance(config["trainable"], bool):
        raise SchemaError(f"{source}: trainable must be true or false, got {_shown(config['trainable'])}")
    return config


def check_model_description(description, source):
    """model.json: format, the generator's config, tokenizer, end token (in the vocabulary), dataset."""
    _object(description, source, MODEL_KEYS, MODEL_OPTIONAL_KEYS)
    integer(description, "format", MODEL_FORMAT, MODEL_FORMAT, source)
    config = check_generator_config(description["generator"], source)
    _choice(description, "tokenizer", TOKENIZERS, source)
    if description["end_token"] is not None:
        integer(description, "end_token", 0, config["vocabulary_size"] - 1, source)
    check_sizes(config["vocabulary_size"], config["sequence_length"], description["end_token"], source)
    if "dataset" in description and not isinstance(description["dataset"], str | None):
        raise SchemaError(f"{source}: dataset must be a string, got {_shown(description['dataset'])}")
    return description
