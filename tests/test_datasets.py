"""Data fetching: copies and conversions verified by SHA-256, the restricted unpickler, errors, atomicity.

No test touches the network: downloads go through a patched `urllib.request.urlopen`.
"""

import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from conftest import ORACLE_PATH, REPO_ROOT

from tfseqgan import datasets

SHARED_DATA = ORACLE_PATH.parents[1]


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sha256sums():
    """{relative path: sha256} of the shared folder's SHA256SUMS."""
    lines = (SHARED_DATA / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def leftovers(data_dir):
    return [p.name for p in Path(data_dir).iterdir() if p.name.startswith(".tfseqgan-fetch-")]


def run_main(capsys, *args):
    """(exit code, stdout lines, stderr lines) of `main`."""
    code = datasets.main(["fetch", *[str(a) for a in args]])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


@pytest.fixture
def shared_data():
    if not (SHARED_DATA / "SHA256SUMS").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA} (the repo expects ../shared beside it)")
    return SHARED_DATA


@pytest.fixture
def shared_copy(shared_data, tmp_path):
    """A writable copy of the shared data folder."""
    return Path(shutil.copytree(shared_data, tmp_path / "source", copy_function=shutil.copyfile))


def small_oracle_params(vocabulary_size=7, embedding_dim=3, hidden_dim=4, dtype=np.float32, seed=0):
    """A list of 15 arrays in the pickle's order, with small shapes."""
    rng = np.random.default_rng(seed)
    shapes = {"embedding": (vocabulary_size, embedding_dim), "Wo": (hidden_dim, vocabulary_size)}
    shapes["bo"] = (vocabulary_size,)
    for gate in ("i", "f", "og", "c"):
        shapes["W" + gate] = (embedding_dim, hidden_dim)
        shapes["U" + gate] = (hidden_dim, hidden_dim)
        shapes["b" + gate] = (hidden_dim,)
    return [rng.standard_normal(shapes[key]).astype(dtype) for key in datasets.ORACLE_PARAM_ORDER]


def numpy1_names(data):
    """A protocol 0-3 pickle as numpy 1.x writes it (`numpy.core` instead of `numpy._core`)."""
    return data.replace(b"numpy._core.", b"numpy.core.")


# ---------------------------------------------------------------------------------------------
# The reference table


def test_reference_table_is_sha256sums(shared_data):
    sums = sha256sums()
    for name, digest in sums.items():
        if name.endswith(".npz"):
            assert datasets.ORACLE_NPZ_FILE_SHA256 == digest
            assert datasets.REFERENCE_SHA256[name] == datasets.ORACLE_ARRAYS_SHA256
            assert datasets.oracle_arrays_sha256(shared_data / name) == datasets.ORACLE_ARRAYS_SHA256
        else:
            assert datasets.REFERENCE_SHA256[name] == digest
    assert set(datasets.REFERENCE_SHA256) == set(sums) | {"poems/LICENSE.texygen", "coco/LICENSE.texygen"}
    assert sha256(shared_data / "poems" / "LICENSE.texygen") == datasets.TEXYGEN_LICENSE_SHA256


def test_from_dir_layout_reproduces_sha256sums(shared_data, tmp_path, capsys):
    data_dir = tmp_path / "data"
    code, out, err = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={shared_data}")
    assert (code, err) == (0, [])
    for name, digest in sha256sums().items():
        assert sha256(data_dir / name) == digest, name
    for license_file in ("poems/LICENSE.texygen", "coco/LICENSE.texygen"):
        assert sha256(data_dir / license_file) == datasets.TEXYGEN_LICENSE_SHA256
    assert len(out) == len(datasets.REFERENCE_SHA256)  # one line per file
    assert all(" ok)" in line and "copied from" in line or "licence" in line for line in out)
    assert leftovers(data_dir) == []


