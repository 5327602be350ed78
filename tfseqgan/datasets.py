"""Fetches the project's input data (poems, COCO captions, the oracle LSTM) into a data directory.

    python -m tfseqgan.datasets fetch --data_dir=DIR [--from_dir=SRC] [--only=poems,coco,oracle]
                                      [--force] [--no_verify]

produces the layout of the shared data folder (see docs: REFERENCE.md, "Data")::

    poems/train.txt, poems/valid.txt, poems/LICENSE.texygen
    coco/train.txt, coco/test.txt, coco/LICENSE.texygen
    oracle/target_lstm.npz

from the public originals: Texygen's `data/shi.txt`, `data/image_coco.txt` and
`test_coco.txt` (MIT licence, github.com/geek-ai/Texygen) and `save/target_params_py3.pkl`
of the original SeqGAN code (github.com/LantaoYu/SeqGAN). Without `--from_dir` it downloads
them; with `--from_dir=SRC` it reads them from SRC, which holds either the layout above
(e.g. another data directory) or the originals (`shi.txt`, `image_coco.txt`,
`test_coco.txt`, `target_params_py3.pkl`, directly in SRC or under their paths in the
original repositories).

Every file it writes is checked against `REFERENCE_SHA256`, the SHA-256 of the files the
project was developed with; a mismatch is an error that names the file and both hashes
(`--no_verify` accepts it). Files are written into a temporary folder inside DIR and moved
into place one by one only after their whole dataset verified, so no half-written file is
ever left; files already there and verified are kept unless `--force`.

What is known and what is not about each derivation:

- `oracle/target_lstm.npz`: exact. The pickle is a list of the 15 float32 arrays of the TF1
  code's `TARGET_LSTM` params, in `ORACLE_PARAM_ORDER`; it is read with
  `RestrictedUnpickler`, which builds numpy arrays and nothing else. The zip bytes of an
  `.npz` depend on the numpy version, so the check is on `oracle_arrays_sha256` (the raw
  little-endian float32 bytes of the arrays in that order); `ORACLE_NPZ_FILE_SHA256` is the
  file as numpy 2.4's `np.savez` writes it.
- `coco/*.txt`: believed to be verbatim copies of `image_coco.txt` (train) and
  `test_coco.txt` (test), 10,000 captions each with no newline after the last one. Not
  confirmed: the originals' hashes could not be learnt here (no internet), see
  `ORIGINAL_SHA256`. The Texygen code reads the test file from `data/testdata/test_coco.txt`;
  `data/test_coco.txt` is tried as well.
- `poems/*.txt`: NOT known to reproduce the reference files. These hold 13,493 + 1,000
  distinct lines of `shi.txt` (16,394 lines, by its size; trailing spaces removed) in a shuffled
  order, and lack about a tenth of its distinct lines (7 of 67 sampled from its start, e.g.
  its 7th line "昔 年 怀 壮 气 ..."): a shuffle cut to those sizes, or a filter this code
  does not know. Ruled out, by the positions of shi.txt's first six lines, for every possible
  count of distinct lines: dedupe keeping first occurrences, then
  `random.Random(s).shuffle`, `random.Random(s).sample`, `np.random.RandomState(s).permutation`
  or `np.random.default_rng(s).permutation` for s in {0, 1, 2, 3, 7, 10, 31, 42, 100, 123,
  314, 666, 1000, 1234, 2017, 2018, 2024, 2025, 2333, 3407, 12345}, valid first or last.
  `split_poems` dedupes (keeping first occurrences), shuffles with
  `random.Random(POEMS_SPLIT_SEED)`, takes the first 1,000 lines as valid and the next
  13,493 as train: the same form, most likely not the same lines, so poems made from the
  original fail verification (`--no_verify` keeps them; `--from_dir` copies the reference
  files).

Errors are one line `error: ...` on stderr; exit code 2 for bad flags, 1 for failures.
The module needs numpy, not TensorFlow.
"""

import argparse
import dataclasses
import hashlib
import http.client
import io
import os
import pickle
import random
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

DOWNLOAD_TIMEOUT_S = 60
MAX_ORIGINAL_BYTES = 64 * 2**20  # every original is below 2 MB
TEXYGEN_RAW = "https://raw.githubusercontent.com/geek-ai/Texygen/master/"
SEQGAN_RAW = "https://raw.githubusercontent.com/LantaoYu/SeqGAN/master/"

