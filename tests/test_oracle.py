"""Oracle: the gate equations against NumPy, .npz validation, the seeded random oracle."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import log_softmax, softmax

from tfseqgan import oracle

GATE_KEYS = ("Wi", "Ui", "bi", "Wf", "Uf", "bf", "Wog", "Uog", "bog", "Wc", "Uc", "bc")


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_oracle_step(arrays, token, h, c):
    """One step of the oracle's documented gate equations, in float64."""
    a = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
    x = a["embedding"][token]
    i = sigmoid(x @ a["Wi"] + h @ a["Ui"] + a["bi"])
    f = sigmoid(x @ a["Wf"] + h @ a["Uf"] + a["bf"])
    o = sigmoid(x @ a["Wog"] + h @ a["Uog"] + a["bog"])
    candidate = np.tanh(x @ a["Wc"] + h @ a["Uc"] + a["bc"])
    c = f * c + i * candidate
    h = o * np.tanh(c)
    return h @ a["Wo"] + a["bo"], h, c


def numpy_oracle_logits(arrays, tokens, start_token=0):
    """Teacher-forced logits (batch, time, vocab): inputs start token, then tokens[:, :-1]."""
    hidden = arrays["Wo"].shape[0]
    batch, time = tokens.shape
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    inputs = np.full(batch, start_token)
    logits = []
    for t in range(time):
        step_logits, h, c = numpy_oracle_step(arrays, inputs, h, c)
        logits.append(step_logits)
        inputs = tokens[:, t]
    return np.stack(logits, 1)


def test_first_step_probabilities_match_numpy(oracle_path):
    arrays = oracle.load_oracle_arrays(str(oracle_path))
    model = oracle.build_oracle(arrays, sequence_length=20, start_token=0)
    logits, _ = model.step(tf.constant([0]), model.initial_state(1))
    probabilities = tf.nn.softmax(logits).numpy()[0]
    hidden = arrays["Wo"].shape[0]
    expected_logits, _, _ = numpy_oracle_step(arrays, np.array([0]), np.zeros((1, hidden)), np.zeros((1, hidden)))
    expected = softmax(expected_logits)[0]
    assert probabilities.shape == (arrays["embedding"].shape[0],)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(logits.numpy()[0], expected_logits[0], atol=1e-4)


def test_multi_step_log_probs_match_numpy(oracle_path):
    """Later steps also exercise the forget gate and the recurrent kernels."""
    arrays = oracle.load_oracle_arrays(str(oracle_path))
    model = oracle.build_oracle(arrays, sequence_length=4)
    tokens = np.array([[1, 4999, 17, 256], [0, 0, 3, 2]], np.int32)
    expected = np.take_along_axis(log_softmax(numpy_oracle_logits(arrays, tokens)), tokens[:, :, None], 2)[..., 0]
    np.testing.assert_allclose(model.token_log_probs(tf.constant(tokens)).numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("start_token", [0, 5])
def test_random_oracle_gates_match_numpy(start_token):
    """Every gate's weights land in the right slice of the Keras LSTMCell (no file needed)."""
    arrays = oracle.random_oracle_arrays(13, 4, 5, seed=3)
    model = oracle.build_oracle(arrays, sequence_length=6, start_token=start_token)
    tokens = np.random.default_rng(0).integers(0, 13, (3, 6)).astype(np.int32)
    expected = numpy_oracle_logits(arrays, tokens, start_token)
    np.testing.assert_allclose(model(tf.constant(tokens)).numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("key", ["Wf", "Uf", "Wc", "Uog"])
def test_numpy_reference_is_sensitive_to_each_gate(key):
    """Guards the reference itself: swapping one gate's weights changes its output."""
    arrays = oracle.random_oracle_arrays(13, 4, 5, seed=3)
    tokens = np.random.default_rng(0).integers(0, 13, (3, 6)).astype(np.int32)
    changed = dict(arrays)
    changed[key] = arrays[key] * -1.0
    assert not np.allclose(numpy_oracle_logits(arrays, tokens), numpy_oracle_logits(changed, tokens), atol=1e-3)


def test_oracle_is_frozen():
    model = oracle.build_oracle(oracle.random_oracle_arrays(7, 3, 4, seed=0), sequence_length=5)
    assert model.trainable is False
    assert model.trainable_weights == []


def test_random_oracle_arrays_deterministic_per_seed():
    a = oracle.random_oracle_arrays(11, 3, 4, seed=7)
    b = oracle.random_oracle_arrays(11, 3, 4, seed=7)
    c = oracle.random_oracle_arrays(11, 3, 4, seed=8)
    assert set(a) == set(oracle.ORACLE_KEYS) and len(a) == 15
    for key, shape in oracle.oracle_shapes(11, 3, 4).items():
        assert a[key].shape == shape
        assert a[key].dtype == np.float32
        np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a[key], c[key])


def save_npz(path, arrays):
    np.savez(path, **arrays)
    return str(path)


def test_load_round_trip(tmp_path):
    arrays = oracle.random_oracle_arrays(9, 3, 4, seed=1)
    loaded = oracle.load_oracle_arrays(save_npz(tmp_path / "oracle.npz", arrays))
    assert set(loaded) == set(oracle.ORACLE_KEYS)
    for key in oracle.ORACLE_KEYS:
        assert loaded[key].dtype == np.float32
        np.testing.assert_array_equal(loaded[key], arrays[key])


def test_load_real_oracle_shapes(oracle_path):
    arrays = oracle.load_oracle_arrays(str(oracle_path))
    assert arrays["embedding"].shape == (5000, 32)
    assert arrays["Wo"].shape == (32, 5000)
    assert all(arrays[key].dtype == np.float32 for key in oracle.ORACLE_KEYS)


def test_load_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "nowhere.npz")
    with pytest.raises(ValueError) as error:
        oracle.load_oracle_arrays(path)
    assert path in str(error.value)


