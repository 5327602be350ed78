"""The one loader of an exported ONNX model folder (onnxruntime and the
standard library only; `OnnxSampler` and `python -m export.onnx_sample` both
go through it).

A model folder is data from anyone, so nothing in it is followed blindly:

- the `tfseqgan` metadata entry is capped in size and checked against the
  schema (export/schema.py: known keys, types, ranges);
- a side file (vocabulary, scorer) is named by a plain file name, opened only
  inside the model's folder (a link leading out is refused), only when it is
  a regular file (no FIFO, no device) and no larger than its cap;
- when the export's `manifest.json` lies beside the folder (`EXPORT/onnx/..`)
  and lists this model, every file read must be listed in it with the same
  SHA-256 and size (a manifest.json there that does not list the model is
  someone else's and is ignored);
- the graph's inputs and outputs must be the sampler step's (or the scorer's)
  names, types and shapes (`SAMPLER_SIGNATURE`, `SCORER_SIGNATURE`).

Every failure is a `SamplerInputError` whose one-line message names the file.
The graph itself is run by onnxruntime, which refuses external data outside
the model's folder; what a run emits is checked by the caller.
"""

import dataclasses
import errno
import hashlib
import os
import stat

import onnxruntime

from tfseqgan.export import schema
from tfseqgan.export.limits import MAX_DESCRIPTION_BYTES, MAX_MANIFEST_BYTES, MAX_ONNX_BYTES, MAX_VOCABULARY_BYTES
from tfseqgan.export.schema import MANIFEST_FILE, MANIFEST_FORMAT, METADATA_KEY

# name -> (type, shape): None is a dynamic dimension, a string names a size in the metadata.
SAMPLER_SIGNATURE = {
    "inputs": {
        "token": ("tensor(int32)", [None]),
        "h": ("tensor(float)", [None, "hidden_dim"]),
        "c": ("tensor(float)", [None, "hidden_dim"]),
        "temperature": ("tensor(float)", []),
        "uniforms": ("tensor(float)", [None, 2]),
        "bias": ("tensor(float)", ["vocabulary_size"]),
        "greedy": ("tensor(bool)", []),
    },
    "outputs": {
        "next_token": ("tensor(int32)", [None]),
        "next_h": ("tensor(float)", [None, "hidden_dim"]),
        "next_c": ("tensor(float)", [None, "hidden_dim"]),
    },
}
SCORER_SIGNATURE = {
    "inputs": {"ids": ("tensor(int32)", [None, "sequence_length"])},
    "outputs": {
        "log_probs": ("tensor(float)", [None, "sequence_length"]),
        "lengths": ("tensor(int32)", [None]),
        "total": ("tensor(float)", [None]),
    },
}
FILE_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class SamplerInputError(ValueError):
    """A bad argument or model file; the message is one line."""


def quiet_onnxruntime():
    """onnxruntime's own log lines off stderr (the CLIs print one `error:` line instead)."""
    onnxruntime.set_default_logger_severity(4)


def first_line(error):
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def _size(count):
    return f"{count:,} bytes"


OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO opens without a writer, and is then refused


def _checked_descriptor(descriptor, path, what, max_bytes, single_link):
    """`descriptor` when fstat says a regular file of at most `max_bytes` (and, if `single_link`,
    one name only); otherwise it is closed and a SamplerInputError raised."""
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            kind = FILE_KINDS.get(stat.S_IFMT(status.st_mode), "not a plain file")
            raise SamplerInputError(f"{path}: {kind}, not a regular file")
        if status.st_size > max_bytes:
            raise SamplerInputError(
                f"{path}: the {what} is {_size(status.st_size)}, more than the {_size(max_bytes)} allowed"
            )
        if single_link and status.st_nlink != 1:
            raise SamplerInputError(
                f"{path}: the {what} has {status.st_nlink} hard links; a file of a model's folder must have "
                "one (a hard link can share a file from anywhere): copy it"
            )
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def open_regular(path, what, max_bytes):
    """A descriptor of `path` (a path the user gave: links followed), a regular file of at most
    `max_bytes`, checked on the descriptor itself (nothing swapped in between)."""
    try:
        descriptor = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        raise SamplerInputError(f"{path}: no such file") from None
    except OSError as error:
        raise SamplerInputError(f"{path}: cannot open the {what} ({error.strerror})") from None
    return _checked_descriptor(descriptor, path, what, max_bytes, single_link=False)


