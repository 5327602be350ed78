"""One export of a training run, written atomically.

`export_run` restores the run's generator, writes into a temporary folder
beside the destination

    onnx/vocab.txt        the vocabulary, one token a line in id order
    onnx/sampler.onnx     the sampler step (see onnx_model.py)
    onnx/scorer.onnx      per-token log-probabilities
    saved_model/          the SavedModel (its own copy of vocab.txt in assets/)
    manifest.json         sizes, versions, the training run, verification
                          figures, SHA-256 of every other file

verifies it (verify.py), and only then renames it into place; an existing
export is replaced only by a verified one, and a folder that is not an export
is never replaced: `--out` must be missing or a folder that a manifest.json
of this format describes exactly (`export_folder_problem`).

The temporary folder is `.OUT.tmp-PID-XXXXXXXX`, created with the umask's
permissions, holding LOCK_FILE flock-ed by its export while it runs; it is
removed when the export fails or is interrupted (SIGTERM and SIGINT:
`remove_temporary_folders`, called by export/__main__.py's handler), and one
left by a killed export (its lock free) is removed by the next export to the
same `--out`. SIGTERM and SIGINT during the commit's renames are acted on
after them (`_signals_deferred`).
"""

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import stat
import threading
import time
from importlib import metadata as importlib_metadata

from tfseqgan import faults
from tfseqgan.export import onnx_model, saved_model, verify
from tfseqgan.export.limits import MAX_MANIFEST_BYTES
from tfseqgan.export.restore import ExportError, load_run, warn
from tfseqgan.export.schema import MANIFEST_FILE, MANIFEST_FORMAT

VOCABULARY_FILE = "vocab.txt"
LOCK_FILE = ".export.lock"  # in a temporary folder, flock-ed by its export while it runs
LIBRARIES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(directory):
    """{relative path: {bytes, sha256}} of every file under `directory`, the manifest excepted."""
    table = {}
    for root, _, files in os.walk(directory):
        for name in sorted(files):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            if relative not in (MANIFEST_FILE, LOCK_FILE):
                table[relative] = {"bytes": os.path.getsize(path), "sha256": sha256(path)}
    return dict(sorted(table.items()))


def _versions():
    versions = {"python": platform.python_version()}
    for library in LIBRARIES:
        try:
            versions[library] = importlib_metadata.version(library)
        except importlib_metadata.PackageNotFoundError:
            versions[library] = None
    return versions


def _run_record(run_model):
    record = {
        "run_dir": run_model.run_dir,
        "checkpoint": os.path.relpath(run_model.checkpoint, run_model.run_dir),
        "counters": run_model.counters,
    }
    if run_model.skipped_checkpoints:
        record["skipped_damaged_checkpoints"] = [
            os.path.relpath(prefix, run_model.run_dir) for prefix in run_model.skipped_checkpoints
        ]
    for name in ("model.json", "flags.cfg"):
        path = os.path.join(run_model.run_dir, name)
        if os.path.isfile(path):
            record[name.replace(".", "_") + "_sha256"] = sha256(path)
    return record


def _listing(directory):
    """(files, folders) under `directory` as relative '/' paths, and anything else found (links, FIFOs...)."""
    files, folders, others = set(), set(), []
    for root, dirs, names in os.walk(directory):
        for name in dirs + names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                folders.add(relative)
            elif stat.S_ISREG(mode):
                files.add(relative)
            else:
                others.append(relative)
    return files, folders, sorted(others)


def _some(paths, count=3):
    paths = sorted(paths)
    return ", ".join(paths[:count]) + (f" and {len(paths) - count} more" if len(paths) > count else "")