def test_load_missing_key_names_the_path_and_key(tmp_path):
    arrays = oracle.random_oracle_arrays(9, 3, 4, seed=1)
    del arrays["Uf"]
    path = save_npz(tmp_path / "missing.npz", arrays)
    with pytest.raises(ValueError) as error:
        oracle.load_oracle_arrays(path)
    assert path in str(error.value)
    assert "Uf" in str(error.value)


@pytest.mark.parametrize(
    "key, shape",
    [("Wi", (3, 5)), ("bo", (8,)), ("Uog", (4, 4, 1)), ("Wo", (4, 10)), ("embedding", (9,)), ("Wo", ())],
)
def test_load_wrong_shape_or_rank_names_the_path(tmp_path, key, shape):
    arrays = oracle.random_oracle_arrays(9, 3, 4, seed=1)
    arrays[key] = np.zeros(shape, np.float32)
    path = save_npz(tmp_path / "shape.npz", arrays)
    with pytest.raises(ValueError) as error:
        oracle.load_oracle_arrays(path)
    assert path in str(error.value)


def test_load_non_finite_names_the_path(tmp_path):
    arrays = oracle.random_oracle_arrays(9, 3, 4, seed=1)
    arrays["bc"][1] = np.nan
    path = save_npz(tmp_path / "nan.npz", arrays)
    with pytest.raises(ValueError, match="NaN") as error:
        oracle.load_oracle_arrays(path)
    assert path in str(error.value)


def test_load_pickled_object_array_is_refused(tmp_path):
    arrays = dict(oracle.random_oracle_arrays(9, 3, 4, seed=1))
    arrays["bo"] = np.array([{"a": 1}] * 9, dtype=object)
    path = save_npz(tmp_path / "pickle.npz", arrays)
    with pytest.raises(ValueError) as error:
        oracle.load_oracle_arrays(path)
    assert path in str(error.value)


def write_text(path):
    path.write_text("embedding,Wo\n1,2\n")


def write_npy(path):
    with open(path, "wb") as stream:
        np.save(stream, np.zeros((3, 3), np.float32))


def write_empty(path):
    path.write_bytes(b"")


def write_truncated_npz(path):
    np.savez(path, **oracle.random_oracle_arrays(9, 3, 4, seed=1))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_zip_without_arrays(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not arrays")


@pytest.mark.parametrize(
    "writer",
    [
        write_text,
        write_zip_without_arrays,
        write_npy,
        write_empty,
        write_truncated_npz,
    ],
)
def test_load_non_npz_file_names_the_path(tmp_path, writer):
    path = tmp_path / "oracle.npz"
    writer(path)
    with pytest.raises(ValueError) as error:
        oracle.load_oracle_arrays(str(path))
    assert str(path) in str(error.value)


def write_pickle(path):
    import pickle

    path.write_bytes(pickle.dumps({"embedding": [[1.0]]}))


@pytest.mark.parametrize(
    "writer, what",
    [
        (write_text, "it is a text file"),
        (write_npy, "it holds a single .npy array"),
        (write_empty, "the file is empty"),
        (write_pickle, "it does not start with a zip signature"),
    ],
)
def test_load_file_that_is_no_zip_says_not_an_npz_archive(tmp_path, writer, what):
    # np.load's own message for a text file talks about pickled object data.
    path = tmp_path / "oracle.npz"
    writer(path)
    with pytest.raises(ValueError) as error:
        oracle.load_oracle_arrays(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: not an .npz archive (")
    assert what in message
    assert "pickle" not in message
    assert "\n" not in message


@pytest.mark.parametrize("writer", [write_truncated_npz, write_zip_without_arrays])
def test_load_broken_zip_keeps_its_own_message(tmp_path, writer):
    path = tmp_path / "oracle.npz"
    writer(path)
    with pytest.raises(ValueError) as error:
        oracle.load_oracle_arrays(str(path))
    assert str(path) in str(error.value)
    assert "not an .npz archive" not in str(error.value)