def open_side_file(directory, name, what, max_bytes):
    """A descriptor of the side file `name` (a plain name, checked by the schema) of the model's
    folder `directory`, opened relative to the folder's own descriptor and without following a
    last link (O_NOFOLLOW): a link is followed only when it stays in the folder, and the file
    it leads to is then opened the same way. The file must be a regular file of at most
    `max_bytes` with one name (no hard link to a file elsewhere)."""
    path = os.path.join(directory, name)
    try:
        folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise SamplerInputError(f"{directory}: cannot open the model's folder ({error.strerror})") from None
    try:
        try:
            descriptor = os.open(name, OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=folder)
        except OSError as error:
            if error.errno != errno.ELOOP:  # ELOOP: the name is a link
                raise
            real = os.path.realpath(os.path.join(directory, os.readlink(name, dir_fd=folder)))
            if os.path.dirname(real) != directory:
                raise SamplerInputError(f"{path}: a link leading out of the model's folder; refused") from None
            descriptor = os.open(os.path.basename(real), OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=folder)
    except FileNotFoundError:
        raise SamplerInputError(f"{path}: no such file") from None
    except OSError as error:  # ELOOP again: a link swapped in meanwhile
        raise SamplerInputError(f"{path}: cannot open the {what} ({error.strerror})") from None
    finally:
        os.close(folder)
    return _checked_descriptor(descriptor, path, what, max_bytes, single_link=True)


def _blocks(descriptor, path, max_bytes, what):
    """The file's content in blocks; refused when it grows past max_bytes while it is read."""
    total = 0
    try:
        while block := os.read(descriptor, 1 << 20):
            total += len(block)
            if total > max_bytes:
                raise SamplerInputError(f"{path}: the {what} grew past {_size(max_bytes)} while it was read")
            yield block
    except OSError as error:
        raise SamplerInputError(f"{path}: cannot read the {what} ({error.strerror})") from None


def read_descriptor(descriptor, path, max_bytes, what):
    """The rest of an open file (closed after), at most `max_bytes`."""
    try:
        return b"".join(_blocks(descriptor, path, max_bytes, what))
    finally:
        os.close(descriptor)


def read_regular_file(path, max_bytes, what):
    """The bytes of `path`, a regular file of at most `max_bytes` (opened without blocking)."""
    return read_descriptor(open_regular(path, what, max_bytes), path, max_bytes, what)


def read_manifest(directory, model_name):
    """The export's manifest.json beside the model's folder when it lists this model, else None.

    A manifest.json there that is not a regular file, not a tfseqgan manifest
    or does not list `model_name` in this folder belongs to something else (a
    stray /tmp/manifest.json, a web app) and is ignored; a link is not
    followed. One that lists the model is the export's: every file read must
    then be in it.

    Returns:
        (export folder, the manifest's "files" table), or None.
    """
    export_dir = os.path.dirname(directory)
    path = os.path.join(export_dir, MANIFEST_FILE)
    if not os.path.lexists(path) or os.path.islink(path):
        return None
    try:
        manifest = schema.parse_json(read_regular_file(path, MAX_MANIFEST_BYTES, "manifest"), path)
    except (SamplerInputError, schema.SchemaError):
        return None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT and isinstance(files, dict)):
        return None
    if f"{os.path.basename(directory)}/{model_name}" not in files:
        return None
    return export_dir, files


