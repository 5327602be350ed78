"""The oracle of the synthetic benchmark: an LSTM with fixed weights that plays
the real data distribution (paper section "Synthetic Data Experiments")."""

import os

import numpy as np

from tfseqgan.generator import Generator

GATE_KEYS = (("Wi", "Ui", "bi"), ("Wf", "Uf", "bf"), ("Wc", "Uc", "bc"), ("Wog", "Uog", "bog"))
ORACLE_KEYS = ("embedding", "Wo", "bo") + tuple(k for gate in GATE_KEYS for k in gate)


def oracle_shapes(vocabulary_size, embedding_dim, hidden_dim):
    """Shape of each array of an oracle `.npz` (see docs: REFERENCE.md)."""
    shapes = {"embedding": (vocabulary_size, embedding_dim), "Wo": (hidden_dim, vocabulary_size)}
    shapes["bo"] = (vocabulary_size,)
    for w, u, b in GATE_KEYS:
        shapes[w] = (embedding_dim, hidden_dim)
        shapes[u] = (hidden_dim, hidden_dim)
        shapes[b] = (hidden_dim,)
    return shapes


ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # what np.load takes for an .npz (a zip archive)
NPY_MAGIC = b"\x93NUMPY"
NPZ_HINT = "an oracle is the 15 named arrays saved with numpy.savez"


def _what_instead(head):
    """A few words on a file whose first bytes `head` are not those of a zip archive."""
    if not head:
        return "the file is empty"
    if head.startswith(NPY_MAGIC):
        return "it holds a single .npy array"
    try:
        head.decode("utf-8")
        text = True
    except UnicodeDecodeError as error:
        text = error.start >= len(head) - 3  # only a character cut off at the end of `head`
    if text and not any(byte < 32 and byte not in b"\t\n\r\f" for byte in head):
        return "it is a text file"
    return "it does not start with a zip signature"


def load_oracle_arrays(path):
    """Reads the 15 arrays of an oracle `.npz`; never unpickles.

    Raises:
        ValueError: one line naming the file and what is wrong with it.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: oracle weights file not found")
    try:
        with open(path, "rb") as stream:
            head = stream.read(512)
        # np.load takes any file that is neither a zip nor an .npy for a pickle: with allow_pickle=False
        # it would call a text file "pickled (object) data". Say what the file is instead.
        if head.startswith(ZIP_MAGICS):
            archive = np.load(path, allow_pickle=False)
    except Exception as error:  # OSError, EOFError, BadZipFile, ...: all one message
        raise ValueError(f"{path}: not a readable .npz of plain arrays ({type(error).__name__}: {error})") from None
    if not head.startswith(ZIP_MAGICS):
        raise ValueError(f"{path}: not an .npz archive ({_what_instead(head)}); {NPZ_HINT}")
    try:
        with archive:
            arrays = {key: np.asarray(archive[key]) for key in archive.files}
    except Exception as error:
        raise ValueError(f"{path}: not a readable .npz of plain arrays ({type(error).__name__}: {error})") from None
    missing = [k for k in ORACLE_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing oracle arrays {missing}; expected {list(ORACLE_KEYS)}")
    if arrays["embedding"].ndim != 2 or arrays["Wo"].ndim != 2:
        raise ValueError(
            f"{path}: embedding and Wo must be 2-D, got shapes {arrays['embedding'].shape} and {arrays['Wo'].shape}"
        )
    vocabulary_size, embedding_dim = arrays["embedding"].shape
    hidden_dim = arrays["Wo"].shape[0]
    for key, shape in oracle_shapes(vocabulary_size, embedding_dim, hidden_dim).items():
        if arrays[key].shape != shape:
            raise ValueError(f"{path}: array {key} has shape {arrays[key].shape}, expected {shape}")
        if not np.issubdtype(arrays[key].dtype, np.floating) or not np.all(np.isfinite(arrays[key])):
            raise ValueError(f"{path}: array {key} must hold finite floats (no NaN or Inf)")
    return {k: arrays[k].astype(np.float32) for k in ORACLE_KEYS}


def random_oracle_arrays(vocabulary_size, embedding_dim, hidden_dim, seed):
    """A seeded N(0, 1) oracle of the same form as the paper's."""
    rng = np.random.default_rng(seed)
    shapes = oracle_shapes(vocabulary_size, embedding_dim, hidden_dim)
    return {k: rng.standard_normal(shapes[k]).astype(np.float32) for k in ORACLE_KEYS}


def build_oracle(arrays, sequence_length, start_token=0):
    """A frozen `Generator` computing the oracle's gate equations.

    Keras' LSTMCell keeps the four gates side by side in the order
    (input, forget, candidate, output), which is how they are packed here.
    """
    vocabulary_size, embedding_dim = arrays["embedding"].shape
    hidden_dim = arrays["Wo"].shape[0]
    oracle = Generator(
        vocabulary_size,
        sequence_length,
        embedding_dim=embedding_dim,
        hidden_dim=hidden_dim,
        start_token=start_token,
        name="oracle",
    )
    oracle.embedding.embeddings.assign(arrays["embedding"])
    oracle.cell.kernel.assign(np.concatenate([arrays[w] for w, _, _ in GATE_KEYS], axis=1))
    oracle.cell.recurrent_kernel.assign(np.concatenate([arrays[u] for _, u, _ in GATE_KEYS], axis=1))
    oracle.cell.bias.assign(np.concatenate([arrays[b] for _, _, b in GATE_KEYS], axis=0))
    oracle.output_layer.kernel.assign(arrays["Wo"])
    oracle.output_layer.bias.assign(arrays["bo"])
    oracle.trainable = False
    return oracle