# The TF1 TARGET_LSTM's `params` order: the order of the pickled list and of the arrays in the npz.
ORACLE_PARAM_ORDER = tuple("embedding Wi Ui bi Wf Uf bf Wog Uog bog Wc Uc bc Wo bo".split())

# SHA-256 of the output files (= the shared data folder's SHA256SUMS); for the npz, of its arrays' bytes.
ORACLE_ARRAYS_SHA256 = "1095de918aba7a2668fd85b4c9e5fbcc39747ce5b70207ce4a8ec814355151a5"
ORACLE_NPZ_FILE_SHA256 = "45e58e243f4644198f0354d01798d35828efe6cf17603940db694b2096c36775"
TEXYGEN_LICENSE_SHA256 = "09e0a2d1652792c8349b7bddb264df926e7b3114a47361356f523a2adb712bc0"
REFERENCE_SHA256 = {
    "poems/train.txt": "3398b80e49cde7ec0ba41edf8469831decc6ef023a9ca76b054e7f9fa5056456",
    "poems/valid.txt": "a4e250c8e14e793b6e8a28b1151ea9c4c251e4b545e44db02f7bcab7337a4c0d",
    "poems/LICENSE.texygen": TEXYGEN_LICENSE_SHA256,
    "coco/train.txt": "2c0fd1f0f43aac6a9dc3926a535516ccf395de535e15ac1fd17cd569420736f5",
    "coco/test.txt": "72e25c9fb4d2cd43182ac602c92f6ffc377762147f9709572943b0b09174bcae",
    "coco/LICENSE.texygen": TEXYGEN_LICENSE_SHA256,
    "oracle/target_lstm.npz": ORACLE_ARRAYS_SHA256,
}

# SHA-256 of the public originals: unknown (they could not be downloaded or read from here), so None:
# not checked. A fetch prints each downloaded original's hash; record it here once confirmed.
ORIGINAL_SHA256 = {
    "shi.txt": None,
    "image_coco.txt": None,
    "test_coco.txt": None,
    "target_params_py3.pkl": None,
}

POEMS_NUM_TRAIN = 13_493
POEMS_NUM_VALID = 1_000
POEMS_TOKENS_PER_LINE = 24  # 20 characters + 2 "，" + 2 "。"
POEMS_SPLIT_SEED = 0

# Texygen's LICENSE (github.com/geek-ai/Texygen, the same text at its commit 3104e22), copied beside the data
# derived from it. The SeqGAN repository has no licence file.
TEXYGEN_LICENSE = """\
MIT License

Copyright (c) 2018 Geek.AI Organization

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


class FetchError(Exception):
    """A failure to report as one line `error: ...` (exit code 1)."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that references something other than what numpy arrays need."""


# ---------------------------------------------------------------------------------------------
# The oracle: a restricted unpickler and the conversion to .npz


def _numpy_reconstructors():
    """numpy's own array-rebuilding functions, found the way numpy pickles arrays (no private imports)."""
    reconstruct = np.empty(0).__reduce__()[0]  # _reconstruct (protocols 0-4)
    frombuffer = np.empty(0).__reduce_ex__(5)[0]  # _frombuffer (protocol 5)
    return reconstruct, frombuffer


def _fresh(function):
    """A new wrapper per lookup, so a pickle's BUILD opcodes can only ever touch a throw-away object."""

    def call(*args):
        return function(*args)

    return call


def _latin1_encode(text, encoding):
    """`_codecs.encode` as protocol 0-2 pickles use it for bytes: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}): only latin-1 text")
    return text.encode("latin-1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (and lists, tuples, numbers, strings) and refuses everything else.

    A pickle can call any importable function while it loads; this one resolves only the
    globals that a pickled list of numpy arrays references, under numpy 1.x (`numpy.core`) and
    2.x (`numpy._core`) names: `_reconstruct`, `numpy.ndarray`, `numpy.dtype` (protocols
    0-4), `_frombuffer` (protocol 5) and `_codecs.encode` with latin-1 (bytes in protocols
    0-2). Any other global (`os.system`, `builtins.eval`, ...) raises `UnsafePickleError`
    before it is called. Python 2 pickles load with `encoding="latin1"`.

    Args:
        file: a binary file object holding the pickle.
    """

    def __init__(self, file, **kwargs):
        kwargs.setdefault("encoding", "latin1")
        super().__init__(file, **kwargs)
        reconstruct, frombuffer = _numpy_reconstructors()
        self._allowed = {
            ("numpy.core.multiarray", "_reconstruct"): lambda: _fresh(reconstruct),
            ("numpy._core.multiarray", "_reconstruct"): lambda: _fresh(reconstruct),
            ("numpy.core.numeric", "_frombuffer"): lambda: _fresh(frombuffer),
            ("numpy._core.numeric", "_frombuffer"): lambda: _fresh(frombuffer),
            ("numpy", "ndarray"): lambda: np.ndarray,
            ("numpy", "dtype"): lambda: np.dtype,
            ("_codecs", "encode"): lambda: _fresh(_latin1_encode),
        }

    def find_class(self, module, name):
        factory = self._allowed.get((module, name))
        if factory is None:
            raise UnsafePickleError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")
        return factory()

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing a persistent id: only numpy arrays are allowed")