def check_listed(manifest, path, digest, size):
    """A file read from the model folder must be in the manifest, same SHA-256 and size."""
    if manifest is None:
        return
    export_dir, files = manifest
    relative = os.path.relpath(path, export_dir).replace(os.sep, "/")
    entry = files.get(relative)
    if not isinstance(entry, dict):
        raise SamplerInputError(f"{path}: not listed in {os.path.join(export_dir, MANIFEST_FILE)}")
    if entry.get("sha256") != digest or entry.get("bytes") != size:
        raise SamplerInputError(
            f"{path}: SHA-256 {digest[:12]}... ({_size(size)}) differs from {MANIFEST_FILE}'s "
            f"{str(entry.get('sha256'))[:12]}... ({entry.get('bytes')} bytes); the folder was altered"
        )


def check_signature(session, expected, info, path):
    """The graph's inputs and outputs are `expected`'s names, element types and shapes."""
    for side, values in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        found = {value.name: (value.type, list(value.shape)) for value in values}
        wanted = expected[side]
        if sorted(found) != sorted(wanted):
            raise SamplerInputError(
                f"{path}: graph {side} are {', '.join(sorted(found)) or 'none'}; expected {', '.join(sorted(wanted))}"
            )
        for name, (element_type, shape) in wanted.items():
            dims = [info[dim] if isinstance(dim, str) else dim for dim in shape]
            actual_type, actual_shape = found[name]
            fits = len(actual_shape) == len(dims) and all(
                not isinstance(have, int) if want is None else have == want
                for have, want in zip(actual_shape, dims, strict=True)
            )
            if actual_type != element_type or not fits:
                shown = ["batch" if dim is None else dim for dim in dims]
                raise SamplerInputError(
                    f"{path}: graph {side[:-1]} {name} is {actual_type} {actual_shape}; expected {element_type} {shown}"
                )


def external_data(data):
    """Names of the tensors of a serialized ONNX model that keep their data in other files."""
    try:
        import onnx  # the protobuf classes only; no TensorFlow
    except ImportError:
        raise SamplerInputError(
            "the onnx package is needed to check the model before it runs: pip install onnx"
        ) from None

    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # protobuf's DecodeError and others
        raise SamplerInputError(f"not an ONNX model ({first_line(error)})") from None
    found = []

    def tensors(tensor):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            found.append(tensor.name or "(unnamed)")

    def graph(graph_proto):
        for tensor in graph_proto.initializer:
            tensors(tensor)
        for sparse in graph_proto.sparse_initializer:
            tensors(sparse.values)
            tensors(sparse.indices)
        nodes(graph_proto.node)

    def nodes(node_list):
        for node in node_list:
            for attribute in node.attribute:
                for tensor in [attribute.t, *attribute.tensors]:
                    tensors(tensor)
                for sparse in [attribute.sparse_tensor, *attribute.sparse_tensors]:
                    tensors(sparse.values)
                    tensors(sparse.indices)
                for subgraph in [attribute.g, *attribute.graphs]:
                    graph(subgraph)

    graph(model.graph)
    for function in model.functions:
        nodes(function.node)
    return found


