"""A training run's generator, as the export needs it: its sizes from
`RUN/model.json` (written by main.py at the start of a run; `RUN/flags.cfg` for
older runs), its weights from the newest checkpoint, its vocabulary.

Only the generator is restored (`expect_partial`): the discriminator, the
rollout copy and the optimizers stay in the checkpoint.

The description is checked against the schema (export/schema.py) before the
generator is built, so out-of-range ids and oversized models are refused in
one line instead of failing inside Keras or allocating gigabytes. A damaged
newest checkpoint is skipped with a warning for the newest intact one, as
training's resume does (tfseqgan/checkpoints.py); the export only reads the
run directory, so nothing is set aside.
"""

import dataclasses
import json
import os
import sys
import types

import tensorflow as tf

from tfseqgan import checkpoints, text
from tfseqgan.export import loader, schema
from tfseqgan.export.limits import MAX_DESCRIPTION_BYTES
from tfseqgan.export.schema import MODEL_FORMAT, TOKENIZERS
from tfseqgan.generator import Generator

MODEL_FILE = "model.json"
FLAGS_FILE = "flags.cfg"
CHECKPOINT_DIR = "checkpoints"
# Counters saved beside the generator in the trainer's checkpoint.
PHASE_COUNTERS = ("mle_epoch", "discriminator_round", "adversarial_iteration")


class ExportError(RuntimeError):
    """An export that cannot be made or did not verify; one line, naming the file."""


def warn(message):
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class RunModel:
    """A restored generator and what decoding needs.

    Attributes:
        generator: the `Generator` with the checkpoint's weights.
        tokens: the vocabulary, one string per id (synthetic runs: "0", "1", ...).
        tokenizer: "char", "word" or "ids" (how tokens are joined into text).
        end_token: the id that ends a sequence, or None (synthetic runs).
        run_dir, checkpoint: where it came from.
        counters: the checkpoint's phase counters (MLE epoch, D round,
            adversarial iteration), where present.
        skipped_checkpoints: newer checkpoints that were damaged, skipped.
    """

    generator: Generator
    tokens: list
    tokenizer: str
    end_token: int | None
    run_dir: str
    checkpoint: str
    counters: dict
    skipped_checkpoints: list = dataclasses.field(default_factory=list)

    @property
    def sequence_length(self):
        return self.generator.sequence_length

    @property
    def vocabulary_size(self):
        return self.generator.vocabulary_size


def model_description(generator, tokenizer, end_token, dataset):
    """The content of model.json: the generator's Keras config and how its ids read."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
    return {
        "format": MODEL_FORMAT,
        "generator": generator.get_config(),
        "tokenizer": tokenizer,
        "end_token": end_token,
        "dataset": dataset,
    }


def write_model_json(run_dir, generator, tokenizer, end_token, dataset):
    """Writes RUN/model.json atomically; returns its path."""
    path = os.path.join(run_dir, MODEL_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        json.dump(model_description(generator, tokenizer, end_token, dataset), stream, indent=2)
        stream.write("\n")
    os.replace(tmp, path)
    return path


def _read_flags_cfg(path):
    """--name=value lines of a flagfile (--name / --noname for booleans)."""
    values = {}
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            line = line.strip()
            if not line.startswith("--"):
                continue
            name, equals, value = line[2:].partition("=")
            if equals:
                values[name] = value
            elif name.startswith("no"):
                values[name[2:]] = "false"
            else:
                values[name] = "true"
    return values


def _description_from_flags(run_dir):
    """model.json's content rebuilt from RUN/flags.cfg (runs made before main.py wrote model.json)."""
    path = os.path.join(run_dir, FLAGS_FILE)
    try:
        flags = _read_flags_cfg(path)
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"{path}: not readable as UTF-8 text ({error})") from None
    try:
        dataset = flags.get("dataset", "synthetic")
        sizes = {
            "sequence_length": int(flags["sequence_length"]),
            "embedding_dim": int(flags["generator_embedding_dim"]),
            "hidden_dim": int(flags["generator_hidden_dim"]),
            "init_stddev": float(flags.get("generator_init_stddev", 0.1)),
            "seed": int(flags.get("seed", 0)),
        }
        if dataset == "synthetic":
            config = dict(
                sizes, vocabulary_size=int(flags["vocabulary_size"]), start_token=int(flags.get("start_token", 0))
            )
            tokenizer, end_token = "ids", None
        else:
            vocabulary = text.Vocabulary.load(os.path.join(run_dir, text.VOCABULARY_FILE))
            config = dict(
                sizes,
                vocabulary_size=len(vocabulary),
                start_token=text.START_ID,
                banned_tokens=[text.PAD_ID, text.START_ID],
            )
            tokenizer = flags.get("tokenizer", "auto")
            if tokenizer == "auto":
                tokenizer = text.DATASETS[dataset]["tokenizer"] if dataset in text.DATASETS else "word"
            end_token = text.END_ID
    except KeyError as missing:
        raise ExportError(f"{path}: no --{missing.args[0]} line; cannot tell the generator's sizes") from None
    except ValueError as error:
        raise ExportError(f"{path}: {error}") from None
    except text.CorpusError as error:
        raise ExportError(str(error)) from None
    description = {"format": MODEL_FORMAT, "generator": config, "tokenizer": tokenizer, "end_token": end_token}
    try:
        return schema.check_model_description(description, path)
    except schema.SchemaError as error:
        raise ExportError(str(error)) from None