def export_folder_problem(directory):
    """None when `directory` is a tfseqgan export; otherwise what was found instead (a phrase).

    An export is a folder whose manifest.json (a regular file, at most
    MAX_MANIFEST_BYTES, a JSON object of format MANIFEST_FORMAT with a files
    table) lists exactly the files in it: no file, folder or link beyond those.
    """
    manifest_path = os.path.join(directory, MANIFEST_FILE)
    not_regular = f"its {MANIFEST_FILE} is not a regular file of at most {MAX_MANIFEST_BYTES:,} bytes"
    try:  # no link followed, and a FIFO opens without blocking (then refused on the descriptor)
        descriptor = os.open(manifest_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return f"no {MANIFEST_FILE}" if os.listdir(directory) else f"an empty folder, no {MANIFEST_FILE}"
    except OSError:  # ELOOP: a link
        return not_regular
    with os.fdopen(descriptor, "rb") as stream:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_MANIFEST_BYTES:
            return not_regular
        data = stream.read(MAX_MANIFEST_BYTES + 1)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return f"its {MANIFEST_FILE} is not JSON"
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return f'its {MANIFEST_FILE} has no "format": {MANIFEST_FORMAT} (not a tfseqgan manifest)'
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return f"its {MANIFEST_FILE} has no files table"
    files, folders, others = _listing(directory)
    if others:
        return f"it holds links or special files: {_some(others)}"
    files.discard(MANIFEST_FILE)
    unlisted = files - set(listed)
    parents = {"/".join(name.split("/")[:depth]) for name in listed for depth in range(1, name.count("/") + 1)}
    extra_folders = {folder for folder in folders if folder not in parents}
    if unlisted or extra_folders:
        extra = unlisted | {folder + "/" for folder in extra_folders}
        return f"it also holds {_some(extra)}, not listed in its manifest"
    missing = set(listed) - files
    if missing:
        return f"files its manifest lists are missing: {_some(missing)}"
    return None


def _check_destination(out_dir):
    """Refuses an --out that exists and is not a tfseqgan export (one line naming what is there)."""
    try:
        if not os.path.lexists(out_dir):
            return
        if os.path.islink(out_dir) or not os.path.isdir(out_dir):
            raise ExportError(f"--out={out_dir}: exists and is not a folder")
        problem = export_folder_problem(out_dir)
        if problem:
            problem += f"; it holds {_some(os.listdir(out_dir))}" if os.listdir(out_dir) else ""
    except OSError as error:
        raise ExportError(f"--out={out_dir}: cannot look into it ({error.strerror})") from None
    if problem:
        raise ExportError(
            f"--out={out_dir}: exists and is not a tfseqgan export ({problem}); nothing was changed: "
            "choose another --out or remove it"
        )


def _temporary_prefix(out_dir):
    return f".{os.path.basename(out_dir)}.tmp-"


def _is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _lock_state(path):
    """ "held" while the export that made the temporary folder `path` runs (it holds an flock on
    its LOCK_FILE), "free" when that export ended without removing it, "none" without a lock file
    (exports made before the lock, or in the moment of the commit). Anything odd counts as held."""
    try:
        descriptor = os.open(os.path.join(path, LOCK_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return "none"
    except OSError:
        return "held"
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return "held"
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the close below
    except OSError:  # BlockingIOError: the export holds it
        return "held"
    finally:
        os.close(descriptor)
    return "free"


def reap_leftovers(out_dir, log=warn):
    """Removes temporary folders of `out_dir` left by exports that were killed.

    A temporary folder is left when its lock file can be locked (the flock of
    its export went with the process: no PID reuse or PID namespace fools
    it); a folder without a lock file (an `.old` one, an export of before the
    lock) when its PID is not running. A name whose PID no process can have
    is not ours: left alone.
    """
    parent, prefix = os.path.dirname(out_dir), _temporary_prefix(out_dir)
    pattern = re.compile(re.escape(prefix) + r"(\d+)-[0-9a-f]{8}(\.old)?$")
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in sorted(names, key=lambda name: not name.endswith(".old")):  # a previous export first
        match = pattern.match(name)
        path = os.path.join(parent, name)
        if not match or os.path.islink(path) or not os.path.isdir(path):
            continue
        try:
            running = _is_running(int(match.group(1)))
        except (OverflowError, ValueError):  # os.kill takes a C int
            continue
        lock = _lock_state(path)
        if lock == "held" or (lock == "none" and running):
            continue
        if match.group(2) and not os.path.lexists(out_dir):  # killed between the two renames of _replace
            os.rename(path, out_dir)
            log(f"warning: put back {out_dir}, the previous export, from {path} left by an export that was killed")
        else:
            shutil.rmtree(path, ignore_errors=True)
            log(f"warning: removed {path}, left by an export that was killed")


# The temporary folders of exports in progress in this process, for a signal
# handler to remove before it ends the process (export/__main__.py), and the
# descriptors of their locks.
_in_progress = {}


def _forget(path, remove):
    """Drops `path` from the exports in progress: its lock released, the folder removed if `remove`."""
    if remove:
        shutil.rmtree(path, ignore_errors=True)
    descriptor = _in_progress.pop(path, None)
    if descriptor is not None:
        os.close(descriptor)


def remove_temporary_folders():
    """Removes the temporary folders of the exports in progress (from a signal handler)."""
    for path in list(_in_progress):
        _forget(path, remove=True)


def _make_temporary_folder(out_dir):
    """.OUT.tmp-PID-XXXXXXXX beside out_dir, with the umask's permissions (mkdir applies it), and
    its LOCK_FILE locked (flock) for as long as the export runs."""
    parent = os.path.dirname(out_dir)
    while True:
        path = os.path.join(parent, f"{_temporary_prefix(out_dir)}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        try:
            descriptor = os.open(os.path.join(path, LOCK_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            raise
        _in_progress[path] = descriptor
        return path


def _prepare_destination(out_dir):
    """Checks --out, creates its parent, reaps leftovers; returns the temporary folder."""
    _check_destination(out_dir)
    parent = os.path.dirname(out_dir)
    ancestor = parent
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ExportError(f"--out={out_dir}: {ancestor} is a file, not a folder")
    try:
        os.makedirs(parent, exist_ok=True)
        reap_leftovers(out_dir)
        return _make_temporary_folder(out_dir)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ExportError(f"--out={out_dir}: cannot create a folder in {parent} ({reason})") from None


def _replace(tmp_dir, out_dir):
    """Renames the finished export into place; an older export goes only after that worked.

    The older export is checked again once it is set aside: a file added to it
    since `_check_destination` would be deleted with it, so then it is put back
    and the export refused.
    """
    if not os.path.exists(out_dir):
        os.rename(tmp_dir, out_dir)
        return
    old_dir = tmp_dir + ".old"
    os.rename(out_dir, old_dir)
    try:
        problem = export_folder_problem(old_dir)
    except OSError as error:
        problem = f"it cannot be read ({error.strerror})"
    if problem:
        os.rename(old_dir, out_dir)
        raise ExportError(
            f"--out={out_dir}: changed during the export and is no longer a tfseqgan export ({problem}); "
            "nothing was changed: choose another --out or remove it"
        )
    try:
        os.rename(tmp_dir, out_dir)
    except OSError:
        os.rename(old_dir, out_dir)
        raise
    shutil.rmtree(old_dir, ignore_errors=True)


def commit(tmp_dir, out_dir):
    """Puts the finished export `tmp_dir` in place of `out_dir`; SIGINT and SIGTERM wait until it is done.

    The lock file goes first (the export is exactly what its manifest lists);
    its flock is held until the export is in place.
    """
    with _signals_deferred():
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(tmp_dir, LOCK_FILE))
        _replace(tmp_dir, out_dir)
        _forget(tmp_dir, remove=False)


DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Signals that arrived during a commit, to be acted on after it (see _signals_deferred).
_pending_signals = []
_committing = threading.Event()


def defer_signal(signum):
    """For a signal handler: True when a commit is in progress, the signal then being recorded and
    raised again once the commit is done (export/__main__.py's handler returns at once)."""
    if _committing.is_set():
        _pending_signals.append(signum)
        return True
    return False


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM wait until the block is done (the two renames of a commit are not split).

    Deferred in Python, not by a signal mask: a process-directed signal goes to
    any thread that does not block it (TensorFlow's and onnxruntime's threads),
    and Python then runs the handler in the main thread whatever the mask of
    the main thread. During the block the handlers record the signal and
    return (in the main thread they are swapped for a recorder; elsewhere
    export/__main__.py's handler asks `defer_signal`); after it the first
    recorded signal is raised again, to the handler in place before.
    """
    swapped = {}
    if threading.current_thread() is threading.main_thread():
        for signum in DEFERRED_SIGNALS:
            swapped[signum] = signal.signal(signum, lambda signum, frame: _pending_signals.append(signum))
    _committing.set()
    try:
        yield
    finally:
        _committing.clear()
        for signum, handler in swapped.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        pending = list(_pending_signals)
        _pending_signals.clear()
        if pending:
            signal.raise_signal(pending[0])


def _phase(name, function, *args, **kwargs):
    """Runs one phase; unexpected errors become one-line ExportErrors naming it."""
    try:
        return function(*args, **kwargs)
    except ExportError:
        raise
    except Exception as error:  # tf2onnx, onnx, TensorFlow and onnxruntime raise many types
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ExportError(f"{name} failed: {type(error).__name__}: {message}"[:500]) from error


def export_run(run_dir, out_dir=None, opset=onnx_model.OPSET, num_distribution_samples=100_000, seed=0):
    """Exports the newest checkpoint of `run_dir` into `out_dir` (default RUN/export).

    Returns:
        The manifest (a dict), also written to out_dir/manifest.json.

    Raises:
        ExportError: the run cannot be read, a phase failed or the export did not
            verify; the destination is then left as it was.
    """
    began = time.perf_counter()
    out_dir = os.path.abspath(out_dir or os.path.join(run_dir, "export"))
    _check_destination(out_dir)
    run_model = load_run(run_dir)
    tmp_dir = _prepare_destination(out_dir)
    try:
        faults.arrive("export_write")  # test-only fault injection (tfseqgan/faults.py)
        onnx_dir = os.path.join(tmp_dir, "onnx")
        os.makedirs(onnx_dir)
        vocabulary_path = os.path.join(onnx_dir, VOCABULARY_FILE)
        with open(vocabulary_path, "w", encoding="utf-8") as stream:
            stream.write("\n".join(run_model.tokens) + "\n")
        onnx_paths = _phase("ONNX conversion", onnx_model.write_onnx, run_model, onnx_dir, VOCABULARY_FILE, opset)
        saved_model_dir = os.path.join(tmp_dir, "saved_model")
        signatures = _phase(
            "SavedModel export", saved_model.write_saved_model, run_model, vocabulary_path, saved_model_dir
        )
        written = time.perf_counter()
        figures = _phase(
            "verification",
            verify.verify_export,
            run_model,
            tmp_dir,
            num_distribution_samples=num_distribution_samples,
            seed=seed,
        )
        finished = time.perf_counter()
        files = file_table(tmp_dir)
        generator = run_model.generator
        manifest = {
            "format": MANIFEST_FORMAT,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "model": {
                "vocabulary_size": run_model.vocabulary_size,
                "sequence_length": run_model.sequence_length,
                "embedding_dim": generator.embedding_dim,
                "hidden_dim": generator.hidden_dim,
                "parameters": int(sum(int(v.numpy().size) for v in generator.weights)),
                "start_token": generator.start_token,
                "end_token": run_model.end_token,
                "banned_tokens": list(generator.banned_tokens),
                "tokenizer": run_model.tokenizer,
            },
            "sizes": {
                "saved_model_bytes": sum(v["bytes"] for k, v in files.items() if k.startswith("saved_model/")),
                "onnx_sampler_bytes": os.path.getsize(onnx_paths["sampler"]),
                "onnx_scorer_bytes": os.path.getsize(onnx_paths["scorer"]),
            },
            "saved_model": {"path": "saved_model", "signatures": signatures},
            "onnx": {
                "opset": opset,
                "sampler": f"onnx/{onnx_model.SAMPLER_FILE}",
                "scorer": f"onnx/{onnx_model.SCORER_FILE}",
                "vocabulary": f"onnx/{VOCABULARY_FILE}",
                "driver": "tfseqgan-sample (in a checkout: python -m export.onnx_sample), a NumPy loop over the step",
            },
            "run": _run_record(run_model),
            "versions": _versions(),
            "verification": figures,
            "seconds": {"write": round(written - began, 2), "verify": round(finished - written, 2)},
            "files": files,
        }
        with open(os.path.join(tmp_dir, MANIFEST_FILE), "w", encoding="utf-8") as stream:
            json.dump(manifest, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        _check_destination(out_dir)  # nothing else took the place meanwhile
        faults.arrive("export_commit")
        commit(tmp_dir, out_dir)
    except OSError as error:  # a full disk, an unwritable folder, ...
        _forget(tmp_dir, remove=True)
        previous = out_dir if os.path.exists(os.path.join(out_dir, MANIFEST_FILE)) else "none"
        reason = f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)
        raise ExportError(f"could not write the export ({reason}); previous export: {previous} (untouched)") from None
    except BaseException:
        _forget(tmp_dir, remove=True)
        raise
    manifest["out_dir"] = out_dir
    return manifest


def summary_lines(manifest):
    """Two lines: where the export went, and its verification figures."""
    v = manifest["verification"]
    seconds = manifest["seconds"]["write"] + manifest["seconds"]["verify"]
    first = v["first_token"]
    lines = [
        f"export: {manifest['out_dir']} (SavedModel: {', '.join(manifest['saved_model']['signatures'])}; "
        f"ONNX opset {manifest['onnx']['opset']} sampler step + scorer; manifest.json) in {seconds:.1f} s",
        f"verified: score max |diff log p| SavedModel {v['score_max_abs_diff']['saved_model']:.2g}, "
        f"ONNX {v['score_max_abs_diff']['onnx']:.2g}; greedy ids equal in all three ({v['greedy_rows']} prefixes); "
        f"seeded sampling repeats; ONNX first-token TV {first['total_variation']:.4f} <= {first['bound']:.4f} "
        f"({first['samples']} samples)" + (f"; acrostic {v['acrostic_heads']} ok" if "acrostic_heads" in v else ""),
    ]
    return lines