def oracle_arrays_from_pickle(path):
    """Reads a TF1 SeqGAN `target_params*.pkl` with `RestrictedUnpickler`.

    Args:
        path: the pickle: a list of 15 float arrays in `ORACLE_PARAM_ORDER`, of shapes
            embedding (V, E); W* (E, H); U* (H, H); b* (H,); Wo (H, V); bo (V,).

    Returns:
        {key: float32 C-contiguous array}, keys in `ORACLE_PARAM_ORDER`.

    Raises:
        FetchError: one line naming the file and what is wrong (including a refused global).
    """
    path = Path(path)
    if path.stat().st_size > MAX_ORIGINAL_BYTES:
        raise FetchError(f"{path}: {path.stat().st_size} bytes, too large for the oracle pickle")
    try:
        with open(path, "rb") as file:
            params = RestrictedUnpickler(file).load()
    except UnsafePickleError as error:
        raise FetchError(f"{path}: unsafe pickle: {error}") from None
    except Exception as error:  # UnpicklingError, EOFError, ValueError, MemoryError, ...: all one message
        raise FetchError(f"{path}: not a readable pickle of numpy arrays ({type(error).__name__}: {error})") from None
    if not isinstance(params, list | tuple) or len(params) != len(ORACLE_PARAM_ORDER):
        found = f"a {type(params).__name__}" + (f" of {len(params)}" if isinstance(params, list | tuple) else "")
        raise FetchError(f"{path}: expected a list of {len(ORACLE_PARAM_ORDER)} arrays, found {found}")
    arrays = {}
    for key, value in zip(ORACLE_PARAM_ORDER, params):
        if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise FetchError(f"{path}: array {key} must be a float numpy array, found {kind}")
        if not np.all(np.isfinite(value)):
            raise FetchError(f"{path}: array {key} holds NaN or Inf")
        arrays[key] = np.ascontiguousarray(value, dtype="<f4")
    check_oracle_shapes(arrays, path)
    return arrays


def check_oracle_shapes(arrays, source):
    """Raises FetchError unless the arrays have the oracle's shapes for some (V, E, H)."""
    if arrays["embedding"].ndim != 2 or arrays["Wo"].ndim != 2:
        raise FetchError(f"{source}: embedding and Wo must be 2-D")
    vocabulary_size, embedding_dim = arrays["embedding"].shape
    hidden_dim = arrays["Wo"].shape[0]
    expected = {"embedding": (vocabulary_size, embedding_dim), "Wo": (hidden_dim, vocabulary_size)}
    expected["bo"] = (vocabulary_size,)
    for gate in ("i", "f", "og", "c"):
        expected["W" + gate] = (embedding_dim, hidden_dim)
        expected["U" + gate] = (hidden_dim, hidden_dim)
        expected["b" + gate] = (hidden_dim,)
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise FetchError(f"{source}: array {key} has shape {arrays[key].shape}, expected {shape}")


def oracle_npz_bytes(arrays):
    """The `.npz` (uncompressed, keys in `ORACLE_PARAM_ORDER`) of the oracle arrays."""
    buffer = io.BytesIO()
    np.savez(buffer, **{key: arrays[key] for key in ORACLE_PARAM_ORDER})
    return buffer.getvalue()