def test_only_fetches_the_named_datasets(shared_data, tmp_path, capsys):
    data_dir = tmp_path / "data"
    code, out, _ = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={shared_data}", "--only=coco")
    assert code == 0
    assert sorted(p.name for p in data_dir.iterdir()) == ["coco"]
    assert [line.split(":")[0] for line in out] == ["coco/train.txt", "coco/test.txt", "coco/LICENSE.texygen"]


# ---------------------------------------------------------------------------------------------
# From the originals


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_from_dir_originals_converts_and_verifies(shared_data, tmp_path, capsys, protocol):
    source = tmp_path / "originals"
    source.mkdir()
    with np.load(shared_data / "oracle" / "target_lstm.npz", allow_pickle=False) as archive:
        params = [archive[key] for key in datasets.ORACLE_PARAM_ORDER]
    data = pickle.dumps(params, protocol=protocol)
    (source / "target_params_py3.pkl").write_bytes(numpy1_names(data) if protocol <= 3 else data)
    shutil.copyfile(shared_data / "coco" / "train.txt", source / "image_coco.txt")
    (source / "data" / "testdata").mkdir(parents=True)  # the path inside Texygen's repository
    shutil.copyfile(shared_data / "coco" / "test.txt", source / "data" / "testdata" / "test_coco.txt")
    data_dir = tmp_path / "data"
    code, out, err = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={source}", "--only=oracle,coco")
    assert (code, err) == (0, [])
    assert datasets.oracle_arrays_sha256(data_dir / "oracle" / "target_lstm.npz") == datasets.ORACLE_ARRAYS_SHA256
    assert sha256(data_dir / "oracle" / "target_lstm.npz") == datasets.ORACLE_NPZ_FILE_SHA256  # numpy 2.4's savez
    assert sha256(data_dir / "coco" / "test.txt") == datasets.REFERENCE_SHA256["coco/test.txt"]
    assert "converted from target_params_py3.pkl" in out[0]


def test_poems_from_shi_txt_is_a_mismatch_unless_no_verify(shared_data, tmp_path, capsys):
    lines = []
    for name in ("train.txt", "valid.txt"):
        lines += (shared_data / "poems" / name).read_text(encoding="utf-8").splitlines()
    source = tmp_path / "originals"
    source.mkdir()
    (source / "shi.txt").write_text("".join(line + " \n" for line in lines + lines[:50]), encoding="utf-8")
    data_dir = tmp_path / "data"
    code, out, err = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={source}", "--only=poems")
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: poems/train.txt (split from shi.txt) has SHA-256 ")
    assert datasets.REFERENCE_SHA256["poems/train.txt"] in err[0] and "--no_verify" in err[0]
    assert not (data_dir / "poems").exists() and leftovers(data_dir) == []

    code, out, err = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={source}", "--only=poems", "--no_verify")
    assert code == 0 and "differs from the reference" in out[0]
    train = (data_dir / "poems" / "train.txt").read_text(encoding="utf-8").splitlines()
    valid = (data_dir / "poems" / "valid.txt").read_text(encoding="utf-8").splitlines()
    assert (len(train), len(valid)) == (datasets.POEMS_NUM_TRAIN, datasets.POEMS_NUM_VALID)
    assert set(train) | set(valid) == set(lines) and not set(train) & set(valid)


def test_split_poems_dedupes_shuffles_and_cuts():
    quatrain = "一 二 三 四 五 ， 六 七 八 九 十 。 一 二 三 四 五 ， 六 七 八 九 {} 。"
    lines = [quatrain.format(i) for i in range(20)]
    text = "\n".join(f"{line} " for line in lines + lines[:5]) + "\nnot a quatrain\n\n"
    train, valid = datasets.split_poems(text, seed=3, num_train=12, num_valid=4)
    assert (len(train), len(valid)) == (12, 4)
    assert len(set(train + valid)) == 16 and set(train + valid) <= set(lines)
    assert (train, valid) == datasets.split_poems(text, seed=3, num_train=12, num_valid=4)
    assert (train, valid) != datasets.split_poems(text, seed=4, num_train=12, num_valid=4)
    with pytest.raises(datasets.FetchError, match="20 distinct quatrains"):
        datasets.split_poems(text, num_train=18, num_valid=4)