def open_session(descriptor, path, threads, manifest):
    """An onnxruntime session of the open model file `descriptor` (checked, capped; listed in the
    manifest if any). The bytes that are hashed are the bytes the session is built from: no
    file swapped in between; and a model whose tensors keep their data in other files is refused
    (onnxruntime would look for those files itself, relative to the working directory)."""
    data = read_descriptor(descriptor, path, MAX_ONNX_BYTES, "model")
    if manifest is not None:
        check_listed(manifest, path, hashlib.sha256(data).hexdigest(), len(data))
    try:
        outside = external_data(data)
    except SamplerInputError as error:
        raise SamplerInputError(f"{path}: {error}") from None
    if outside:
        raise SamplerInputError(
            f"{path}: tensors with external data ({', '.join(outside[:3])}); a model must hold all its weights"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle worker threads would spin between the loop's many small runs,
    # taking the core the NumPy part of the loop needs (measured 1.6x
    # slower on a busy 2-core host).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 4  # errors come back as exceptions, not log lines
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise SamplerInputError(f"{path}: onnxruntime cannot load it ({first_line(error)})") from None


def read_metadata(session, path):
    """The validated `tfseqgan` metadata entry of a session's model."""
    custom = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in custom:
        raise SamplerInputError(f"{path}: not a tfseqgan export (no '{METADATA_KEY}' metadata)")
    text = custom[METADATA_KEY]
    if len(text) > MAX_DESCRIPTION_BYTES:
        raise SamplerInputError(f"{path}: the '{METADATA_KEY}' metadata is longer than {_size(MAX_DESCRIPTION_BYTES)}")
    source = f"{path}: metadata"
    try:
        return schema.check_onnx_metadata(schema.parse_json(text, source), source)
    except schema.SchemaError as error:
        raise SamplerInputError(str(error)) from None


def read_vocabulary(directory, name, size, manifest):
    """The tokens of the vocabulary file: one a line, in id order, `size` of them, all different."""
    path = os.path.join(directory, name)
    data = read_descriptor(
        open_side_file(directory, name, "vocabulary", MAX_VOCABULARY_BYTES), path, MAX_VOCABULARY_BYTES, "vocabulary"
    )
    check_listed(manifest, path, hashlib.sha256(data).hexdigest(), len(data))
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise SamplerInputError(f"{path}: the vocabulary is not UTF-8 ({error.reason} at byte {error.start})") from None
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != size:
        raise SamplerInputError(f"{path}: {len(lines)} tokens, but the model has {size} ids")
    if len(set(lines)) != len(lines):
        seen = set()
        twice = next(token for token in lines if token in seen or seen.add(token))
        raise SamplerInputError(f"{path}: the token {twice!r} is listed twice")
    return lines


@dataclasses.dataclass
class LoadedModel:
    """A checked sampler: its session, metadata, folder, vocabulary and the manifest (or None)."""

    session: object
    info: dict
    directory: str
    tokens: list
    manifest: tuple | None


def load_sampler(model_path):
    """Loads and checks sampler.onnx, its metadata, vocabulary and manifest (see the module docstring)."""
    path = os.path.realpath(model_path)
    directory = os.path.dirname(path)
    descriptor = open_regular(model_path, "model", MAX_ONNX_BYTES)
    try:
        manifest = read_manifest(directory, os.path.basename(path))
    except BaseException:
        os.close(descriptor)
        raise
    session = open_session(descriptor, path, 1, manifest)
    info = read_metadata(session, model_path)
    if info["role"] != "sampler":
        raise SamplerInputError(f"{model_path}: this is the {info['role']} model; pass {info['sampler']}")
    check_signature(session, SAMPLER_SIGNATURE, info, model_path)
    tokens = read_vocabulary(directory, info["vocabulary"], info["vocabulary_size"], manifest)
    return LoadedModel(session, info, directory, tokens, manifest)


def load_scorer(model, threads):
    """The scorer named in a loaded sampler's metadata, checked the same way; its metadata must agree."""
    path = os.path.join(model.directory, model.info["scorer"])
    descriptor = open_side_file(model.directory, model.info["scorer"], "model", MAX_ONNX_BYTES)
    session = open_session(descriptor, path, threads, model.manifest)
    info = read_metadata(session, path)
    expected = dict(model.info, role="scorer")
    if info != expected:
        differing = sorted(key for key in expected if info.get(key) != expected[key])
        raise SamplerInputError(f"{path}: its metadata differs from the sampler's ({', '.join(differing)})")
    check_signature(session, SCORER_SIGNATURE, info, path)
    return session


def run(session, outputs, feed, path):
    """session.run, with onnxruntime's errors as one-line SamplerInputErrors naming the model."""
    try:
        return session.run(outputs, feed)
    except Exception as error:  # onnxruntime raises its own exception types
        raise SamplerInputError(f"{path}: onnxruntime failed to run it ({first_line(error)})") from None