def oracle_arrays_sha256(path):
    """SHA-256 of an oracle `.npz`'s arrays: their little-endian float32 bytes in `ORACLE_PARAM_ORDER`.

    Raises:
        FetchError: the file is no `.npz` of exactly those float arrays (never unpickles).
    """
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise FetchError(f"{path}: expected an .npz archive of named arrays, found a single .npy array")
        with archive:
            if sorted(archive.files) != sorted(ORACLE_PARAM_ORDER):
                raise FetchError(f"{path}: expected the arrays {list(ORACLE_PARAM_ORDER)}, found {archive.files}")
            digest = hashlib.sha256()
            for key in ORACLE_PARAM_ORDER:
                array = archive[key]
                if not np.issubdtype(array.dtype, np.floating):
                    raise FetchError(f"{path}: array {key} has dtype {array.dtype}, expected float32")
                digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    except FetchError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise FetchError(f"{path}: not a readable .npz of plain arrays ({type(error).__name__}: {error})") from None
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Poems and captions


def split_poems(text, seed=POEMS_SPLIT_SEED, num_train=POEMS_NUM_TRAIN, num_valid=POEMS_NUM_VALID):
    """(train, valid) lines from the text of Texygen's `shi.txt` (one quatrain a line).

    Normalises the spacing of each line, keeps lines of 24 tokens, removes duplicates
    (keeping first occurrences), shuffles with `random.Random(seed)` and returns the next
    `num_train` lines after the first `num_valid`. Not known to reproduce the reference
    split (see the module docstring).

    Raises:
        FetchError: fewer than `num_train + num_valid` distinct quatrains.
    """
    lines = (" ".join(line.split()) for line in text.split("\n"))
    unique = list(dict.fromkeys(line for line in lines if len(line.split()) == POEMS_TOKENS_PER_LINE))
    if len(unique) < num_train + num_valid:
        raise FetchError(f"shi.txt: {len(unique)} distinct quatrains, fewer than {num_train} + {num_valid}")
    random.Random(seed).shuffle(unique)
    return unique[num_valid : num_valid + num_train], unique[:num_valid]


def _lines_bytes(lines):
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _derive_poems(originals):
    try:
        text = originals["shi.txt"].read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FetchError(f"{originals['shi.txt']}: not UTF-8 text ({error})") from None
    train, valid = split_poems(text)
    origin = "split from shi.txt"
    return {"poems/train.txt": (_lines_bytes(train), origin), "poems/valid.txt": (_lines_bytes(valid), origin)}


def _derive_coco(originals):
    return {
        "coco/train.txt": (originals["image_coco.txt"].read_bytes(), "copied from image_coco.txt"),
        "coco/test.txt": (originals["test_coco.txt"].read_bytes(), "copied from test_coco.txt"),
    }


def _derive_oracle(originals):
    arrays = oracle_arrays_from_pickle(originals["target_params_py3.pkl"])
    return {"oracle/target_lstm.npz": (oracle_npz_bytes(arrays), "converted from target_params_py3.pkl")}


# ---------------------------------------------------------------------------------------------
# What each dataset is made of