def read_description(run_dir):
    """model.json of a run, or the same rebuilt from its flags.cfg."""
    if not os.path.isdir(run_dir):
        raise ExportError(f"--run_dir={run_dir}: no such directory")
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.lexists(path):
        if os.path.isfile(os.path.join(run_dir, FLAGS_FILE)):
            return _description_from_flags(run_dir)
        raise ExportError(f"--run_dir={run_dir}: neither {MODEL_FILE} nor {FLAGS_FILE}; is it a tfseqgan run?")
    try:  # regular files only, opened without blocking (a FIFO named model.json must not hang the export)
        data = loader.read_regular_file(path, MAX_DESCRIPTION_BYTES, "model description")
    except loader.SamplerInputError as error:
        raise ExportError(str(error)) from None
    try:
        description = schema.parse_json(data, path)
        if isinstance(description, dict) and description.get("format") != MODEL_FORMAT:
            raise ExportError(f"{path}: not a tfseqgan model description (format {MODEL_FORMAT})")
        return schema.check_model_description(description, path)
    except schema.SchemaError as error:
        raise ExportError(str(error)) from None


def newest_intact_checkpoint(checkpoint_dir, log=warn):
    """The newest checkpoint of a run that reads back whole, and the damaged ones skipped.

    The candidates are those the state file names, or those on disk when it is
    missing or unreadable (`checkpoints.candidates`, as training's resume);
    each is read back in full (`checkpoints.verify`) and a damaged one is
    reported and skipped.

    Returns:
        (prefix, [(damaged prefix, reason), ...]).
    """
    run_dir = os.path.dirname(checkpoint_dir)
    if not os.path.isdir(checkpoint_dir):
        raise ExportError(f"{checkpoint_dir}: no checkpoint; train first (tfseqgan-train --run_dir={run_dir})")
    # A read-only view of the state file in the shape `checkpoints.candidates`
    # reads (a CheckpointManager would set a broken state file aside).
    listed = types.SimpleNamespace(checkpoints=checkpoints.recorded(checkpoint_dir), directory=checkpoint_dir)
    skipped = []
    for prefix in checkpoints.candidates(listed, log):
        try:
            checkpoints.verify(prefix)
        except checkpoints.CheckpointCorrupt as error:
            log(f"warning: checkpoint {prefix} is damaged: {error}; trying the previous one")
            skipped.append((prefix, str(error)))
            continue
        if skipped:
            log(f"warning: exporting {prefix}, the newest intact checkpoint")
        return prefix, skipped
    if skipped:
        raise ExportError(f"no readable checkpoint in {checkpoint_dir}: " + "; ".join(reason for _, reason in skipped))
    raise ExportError(f"{checkpoint_dir}: no checkpoint; train first (tfseqgan-train --run_dir={run_dir})")


def load_run(run_dir, log=warn):
    """The run's generator with its newest intact checkpoint's weights (`log` gets the warnings).

    Raises:
        ExportError: no description, no checkpoint, a vocabulary that does not
            match, or a checkpoint without the generator's variables.
    """
    description = read_description(run_dir)
    try:
        # float32 whatever the training precision: the weights are float32 anyway.
        generator = Generator.from_config(dict(description["generator"], name="generator", dtype="float32"))
    except (KeyError, TypeError, ValueError) as error:
        raise ExportError(f"{run_dir}/{MODEL_FILE}: cannot build the generator ({error})") from None
    tokenizer, end_token = description["tokenizer"], description["end_token"]
    if tokenizer == "ids":
        tokens = [str(index) for index in range(generator.vocabulary_size)]
    else:
        vocabulary_path = os.path.join(run_dir, text.VOCABULARY_FILE)
        try:
            tokens = text.Vocabulary.load(vocabulary_path).tokens
        except text.CorpusError as error:
            raise ExportError(str(error)) from None
        if len(tokens) != generator.vocabulary_size:
            raise ExportError(
                f"{vocabulary_path}: {len(tokens)} tokens, but the generator has {generator.vocabulary_size} ids"
            )
    checkpoint_dir = os.path.join(run_dir, CHECKPOINT_DIR)
    latest, skipped = newest_intact_checkpoint(checkpoint_dir, log)
    try:
        status = tf.train.Checkpoint(generator=generator).restore(latest).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{latest}: the generator does not match this checkpoint ({first_line})") from None
    reader = tf.train.load_checkpoint(latest)
    counters = {}
    for name in PHASE_COUNTERS:
        key = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
        if reader.has_tensor(key):
            counters[name] = int(reader.get_tensor(key))
    return RunModel(
        generator=generator,
        tokens=list(tokens),
        tokenizer=tokenizer,
        end_token=None if end_token is None else int(end_token),
        run_dir=os.path.abspath(run_dir),
        checkpoint=os.path.abspath(latest),
        counters=counters,
        skipped_checkpoints=[os.path.abspath(prefix) for prefix, _ in skipped],
    )
