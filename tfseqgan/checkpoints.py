"""Checkpoint files on disk: verifying, naming what is broken, and keeping a
failed or broken checkpoint from hiding the good ones.

A `tf.train.CheckpointManager` checkpoint `ckpt-N` is the files
`ckpt-N.index` and `ckpt-N.data-XXXXX-of-YYYYY`, listed (newest last) in the
`checkpoint` state file. TensorFlow writes the files under `ckpt-N_temp/` and
renames them into place, and replaces the state file atomically; the trainer
adds that a new checkpoint is synced to disk and read back whole before the
state file names it and before an old one is rotated out.
"""

import glob
import os
import re
import shutil

import tensorflow as tf

STATE_FILE = "checkpoint"
CORRUPT_SUFFIX = ".corrupt"


class CheckpointCorrupt(Exception):
    """A checkpoint that cannot be read; `path` is the file at fault."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def number(prefix):
    """`.../ckpt-12` -> 12 (-1 when the name has no number)."""
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def data_files(prefix):
    return sorted(glob.glob(glob.escape(prefix) + ".data-?????-of-?????"))


def on_disk(directory):
    """Prefixes of every `*.index` checkpoint in `directory`, oldest first."""
    prefixes = [path[: -len(".index")] for path in glob.glob(os.path.join(glob.escape(directory), "*.index"))]
    return sorted(prefixes, key=number)


def describe(error):
    """The first line of an error's message, without TensorFlow's function-node prefix."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    return text[:300]


def verify(prefix):
    """Reads every tensor of checkpoint `prefix` (each is checksummed).

    Raises:
        CheckpointCorrupt: naming the missing or unreadable file.
    """
    index = prefix + ".index"
    if not os.path.isfile(index):
        raise CheckpointCorrupt(index, "missing")
    if not data_files(prefix):
        raise CheckpointCorrupt(prefix + ".data-00000-of-00001", "missing")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as error:  # OpError, IndexError, ...: whatever a broken file makes the reader raise
        message = describe(error)
        culprit = next((path for path in data_files(prefix) if os.path.basename(path) in message), index)
        raise CheckpointCorrupt(culprit, f"unreadable ({message})") from None
    try:
        for name in reader.get_variable_to_dtype_map():
            reader.get_tensor(name)
    except Exception as error:
        files = data_files(prefix)
        culprit = files[0] if len(files) == 1 else prefix + ".data-*"
        raise CheckpointCorrupt(culprit, f"unreadable ({describe(error)})") from None


def sync(prefix):
    """fsyncs the checkpoint's files and their directory, so a crash of the
    machine after the state file names the checkpoint cannot lose its data."""
    for path in [prefix + ".index", *data_files(prefix)]:
        with open(path, "rb") as stream:
            os.fsync(stream.fileno())
    directory = os.open(os.path.dirname(prefix) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def discard(prefix):
    """Removes what a failed write of `prefix` left: its files and `<prefix>_temp/`."""
    for path in [prefix + ".index", *data_files(prefix)]:
        if os.path.exists(path):
            os.remove(path)
    shutil.rmtree(prefix + "_temp", ignore_errors=True)


def set_aside(prefix):
    """Renames the files of a broken checkpoint to `*.corrupt` (kept for a
    post-mortem, out of the way of the checkpoint numbers to come)."""
    for path in [prefix + ".index", *data_files(prefix)]:
        if os.path.exists(path):
            os.replace(path, path + CORRUPT_SUFFIX)


def recorded(directory):
    """The checkpoints the state file names, oldest first ([] when it is
    missing or unreadable)."""
    try:
        state = tf.train.get_checkpoint_state(directory)
    except ValueError:
        return []
    return list(state.all_model_checkpoint_paths) if state else []


def record(directory, prefixes):
    """Rewrites the state file to name `prefixes` (oldest first), the last as newest."""
    path = os.path.join(directory, STATE_FILE)
    if not prefixes:
        if os.path.exists(path):
            os.remove(path)
        return
    relative = [os.path.basename(p) for p in prefixes]
    tf.compat.v1.train.update_checkpoint_state(directory, relative[-1], relative)


def open_manager(checkpoint, directory, max_to_keep, log=print):
    """A `tf.train.CheckpointManager`; a state file that TensorFlow refuses
    outright is set aside (to `checkpoint.corrupt`) with a warning, and the
    checkpoint files are then found on disk by `candidates`."""
    try:
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)
    except ValueError as error:
        path = os.path.join(directory, STATE_FILE)
        os.replace(path, path + CORRUPT_SUFFIX)
        log(f"warning: {path} is unreadable ({describe(error)}); moved to {path}{CORRUPT_SUFFIX}")
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)


def candidates(manager, log=print):
    """The checkpoints to try on resume, newest first: those the state file
    names; when it names none but checkpoint files are there (the state file
    is missing or unreadable), those found on disk, with a warning."""
    listed = list(manager.checkpoints)
    if not listed:
        found = on_disk(manager.directory)
        if found:
            path = os.path.join(manager.directory, STATE_FILE)
            log(
                f"warning: {path} is missing or unreadable but {len(found)} checkpoint(s) are in "
                f"{manager.directory}; trying them newest first"
            )
        listed = found
    return sorted(listed, key=number, reverse=True)