@dataclasses.dataclass(frozen=True)
class Original:
    """A public original file.

    Args:
        name: its file name (in `--from_dir` and in the download folder).
        urls: raw URLs to try in order (the next one only after an HTTP 404).
        repo_paths: its paths inside its repository (also looked for under `--from_dir`).
    """

    name: str
    urls: tuple
    repo_paths: tuple


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One folder of the data directory.

    Args:
        name: the folder (and the `--only` choice).
        data_files: the files derived from the originals, relative to the data directory.
        originals: what they are derived from.
        derive: {original name: path} -> {data file: (bytes, how it was made)}.
        license_text: written as `license_file` beside the data, or None.
        license_file: relative path of that licence file.
    """

    name: str
    data_files: tuple
    originals: tuple
    derive: object
    license_text: str | None = None
    license_file: str | None = None

    @property
    def outputs(self):
        return self.data_files + ((self.license_file,) if self.license_file else ())


DATASETS = {
    "poems": Dataset(
        "poems",
        ("poems/train.txt", "poems/valid.txt"),
        (Original("shi.txt", (TEXYGEN_RAW + "data/shi.txt",), ("data/shi.txt",)),),
        _derive_poems,
        TEXYGEN_LICENSE,
        "poems/LICENSE.texygen",
    ),
    "coco": Dataset(
        "coco",
        ("coco/train.txt", "coco/test.txt"),
        (
            Original("image_coco.txt", (TEXYGEN_RAW + "data/image_coco.txt",), ("data/image_coco.txt",)),
            Original(
                "test_coco.txt",
                (TEXYGEN_RAW + "data/testdata/test_coco.txt", TEXYGEN_RAW + "data/test_coco.txt"),
                ("data/testdata/test_coco.txt", "testdata/test_coco.txt", "data/test_coco.txt"),
            ),
        ),
        _derive_coco,
        TEXYGEN_LICENSE,
        "coco/LICENSE.texygen",
    ),
    "oracle": Dataset(
        "oracle",
        ("oracle/target_lstm.npz",),
        (
            Original(
                "target_params_py3.pkl", (SEQGAN_RAW + "save/target_params_py3.pkl",), ("save/target_params_py3.pkl",)
            ),
        ),
        _derive_oracle,
    ),
}


# ---------------------------------------------------------------------------------------------
# Hashes, downloads, copies


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_sha256(relative_path, path):
    """The hash `REFERENCE_SHA256` records for `relative_path`: of the arrays for an npz, else of the bytes."""
    if relative_path.endswith(".npz"):
        return oracle_arrays_sha256(path)
    return file_sha256(path)


def download(url, destination, timeout=DOWNLOAD_TIMEOUT_S):
    """Downloads `url` to `destination` (at most `MAX_ORIGINAL_BYTES`).

    Raises:
        urllib.error.URLError, OSError, http.client.HTTPException, FetchError (too large).
    """
    with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as file:
        size = 0
        for block in iter(lambda: response.read(1 << 20), b""):
            size += len(block)
            if size > MAX_ORIGINAL_BYTES:
                raise FetchError(f"{url}: larger than {MAX_ORIGINAL_BYTES} bytes; not the expected file")
            file.write(block)


def _download_original(original, folder, log):
    destination = folder / original.name
    for index, url in enumerate(original.urls):
        try:
            download(url, destination)
        except urllib.error.HTTPError as error:
            if error.code == 404 and index + 1 < len(original.urls):
                continue
            reason = f"HTTP {error.code} {error.reason}"
        except urllib.error.URLError as error:
            reason = str(error.reason)
        except (OSError, http.client.HTTPException) as error:  # timeouts, resets, incomplete reads
            reason = str(error) or type(error).__name__
        else:
            size = destination.stat().st_size
            log(f"{original.name}: downloaded {url} ({size} bytes, sha256 {file_sha256(destination)})")
            return destination
        raise FetchError(f"cannot download {url}: {reason}; copy the files by hand and use --from_dir")
    raise AssertionError("unreachable")


def _find_original(original, source):
    for relative in (original.name, *original.repo_paths):
        if (source / relative).is_file():
            return source / relative
    return None


def _check_original(path, original, verify, log):
    expected = ORIGINAL_SHA256.get(original.name)
    if expected is None:
        return
    actual = file_sha256(path)
    if actual != expected:
        message = f"{path}: original {original.name} has sha256 {actual}, expected {expected}"
        if verify:
            raise FetchError(message + " (pass --no_verify to accept it)")
        log(message + "; accepted (--no_verify)")


# ---------------------------------------------------------------------------------------------
# The fetch


def _status(relative_path, actual):
    what = "array sha256" if relative_path.endswith(".npz") else "sha256"
    expected = REFERENCE_SHA256[relative_path]
    if actual == expected:
        return f"{what} {actual[:12]} ok"
    return f"{what} {actual[:12]} differs from the reference {expected[:12]}, accepted by --no_verify"


def _hash_name(relative_path):
    return "array SHA-256" if relative_path.endswith(".npz") else "SHA-256"


def _mismatch(relative_path, origin, actual):
    expected = REFERENCE_SHA256[relative_path]
    hash_name = _hash_name(relative_path)
    return f"{relative_path} ({origin}) has {hash_name} {actual}, expected {expected} (--no_verify accepts it)"


def fetch_dataset(dataset, data_dir, work_dir, from_dir=None, force=False, verify=True, log=print):
    """Produces one dataset's files in `data_dir` (see the module docstring).

    Args:
        dataset: a `Dataset`.
        data_dir: the data directory (a Path).
        work_dir: an empty temporary folder inside `data_dir`.
        from_dir: a folder with the layout or the originals, or None to download.
        force: replace files that are already there.
        verify: a hash mismatch is an error (else it is reported and accepted).
        log: prints one line.

    Raises:
        FetchError: one line.
    """
    todo = []
    for relative in dataset.outputs:
        target = data_dir / relative
        if force or not target.exists():
            todo.append(relative)
            continue
        if not target.is_file():
            raise FetchError(f"{target} exists and is not a file")
        try:
            actual = data_sha256(relative, target)
        except FetchError as error:
            raise FetchError(f"{error}; pass --force to replace it") from None
        if actual != REFERENCE_SHA256[relative] and verify:
            raise FetchError(
                f"{target} exists with {_hash_name(relative)} {actual}, expected {REFERENCE_SHA256[relative]}; "
                "pass --force to replace it"
            )
        log(f"{relative}: kept {target} ({_status(relative, actual)})")
    if not todo:
        return

    produced = {}  # relative path -> (bytes or a path to copy, where it came from)
    needed = [relative for relative in todo if relative in dataset.data_files]
    if needed:
        layout = from_dir is not None and all((from_dir / relative).is_file() for relative in dataset.data_files)
        if layout:
            for relative in needed:
                produced[relative] = (from_dir / relative, f"copied from {from_dir / relative}")
        else:
            originals = {}
            for original in dataset.originals:
                if from_dir is None:
                    path = _download_original(original, work_dir, log)
                else:
                    path = _find_original(original, from_dir)
                    if path is None:
                        wanted = ", ".join(dataset.data_files)
                        raise FetchError(
                            f"{from_dir} holds neither {wanted} nor the original {original.name} "
                            f"(looked for {', '.join((original.name, *original.repo_paths))})"
                        )
                _check_original(path, original, verify, log)
                originals[original.name] = path
            derived = dataset.derive(originals)
            for relative in needed:
                produced[relative] = derived[relative]
    if dataset.license_file in todo:
        produced[dataset.license_file] = (dataset.license_text.encode("utf-8"), "Texygen's MIT licence text")

    staged = []
    for relative, (content, origin) in produced.items():
        temporary = work_dir / relative
        temporary.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, temporary)
        else:
            temporary.write_bytes(content)
        actual = data_sha256(relative, temporary)
        if actual != REFERENCE_SHA256[relative] and verify:
            raise FetchError(_mismatch(relative, origin, actual))
        staged.append((relative, temporary, origin, actual))
    for relative, temporary, origin, actual in staged:
        target = data_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, target)
        log(f"{relative}: wrote {target}, {origin} ({_status(relative, actual)})")


def fetch(data_dir, only=tuple(DATASETS), from_dir=None, force=False, verify=True, log=print):
    """Fetches the datasets named in `only` into `data_dir`; see `fetch_dataset`."""
    data_dir = Path(data_dir)
    from_dir = None if from_dir is None else Path(from_dir)
    if from_dir is not None and not from_dir.is_dir():
        raise FetchError(f"--from_dir {from_dir} is not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchError(f"cannot create the data directory {data_dir}: {error.strerror or error}") from None
    work_dir = Path(tempfile.mkdtemp(prefix=".tfseqgan-fetch-", dir=data_dir))
    try:
        for name in only:
            dataset_work_dir = work_dir / name
            dataset_work_dir.mkdir()
            fetch_dataset(DATASETS[name], data_dir, dataset_work_dir, from_dir, force, verify, log)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line as one line `error: ...` with exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def _dataset_list(text):
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in DATASETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--only takes a comma-separated subset of {','.join(DATASETS)}, got {text!r}")
    return names


def _parser():
    parser = _Parser(prog="python -m tfseqgan.datasets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    fetch_parser = commands.add_parser("fetch", help="fetch the data into --data_dir")
    fetch_parser.add_argument("--data_dir", required=True, help="the data directory to fill")
    fetch_parser.add_argument(
        "--from_dir",
        default=None,
        help="read from this folder (the same layout, or the originals) instead of downloading",
    )
    fetch_parser.add_argument(
        "--only", type=_dataset_list, default=tuple(DATASETS), help="comma-separated subset of poems,coco,oracle"
    )
    fetch_parser.add_argument("--force", action="store_true", help="replace files that are already there")
    fetch_parser.add_argument(
        "--no_verify", action="store_true", help="accept files whose SHA-256 differs from the reference"
    )
    return parser


def main(argv=None):
    """Runs the command line; returns the exit code."""
    arguments = _parser().parse_args(argv)
    try:
        fetch(arguments.data_dir, arguments.only, arguments.from_dir, arguments.force, not arguments.no_verify)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(
            f"error: {error.filename or ''}{': ' if error.filename else ''}{error.strerror or error}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # no traceback on the command line
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