# ---------------------------------------------------------------------------------------------
# The restricted unpickler


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_pickle_converts_to_npz_keys_and_arrays(tmp_path, dtype):
    params = small_oracle_params(dtype=dtype)
    path = tmp_path / "params.pkl"
    path.write_bytes(numpy1_names(pickle.dumps(params, protocol=2)))
    arrays = datasets.oracle_arrays_from_pickle(path)
    assert tuple(arrays) == datasets.ORACLE_PARAM_ORDER
    npz = tmp_path / "oracle.npz"
    npz.write_bytes(datasets.oracle_npz_bytes(arrays))
    with np.load(npz, allow_pickle=False) as archive:
        assert archive.files == list(datasets.ORACLE_PARAM_ORDER)
        for key, expected in zip(datasets.ORACLE_PARAM_ORDER, params):
            assert archive[key].dtype == np.float32
            np.testing.assert_array_equal(archive[key], expected.astype(np.float32))


@pytest.mark.parametrize(
    "params, message",
    [
        (small_oracle_params()[:14], "expected a list of 15 arrays, found a list of 14"),
        ({"embedding": 1}, "expected a list of 15 arrays, found a dict"),
        (small_oracle_params()[:14] + [np.array([1, "a"], dtype=object)], "array bo must be a float numpy array"),
        (small_oracle_params()[:14] + [np.zeros(5, np.float32)], r"array bo has shape \(5,\), expected \(7,\)"),
        ([np.full((7, 3), np.nan, np.float32)] + small_oracle_params()[1:], "array embedding holds NaN"),
    ],
)
def test_wrong_pickle_contents_are_one_line_errors(tmp_path, params, message):
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps(params, protocol=3))
    with pytest.raises(datasets.FetchError, match=message):
        datasets.oracle_arrays_from_pickle(path)


