"""The installable package: the wheel holds only tfseqgan packages and the
presets; installed, its three commands work from a folder outside the
checkout; `tfseqgan-sample` runs with only onnxruntime and NumPy; the
examples run."""

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest
from conftest import REPO_ROOT
from export_runs import make_run
from test_export_cli import BLOCK_TENSORFLOW
from test_main import TINY_FLAGS, environment

from tfseqgan.export import pipeline
from tfseqgan.export.onnx_sample import OnnxSampler

# Folders of a working checkout that are no part of the source.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".whl"
)
PRESETS = sorted(path.name for path in (REPO_ROOT / "flags").glob("*.cfg"))


def run(command, cwd, timeout=600, env=None):
    return subprocess.run(command, cwd=cwd, env=env or environment(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """`pip wheel --no-deps .` of a copy of the checkout (the build writes build/ and *.egg-info into it)."""
    source = tmp_path_factory.mktemp("source") / "tfseqgan"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheel")
    result = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."], source
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [path] = out.glob("tfseqgan-*.whl")
    return path


def test_the_wheel_holds_only_tfseqgan_packages_and_the_presets(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"tfseqgan", wheel.name.split("-py3")[0] + ".dist-info"}, top
    packages = {os.path.dirname(name) for name in names if name.endswith("/__init__.py")}
    assert packages == {"tfseqgan", "tfseqgan/cli", "tfseqgan/export", "tfseqgan/objectives", "tfseqgan/training"}
    assert sorted(n.split("/")[-1] for n in names if n.startswith("tfseqgan/presets/")) == PRESETS
    assert "tfseqgan/export/onnx_sample.py" in names and "tfseqgan/api.py" in names
    assert not [n for n in names if n.startswith(("tests", "bench", "export/", "main")) or "/tests/" in n]
    [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
    scripts = dict(re.findall(r"^(\S+) = (\S+)$", zipfile.ZipFile(wheel).read(entry_points).decode(), re.M))
    assert scripts == {
        "tfseqgan-train": "tfseqgan.cli.train:run",
        "tfseqgan-export": "tfseqgan.export.__main__:run",
        "tfseqgan-sample": "tfseqgan.export.onnx_sample:main",
    }


def make_venv(folder, system_site_packages):
    venv.EnvBuilder(system_site_packages=system_site_packages, with_pip=True, clear=True).create(folder)
    return folder / "bin"


def outside_environment(bin_dir):
    """The environment of a shell with only the virtualenv's commands on PATH, and no PYTHONPATH."""
    env = environment()
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    return env


@pytest.mark.slow
def test_installed_commands_work_from_a_folder_outside_the_checkout(wheel, tmp_path):
    """pip install of the wheel (its dependencies from this environment), then tfseqgan-train,
    tfseqgan-export, tfseqgan-sample and a preset run, from an empty folder."""
    bin_dir = make_venv(tmp_path / "venv", system_site_packages=True)
    installed = run([str(bin_dir / "pip"), "install", "-q", "--no-deps", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = outside_environment(bin_dir)
    where = run([str(bin_dir / "python"), "-c", "import tfseqgan; print(tfseqgan.__file__)"], work, env=env)
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout + where.stderr

    tiny = [flag for flag in TINY_FLAGS if flag not in ("--noexport", "--noprogress")]
    trained = run(["tfseqgan-train", *tiny, "--noprogress", "--run_dir=R"], work, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "verified:" in trained.stdout and (work / "R" / "export" / "manifest.json").is_file()
    exported = run(["tfseqgan-export", "--run_dir=R", "--out=E"], work, env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert exported.stdout.startswith(f"export: {work / 'E'} ")
    sampled = run(["tfseqgan-sample", "E/onnx/sampler.onnx", "--num", "3"], work, env=env)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    rows = sampled.stdout.splitlines()
    assert len(rows) == 3 and all(len(row.split()) == 6 for row in rows), rows
    assert sampled.stdout.splitlines() == OnnxSampler(str(work / "E" / "onnx" / "sampler.onnx")).sample(3)["text"]

    preset = run(["tfseqgan-train", "--preset=synthetic_quick", *tiny, "--noexport", "--run_dir=P"], work, env=env)
    assert preset.returncode == 0, preset.stderr[-3000:]
    assert "--mle_eval_every=1" in (work / "P" / "flags.cfg").read_text()
    unknown = run(["tfseqgan-train", "--preset=nope"], work, env=env)
    assert unknown.returncode == 2 and "no such preset; expected one of coco," in unknown.stderr
    assert sorted(os.listdir(work)) == ["E", "P", "R"]  # nothing written beside the runs


@pytest.mark.slow
def test_the_sampler_needs_only_onnxruntime_numpy_and_onnx(wheel, tmp_path):
    """A virtualenv with onnxruntime, NumPy and onnx (the pins of requirements.txt) and the wheel
    without its dependencies: tfseqgan-sample works there, and TensorFlow is not even installed.
    onnx's protobuf classes are what the loader reads a model with to refuse tensors that keep
    their data in other files (tfseqgan/export/loader.py, `external_data`); without onnx the
    sampler says so in one line."""
    pins = dict(line.split("==") for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    bin_dir = make_venv(tmp_path / "venv", system_site_packages=False)
    installed = run(
        [
            str(bin_dir / "pip"),
            "install",
            "-q",
            f"onnxruntime=={pins['onnxruntime']}",
            f"numpy=={pins['numpy']}",
            f"onnx=={pins['onnx']}",
        ],
        tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    installed = run([str(bin_dir / "pip"), "install", "-q", "--no-deps", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = outside_environment(bin_dir)
    missing = run([str(bin_dir / "python"), "-c", "import tensorflow"], tmp_path, env=env)
    assert "No module named 'tensorflow'" in missing.stderr

    run_dir = tmp_path / "run"
    make_run(str(run_dir), "poem")
    manifest = pipeline.export_run(str(run_dir), str(tmp_path / "export"), num_distribution_samples=2000)
    model = os.path.join(manifest["out_dir"], "onnx", "sampler.onnx")
    sampled = run(["tfseqgan-sample", model, "--num", "4", "--seed", "3"], tmp_path, env=env)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    assert sampled.stdout.splitlines() == OnnxSampler(model).sample(4, seed=3)["text"]
    bad = run(["tfseqgan-sample", model, "--num", "0"], tmp_path, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --num must be in [1,")


def test_the_training_example_runs_at_tiny_sizes(tmp_path):
    corpus = tmp_path / "sentences.txt"
    words = "a man cat dog rides sits on the mat horse beach park runs".split()
    lines = [" ".join(words[(i * k) % len(words)] for k in range(1, 7)) for i in range(60)]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tiny = {
        "sequence_length": 8,
        "window_sizes": "[1,2,3]",
        "num_filters": "[4,4,4]",
        "generator_embedding_dim": 8,
        "generator_hidden_dim": 8,
        "discriminator_embedding_dim": 8,
        "batch_size": 16,
        "mle_epochs": 1,
        "discriminator_pretrain_rounds": 1,
        "discriminator_negatives": 32,
        "adversarial_iterations": 1,
        "adversarial_discriminator_negatives": 32,
        "num_rollouts": 2,
        "num_discriminator_eval_samples": 16,
        "num_bleu_samples": 10,
        "plot": False,
    }
    options = [item for name, value in tiny.items() for item in ("--option", f"{name}={value}")]
    result = run(
        [sys.executable, str(REPO_ROOT / "examples" / "train_own_text.py"), str(corpus), "--run_dir=R", *options],
        tmp_path,
        env=dict(environment(), PYTHONPATH=str(REPO_ROOT)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout.splitlines()
    assert re.fullmatch(r"NLL-test \d+\.\d{3}  BLEU-2 \d\.\d{3}  Self-BLEU-2 \d\.\d{3}", out[0]), out[0]
    samples = [line[len("sample: ") :] for line in out if line.startswith("sample: ")]
    assert len(samples) == 5 and all(set(s.split()) <= set(words) | {"<unk>"} for s in samples), samples
    assert out[-1] == f"export: {tmp_path / 'R' / 'export'}"
    assert (tmp_path / "R" / "export" / "manifest.json").is_file()


def test_the_onnx_example_runs_without_tensorflow(tmp_path):
    run_dir = tmp_path / "run"
    make_run(str(run_dir), "poem")
    manifest = pipeline.export_run(str(run_dir), str(tmp_path / "export"), num_distribution_samples=2000)
    model = os.path.join(manifest["out_dir"], "onnx", "sampler.onnx")
    blocker = BLOCK_TENSORFLOW.replace(
        'runpy.run_module(module, run_name="__main__", alter_sys=True)', 'runpy.run_path(module, run_name="__main__")'
    )
    assert blocker != BLOCK_TENSORFLOW
    result = run(
        [sys.executable, "-c", blocker, str(REPO_ROOT / "examples" / "sample_onnx.py"), model, "--prefix", "春"],
        tmp_path,
        env=dict(environment(), PYTHONPATH=str(REPO_ROOT)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded: none" in result.stderr
    out = result.stdout.splitlines()
    sampler = OnnxSampler(model)
    assert out[:3] == [f"T=0.7: {line}" for line in sampler.sample(3, temperature=0.7, seed=0)["text"]]
    completed = [line for line in out if line.startswith("completed: ")]
    assert len(completed) == 3 and all(line[len("completed: ") :].startswith("春") for line in completed)
    assert out[-1].startswith("log p of two samples: [")
