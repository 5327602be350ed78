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
is never replaced.
"""

import datetime
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from importlib import metadata as importlib_metadata

from export import onnx_model, saved_model, verify
from export.restore import ExportError, load_run
from tfseqgan import faults

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
VOCABULARY_FILE = "vocab.txt"
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
            if relative != MANIFEST_FILE:
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
    for name in ("model.json", "flags.cfg"):
        path = os.path.join(run_model.run_dir, name)
        if os.path.isfile(path):
            record[name.replace(".", "_") + "_sha256"] = sha256(path)
    return record


def _check_destination(out_dir):
    if os.path.lexists(out_dir):
        if not os.path.isdir(out_dir) or os.path.islink(out_dir):
            raise ExportError(f"--out={out_dir}: exists and is not a folder")
        if not os.path.isfile(os.path.join(out_dir, MANIFEST_FILE)):
            raise ExportError(
                f"--out={out_dir}: exists and is not a tfseqgan export (no {MANIFEST_FILE}); "
                "choose another --out or remove it"
            )


def _replace(tmp_dir, out_dir):
    """Renames the finished export into place; an older export goes only after that worked."""
    if not os.path.exists(out_dir):
        os.rename(tmp_dir, out_dir)
        return
    old_dir = tmp_dir + ".old"
    os.rename(out_dir, old_dir)
    try:
        os.rename(tmp_dir, out_dir)
    except OSError:
        os.rename(old_dir, out_dir)
        raise
    shutil.rmtree(old_dir, ignore_errors=True)


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
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
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
                "driver": "python -m export.onnx_sample (a NumPy loop over the sampler step)",
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
        _replace(tmp_dir, out_dir)
    except OSError as error:  # a full disk, an unwritable folder, ...
        shutil.rmtree(tmp_dir, ignore_errors=True)
        previous = out_dir if os.path.exists(os.path.join(out_dir, MANIFEST_FILE)) else "none"
        raise ExportError(f"could not write the export ({error}); previous export: {previous} (untouched)") from None
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
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