class Exploit:
    """Pickles to a call of os.system when loaded by a plain unpickler."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def malicious_pickles(marker):
    command = f"touch {marker}"
    return {
        "os.system": f"cos\nsystem\n(S'{command}'\ntR.".encode(),
        "posix.system": pickle.dumps(Exploit(command), protocol=4),
        "builtins.eval": f"cbuiltins\neval\n(S'open({str(marker)!r}, \"w\")'\ntR.".encode(),
        "subprocess.Popen": f"csubprocess\nPopen\n((S'touch'\nS'{marker}'\nltR.".encode(),
        "numpy.load": b"cnumpy\nload\n(S'x.npy'\ntR.",
        "copyreg._reconstructor": b"ccopyreg\n_reconstructor\n(cnumpy\nndarray\ncnumpy\nndarray\nNtR.",
    }


@pytest.mark.parametrize(
    "name", ["os.system", "posix.system", "builtins.eval", "subprocess.Popen", "numpy.load", "copyreg._reconstructor"]
)
def test_malicious_pickle_is_refused_without_running_it(tmp_path, name):
    marker = tmp_path / "pwned"
    data = malicious_pickles(marker)[name]
    with pytest.raises(datasets.UnsafePickleError, match=f"refusing to load global {name}"):
        datasets.RestrictedUnpickler(io.BytesIO(data)).load()
    path = tmp_path / "target_params_py3.pkl"
    path.write_bytes(data)
    with pytest.raises(datasets.FetchError, match="unsafe pickle"):
        datasets.oracle_arrays_from_pickle(path)
    assert not marker.exists()


def test_the_os_system_payload_is_live_under_plain_pickle(tmp_path):
    """The refusal above is meaningful: plain `pickle.loads` of the same bytes runs the command."""
    marker = tmp_path / "pwned"
    pickle.loads(malicious_pickles(marker)["os.system"])
    assert marker.exists()


def test_codecs_encode_is_latin1_only():
    data = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(datasets.UnsafePickleError, match="only latin-1"):
        datasets.RestrictedUnpickler(io.BytesIO(data)).load()
    assert datasets.RestrictedUnpickler(io.BytesIO(b"c_codecs\nencode\n(Vab\\u00e9\nVlatin1\ntR.")).load() == b"ab\xe9"


def test_malicious_oracle_pickle_fails_the_fetch(tmp_path, capsys):
    marker = tmp_path / "pwned"
    source = tmp_path / "originals"
    source.mkdir()
    (source / "target_params_py3.pkl").write_bytes(malicious_pickles(marker)["posix.system"])
    data_dir = tmp_path / "data"
    code, _, err = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={source}", "--only=oracle")
    assert code == 1 and len(err) == 1 and "unsafe pickle: refusing to load global posix.system" in err[0]
    assert not marker.exists() and not (data_dir / "oracle").exists() and leftovers(data_dir) == []


# ---------------------------------------------------------------------------------------------
# Downloads (patched: no network)


def test_no_network_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    data_dir = tmp_path / "data"
    code, out, err = run_main(capsys, f"--data_dir={data_dir}")
    assert (code, out) == (1, [])
    assert err == [
        "error: cannot download https://raw.githubusercontent.com/geek-ai/Texygen/master/data/shi.txt: "
        "[Errno -3] Temporary failure in name resolution; copy the files by hand and use --from_dir"
    ]
    assert [p.name for p in data_dir.iterdir()] == []


def test_downloads_follow_the_fallback_url_after_a_404(shared_data, tmp_path, capsys, monkeypatch):
    served = {
        datasets.TEXYGEN_RAW + "data/image_coco.txt": shared_data / "coco" / "train.txt",
        datasets.TEXYGEN_RAW + "data/test_coco.txt": shared_data / "coco" / "test.txt",
    }
    requested = []

    def fake_urlopen(url, timeout):
        requested.append(url)
        if url not in served:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(served[url].read_bytes())

    monkeypatch.setattr(datasets.urllib.request, "urlopen", fake_urlopen)
    data_dir = tmp_path / "data"
    code, out, err = run_main(capsys, f"--data_dir={data_dir}", "--only=coco")
    assert (code, err) == (0, [])
    assert requested == [
        datasets.TEXYGEN_RAW + "data/image_coco.txt",
        datasets.TEXYGEN_RAW + "data/testdata/test_coco.txt",
        datasets.TEXYGEN_RAW + "data/test_coco.txt",
    ]
    assert out[0].startswith("image_coco.txt: downloaded ") and sha256(served[requested[0]]) in out[0]
    assert sha256(data_dir / "coco" / "train.txt") == datasets.REFERENCE_SHA256["coco/train.txt"]
    assert leftovers(data_dir) == []


# ---------------------------------------------------------------------------------------------
# Verification, existing files, atomicity


def test_hash_mismatch_names_the_file_and_installs_nothing(shared_copy, tmp_path, capsys):
    valid = shared_copy / "poems" / "valid.txt"
    valid.write_bytes(valid.read_bytes().replace("。".encode(), "，".encode(), 1))
    data_dir = tmp_path / "data"
    code, out, err = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={shared_copy}", "--only=poems")
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: poems/valid.txt (copied from ")
    assert sha256(valid) in err[0] and datasets.REFERENCE_SHA256["poems/valid.txt"] in err[0]
    assert not (data_dir / "poems").exists() and leftovers(data_dir) == []  # train.txt verified but not installed

    code, out, err = run_main(
        capsys, f"--data_dir={data_dir}", f"--from_dir={shared_copy}", "--only=poems", "--no_verify"
    )
    assert code == 0 and sha256(data_dir / "poems" / "valid.txt") == sha256(valid)


def test_corrupt_npz_is_a_one_line_error(shared_copy, tmp_path, capsys):
    npz = shared_copy / "oracle" / "target_lstm.npz"
    npz.write_bytes(npz.read_bytes()[:1000])
    code, _, err = run_main(capsys, f"--data_dir={tmp_path / 'data'}", f"--from_dir={shared_copy}", "--only=oracle")
    assert code == 1 and len(err) == 1 and "oracle/target_lstm.npz" in err[0] and "not a readable .npz" in err[0]


def test_existing_files_are_kept_unless_force(shared_data, tmp_path, capsys):
    data_dir = tmp_path / "data"
    assert run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={shared_data}", "--only=coco")[0] == 0
    test_file = data_dir / "coco" / "test.txt"
    before = test_file.stat()
    code, out, _ = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={shared_data}", "--only=coco")
    assert code == 0 and all(": kept " in line for line in out)
    assert test_file.stat().st_ino == before.st_ino and test_file.stat().st_mtime_ns == before.st_mtime_ns

    test_file.write_text("edited by hand\n")
    code, _, err = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={shared_data}", "--only=coco")
    assert code == 1 and len(err) == 1 and str(test_file) in err[0] and "--force" in err[0]
    assert test_file.read_text() == "edited by hand\n"

    code, out, _ = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={shared_data}", "--only=coco", "--force")
    assert code == 0 and sha256(test_file) == datasets.REFERENCE_SHA256["coco/test.txt"]
    assert leftovers(data_dir) == []


def test_missing_files_are_added_beside_kept_ones(shared_data, tmp_path, capsys):
    data_dir = tmp_path / "data"
    assert run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={shared_data}", "--only=poems")[0] == 0
    (data_dir / "poems" / "valid.txt").unlink()
    code, out, _ = run_main(capsys, f"--data_dir={data_dir}", f"--from_dir={shared_data}", "--only=poems")
    assert code == 0
    actions = dict(line.split(" ")[:2] for line in out)
    assert actions == {"poems/train.txt:": "kept", "poems/valid.txt:": "wrote", "poems/LICENSE.texygen:": "kept"}


def test_from_dir_without_the_files_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_main(capsys, f"--data_dir={tmp_path / 'data'}", f"--from_dir={empty}", "--only=coco")
    assert code == 1 and len(err) == 1
    assert "holds neither coco/train.txt, coco/test.txt nor the original image_coco.txt" in err[0]


# ---------------------------------------------------------------------------------------------
# The command line


def run_module(*args):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "tfseqgan.datasets", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "error: the following arguments are required: command"),
        (["fetch"], "error: the following arguments are required: --data_dir"),
        (["fetch", "--data_dir=x", "--only=poems,nope"], "error: argument --only: --only takes a comma-separated"),
        (["fetch", "--data_dir=x", "--bogus"], "error: unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args, message):
    result = run_module(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message)


def test_failure_exits_1_with_one_line_and_no_tensorflow(tmp_path):
    result = run_module("fetch", f"--data_dir={tmp_path / 'data'}", f"--from_dir={tmp_path / 'missing'}")
    assert result.returncode == 1 and result.stderr == f"error: --from_dir {tmp_path / 'missing'} is not a directory\n"
    probe = "import sys, tfseqgan.datasets; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False"


def test_unreadable_existing_npz_asks_for_force(shared_data, tmp_path, capsys):
    target = tmp_path / "data" / "oracle" / "target_lstm.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a zip")
    code, _, err = run_main(capsys, f"--data_dir={tmp_path / 'data'}", f"--from_dir={shared_data}", "--only=oracle")
    assert (
        code == 1
        and len(err) == 1
        and "not a readable .npz" in err[0]
        and err[0].endswith("pass --force to replace it")
    )
    code, _, _ = run_main(
        capsys, f"--data_dir={tmp_path / 'data'}", f"--from_dir={shared_data}", "--only=oracle", "--force"
    )
    assert code == 0 and datasets.oracle_arrays_sha256(target) == datasets.ORACLE_ARRAYS_SHA256
