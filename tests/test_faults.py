"""Faults a long run must survive, each injected and then resumed: kill -9 at
named points, a hung process killed from outside, a second run in the same
directory, damaged checkpoints, a failing (full-disk) write, NaN losses.

"Nothing lost" is checked the strict way: with the same seed, the run that was
interrupted and resumed ends with exactly the metrics of an uninterrupted one.
Kills and full disks run `python main.py` in subprocesses (two at a time); the
checkpoint fallback and NaN cases run the trainer in-process. Fault points are
hit exactly through the test-only hook `tfseqgan.faults` (TFSEQGAN_FAULT).
"""

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, tiny_configs
from test_main import PARALLEL_PROCESSES, RUN_TIMEOUT_S, TINY_FLAGS, environment, message_lines, numbers

from tfseqgan import checkpoints, faults, metrics, runlock
from tfseqgan.training.loop import Trainer, TrainingError

FLAGS = TINY_FLAGS + ["--noplot"]
# The tiny schedule: 8 MLE batches an epoch, 8 D batches a round; checkpoints
# ckpt-1, ckpt-2 after MLE epochs 1 and 2, ckpt-3 after D round 1, ckpt-4 and
# ckpt-5 after adversarial iterations 1 and 2 (an iteration: 1 G step, 8 D steps).


def without_timings(records):
    return [{k: v for k, v in record.items() if not k.endswith("_seconds")} for record in records]


def launch(run_dir, *extra, fault=""):
    env = environment()
    env.pop(faults.ENVIRONMENT_VARIABLE, None)
    if fault:
        env[faults.ENVIRONMENT_VARIABLE] = fault
    return subprocess.Popen(
        [sys.executable, "main.py", *FLAGS, f"--run_dir={run_dir}", *extra],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_all(commands):
    """{name: (run_dir, extra args, fault)} -> {name: (returncode, stdout, stderr)}, two processes at a time."""
    pending, running, results = list(commands.items()), {}, {}
    try:
        while pending or running:
            while pending and len(running) < PARALLEL_PROCESSES:
                name, (run_dir, extra, fault) = pending.pop(0)
                running[name] = launch(run_dir, *extra, fault=fault)
            name, process = next(iter(running.items()))
            try:
                stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            results[name] = (process.returncode, stdout, stderr)
            del running[name]
    finally:
        for process in running.values():
            process.kill()
            process.wait()
    return results


def resumed_position(stdout):
    """(MLE epoch, D round, adversarial iteration) of the "resumed from" line."""
    match = re.search(r"resumed from \S+: MLE epoch (\d+), D round (\d+), adversarial iteration (\d+)", stdout)
    return tuple(int(g) for g in match.groups()) if match else None


# ---------------------------------------------------------------- reference
def quiet_trainer(run_dir, resume=False, log=None, checkpoints_to_keep=3, **overrides):
    model, oracle, train, run = tiny_configs(run_dir, resume, **overrides)
    run = dataclasses.replace(run, checkpoints_to_keep=checkpoints_to_keep)
    return Trainer(model, oracle, train, run, log=log or (lambda *args: None))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted tiny run (in-process; the CLI gives the same numbers): (run_dir, records)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    history = quiet_trainer(run_dir).run()
    assert len(history) == 7
    return run_dir, without_timings(history)


@pytest.fixture(autouse=True)
def no_faults():
    faults.configure("")
    yield
    faults.configure("")


# ------------------------------------------------------------- kill -9, CLI
# name: (fault, the position the resume starts from)
KILLS = {
    "mle": ("kill@mle_step:12", (1, 0, 0)),  # epoch 2, batch 4
    "discriminator_pretraining": ("kill@discriminator_step:3", (2, 0, 0)),
    "adversarial_generator_step": ("kill@adversarial_step:10", (2, 1, 1)),  # iteration 2's G step
    "checkpoint_commit": ("kill@checkpoint_commit:4", (2, 1, 0)),  # ckpt-4's files complete, not yet named
}


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    base = tmp_path_factory.mktemp("kills")
    killed = run_all({name: (base / name, [], fault) for name, (fault, _) in KILLS.items()})
    resumed = run_all({name: (base / name, ["--resume"], "") for name in KILLS})
    return base, killed, resumed


@pytest.mark.parametrize("case", sorted(KILLS))
def test_kill_9_then_resume_ends_with_the_uninterrupted_metrics(killed_and_resumed, reference, case):
    base, killed, resumed = killed_and_resumed
    returncode, _, stderr = killed[case]
    assert returncode == -signal.SIGKILL, stderr[-2000:]
    assert f"fault injected: {KILLS[case][0].replace('@', ' at ').replace(':', ' ')}" in stderr
    returncode, stdout, stderr = resumed[case]
    assert returncode == 0, stderr[-2000:]
    # At most one checkpoint interval is repeated: the resume starts from the newest checkpoint before the kill.
    assert resumed_position(stdout) == KILLS[case][1], stdout[-2000:]
    assert numbers(base / case) == reference[1]


@pytest.mark.slow  # ~40 s of CLI runs; the lock's refusal is also tested in-process below
def test_hung_run_holds_the_directory_until_killed_from_outside(tmp_path, reference):
    """A second run is refused while the first lives; SIGKILL from the test frees the lock; resume loses nothing."""
    run_dir = tmp_path / "run"
    first = launch(run_dir, fault="stall@discriminator_step:2")
    try:
        for line in first.stderr:  # the hook's line says the process is now hanging mid-round
            if line.startswith("fault injected: stall"):
                break
        assert first.poll() is None, "the first run ended instead of hanging"
        second = launch(run_dir, "--resume")
        stdout, stderr = second.communicate(timeout=RUN_TIMEOUT_S)
        assert second.returncode == 1
        errors = [line for line in message_lines(stdout, stderr) if line.startswith("error:")]
        assert len(errors) == 1 and f"{run_dir} is in use by pid {first.pid} on " in errors[0], stderr[-2000:]
        assert "Traceback" not in stderr
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stdout.close()
        first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    third = launch(run_dir, "--resume")
    stdout, stderr = third.communicate(timeout=RUN_TIMEOUT_S)
    assert third.returncode == 0, stderr[-2000:]
    assert resumed_position(stdout) == (2, 0, 0)
    assert numbers(run_dir) == reference[1]


@pytest.mark.slow  # ~35 s of CLI runs; failing checkpoint writes are also tested in-process below
def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, reference):
    """Every file write fails from the third checkpoint on (RLIMIT_FSIZE 0: real EFBIG errors inside TensorFlow)."""
    run_dir = tmp_path / "run"
    results = run_all({"full": (run_dir, [], "fill@checkpoint_write:3")})
    returncode, stdout, stderr = results["full"]
    assert returncode == 1
    errors = [line for line in message_lines(stdout, stderr) if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-2000:]
    ckpt = run_dir / "checkpoints"
    assert f"could not write checkpoint {ckpt / 'ckpt-3'}" in errors[0] and "File too large" in errors[0]
    assert f"Last good checkpoint: {ckpt / 'ckpt-2'} (untouched)" in errors[0]
    assert sorted(os.listdir(ckpt)) == sorted(
        ["checkpoint", "ckpt-1.index", "ckpt-1.data-00000-of-00001", "ckpt-2.index", "ckpt-2.data-00000-of-00001"]
    )
    assert checkpoints.recorded(str(ckpt))[-1] == str(ckpt / "ckpt-2")
    resumed = run_all({"resume": (run_dir, ["--resume"], "")})["resume"]
    assert resumed[0] == 0, resumed[2][-2000:]
    assert numbers(run_dir) == reference[1]


def test_nan_loss_through_the_cli_names_phase_and_step(tmp_path):
    run_dir = tmp_path / "run"
    returncode, stdout, stderr = run_all({"nan": (run_dir, [], "nan@adversarial_step:2")})["nan"]
    assert returncode == 1
    errors = [line for line in message_lines(stdout, stderr) if line.startswith("error:")]
    assert errors == [
        "error: adversarial loss is nan at adversarial step 1.1 D epoch 1 batch 1; stopped without saving. "
        f"Last good checkpoint: {run_dir / 'checkpoints' / 'ckpt-3'}"
    ], stderr[-2000:]
    assert checkpoints.recorded(str(run_dir / "checkpoints"))[-1].endswith("ckpt-3")


# ------------------------------------------------- damaged checkpoints, in-process
def truncate_data(prefix):
    path = prefix + ".data-00000-of-00001"
    os.truncate(path, os.path.getsize(path) // 2)
    return path


def flip_a_byte(prefix):
    path = prefix + ".data-00000-of-00001"
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    return path


def garbage_index(prefix):
    open(prefix + ".index", "wb").write(os.urandom(512))
    return prefix + ".index"


def remove_data(prefix):
    os.remove(prefix + ".data-00000-of-00001")
    return prefix + ".data-00000-of-00001"


def remove_index(prefix):
    os.remove(prefix + ".index")
    return prefix + ".index"


DAMAGES = {f.__name__: f for f in (truncate_data, flip_a_byte, garbage_index, remove_data, remove_index)}


def copy_of(reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference[0], run_dir)
    (run_dir / ".lock").unlink(missing_ok=True)
    return run_dir


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, damage):
    run_dir = copy_of(reference, tmp_path)
    ckpt = run_dir / "checkpoints"
    bad_file = DAMAGES[damage](str(ckpt / "ckpt-5"))
    lines = []
    trainer = quiet_trainer(run_dir, resume=True, log=lines.append)
    assert trainer.restore_or_start() == str(ckpt / "ckpt-4")
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and bad_file in warnings[0], lines
    assert (int(trainer.mle_epoch), int(trainer.discriminator_round), int(trainer.adversarial_iteration)) == (2, 1, 1)
    # The damaged files are kept aside, and the state file and manager now end at the restored checkpoint.
    assert not any(name.startswith("ckpt-5.") and not name.endswith(".corrupt") for name in os.listdir(ckpt))
    if not damage.startswith("remove"):
        assert os.path.isfile(bad_file + checkpoints.CORRUPT_SUFFIX)
    assert checkpoints.recorded(str(ckpt)) == [str(ckpt / "ckpt-3"), str(ckpt / "ckpt-4")]
    assert trainer.checkpoint_manager.latest_checkpoint == str(ckpt / "ckpt-4")


def test_fallback_resume_reproduces_the_uninterrupted_run(reference, tmp_path):
    run_dir = copy_of(reference, tmp_path)
    truncate_data(str(run_dir / "checkpoints" / "ckpt-5"))
    history = quiet_trainer(run_dir, resume=True).run()
    assert without_timings(history) == reference[1]
    assert metrics.read_metrics(str(run_dir / "metrics.jsonl")) == history
    # The repeated iteration wrote a good ckpt-5 again; the damaged one is still there for a post-mortem.
    checkpoints.verify(str(run_dir / "checkpoints" / "ckpt-5"))
    assert (run_dir / "checkpoints" / "ckpt-5.data-00000-of-00001.corrupt").is_file()


def test_no_readable_checkpoint_is_a_one_line_error(reference, tmp_path):
    run_dir = copy_of(reference, tmp_path)
    ckpt = run_dir / "checkpoints"
    bad = [truncate_data(str(ckpt / name)) for name in ("ckpt-3", "ckpt-4", "ckpt-5")]
    with pytest.raises(TrainingError) as error:
        quiet_trainer(run_dir, resume=True).restore_or_start()
    message = str(error.value)
    assert "\n" not in message and "no readable checkpoint" in message
    assert all(path in message for path in bad)


def test_unreadable_state_file_neither_hides_the_checkpoints_nor_lets_them_be_overwritten(reference, tmp_path):
    run_dir = copy_of(reference, tmp_path)
    (run_dir / "checkpoints" / "checkpoint").write_bytes(b"\x00garbage{{{")
    with pytest.raises(TrainingError, match="--resume"):
        quiet_trainer(run_dir).restore_or_start()
    lines = []
    trainer = quiet_trainer(run_dir, resume=True, log=lines.append)
    assert trainer.restore_or_start() == str(run_dir / "checkpoints" / "ckpt-5")
    assert any(line.startswith("warning:") and "checkpoint" in line for line in lines), lines


def test_empty_state_file_is_set_aside_with_a_warning(reference, tmp_path):
    # TensorFlow's CheckpointManager raises ValueError on a state file without a newest checkpoint.
    run_dir = copy_of(reference, tmp_path)
    (run_dir / "checkpoints" / "checkpoint").write_text("")
    lines = []
    trainer = quiet_trainer(run_dir, resume=True, log=lines.append)
    assert trainer.restore_or_start() == str(run_dir / "checkpoints" / "ckpt-5")
    assert any("checkpoint.corrupt" in line for line in lines), lines


# ----------------------------------------------------- failing writes, in-process
def test_failed_checkpoint_write_keeps_the_previous_one_through_rotation(reference, tmp_path):
    """With one checkpoint kept, a write that fails after its files are complete must not rotate out the old one."""
    faults.configure("enospc@checkpoint_commit:3")
    trainer = quiet_trainer(tmp_path / "run", checkpoints_to_keep=1)
    with pytest.raises(TrainingError) as error:
        trainer.run()
    ckpt = tmp_path / "run" / "checkpoints"
    message = str(error.value)
    assert f"could not write checkpoint {ckpt / 'ckpt-3'}" in message and "No space left on device" in message
    assert f"Last good checkpoint: {ckpt / 'ckpt-2'} (untouched)" in message
    assert sorted(os.listdir(ckpt)) == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    checkpoints.verify(str(ckpt / "ckpt-2"))
    faults.configure("")
    history = quiet_trainer(tmp_path / "run", resume=True, checkpoints_to_keep=1).run()
    assert without_timings(history) == reference[1]


# ---------------------------------------------------------------- NaN, in-process
# fault: (phase, step named in the message, last good checkpoint)
NANS = {
    "nan@mle_step:11": ("mle", "epoch 2 batch 3", "ckpt-1"),
    "inf@discriminator_step:8": ("discriminator", "1 D epoch 1 batch 8", "ckpt-2"),
    "nan@adversarial_step:10": ("adversarial", "2 (generator)", "ckpt-4"),
}


@pytest.mark.parametrize("fault", sorted(NANS))
def test_non_finite_loss_stops_naming_phase_and_step_and_keeps_the_last_checkpoint(reference, tmp_path, fault):
    phase, step, last_good = NANS[fault]
    faults.configure(fault)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingError) as error:
        quiet_trainer(run_dir).run()
    ckpt = run_dir / "checkpoints"
    value = "inf" if fault.startswith("inf") else "nan"
    assert str(error.value) == (
        f"{phase} loss is {value} at {phase} step {step}; stopped without saving. "
        f"Last good checkpoint: {ckpt / last_good}"
    )
    assert checkpoints.recorded(str(ckpt))[-1] == str(ckpt / last_good)
    assert not [p for p in checkpoints.on_disk(str(ckpt)) if checkpoints.number(p) > checkpoints.number(last_good)]
    checkpoints.verify(str(ckpt / last_good))
    if phase == "discriminator":  # the checkpoint left behind is the uninterrupted run's state
        faults.configure("")
        assert without_timings(quiet_trainer(run_dir, resume=True).run()) == reference[1]


# ------------------------------------------------------------------ hook, lock
def test_fault_hook_costs_nothing_unset_and_fires_on_the_nth_arrival():
    assert faults.arrive("mle_step", 1.5) == 1.5
    faults.configure("nan@mle_step:3,enospc@export_write:1")
    values = [faults.arrive("mle_step", 2.0) for _ in range(4)]
    assert values[:2] == [2.0, 2.0] and math.isnan(values[2]) and values[3] == 2.0
    assert faults.arrive("discriminator_step", 3.0) == 3.0
    with pytest.raises(OSError) as error:
        faults.arrive("export_write")
    assert error.value.errno == 28


@pytest.mark.parametrize("spec", ["kill", "kill@nowhere:1", "explode@mle_step:1", "kill@mle_step:0", "nan@mle_step:x"])
def test_bad_fault_spec_is_a_one_line_error(spec):
    with pytest.raises(faults.FaultSpecError) as error:
        faults.configure(spec)
    assert "\n" not in str(error.value) and "TFSEQGAN_FAULT" in str(error.value)


HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from tfseqgan import runlock
lock = runlock.acquire({run_dir!r})
print("locked", flush=True)
time.sleep(120)
"""


def test_run_lock_refuses_while_held_and_is_freed_by_the_holders_death(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(root=str(REPO_ROOT), run_dir=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runlock.RunDirectoryInUse) as error:
            runlock.acquire(str(tmp_path))
        message = str(error.value)
        assert f"{tmp_path} is in use by pid {holder.pid} on " in message and "(started " in message
        assert "\n" not in message
        holder.kill()
        holder.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    # The dead holder's pid is still written in the file; the lock is free all the same.
    assert f"pid={holder.pid}" in (tmp_path / runlock.LOCK_FILE).read_text()
    lock = runlock.acquire(str(tmp_path))
    assert f"pid={os.getpid()}" in (tmp_path / runlock.LOCK_FILE).read_text()
    lock.release()
    runlock.acquire(str(tmp_path)).release()


def test_metrics_reader_drops_only_an_unfinished_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"phase": "mle", "step": 0}\n{"phase": "mle", "st')
    assert metrics.read_metrics(str(path)) == [{"phase": "mle", "step": 0}]
    path.write_text('{"phase": "mle", "st\n{"phase": "mle", "step": 0}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:1"):
        metrics.read_metrics(str(path))


# --------------------------------------------------------------------- export
def test_full_disk_during_an_export_keeps_the_previous_export(tmp_path):
    from export_runs import make_run

    from tfseqgan.export.pipeline import MANIFEST_FILE, export_run
    from tfseqgan.export.restore import ExportError

    run_dir = tmp_path / "run"
    make_run(str(run_dir), "ids")
    export_run(str(run_dir))
    manifest = (run_dir / "export" / MANIFEST_FILE).read_bytes()
    faults.configure("enospc@export_write:1")
    with pytest.raises(ExportError) as error:
        export_run(str(run_dir))
    message = str(error.value)
    assert "\n" not in message and "No space left" in message and "untouched" in message
    assert (run_dir / "export" / MANIFEST_FILE).read_bytes() == manifest
    assert sorted(os.listdir(run_dir)) == ["checkpoints", "export", "model.json"]  # no temporary folder left


EXPORT_KILLER = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from tfseqgan import faults
from tfseqgan.export.pipeline import export_run
faults.configure("kill@export_commit:1")
export_run({run_dir!r})
"""


@pytest.mark.slow  # ~37 s; the full-disk and failed-export tests cover the same guarantee in-process
def test_kill_9_during_an_export_keeps_the_previous_export_and_a_new_one_replaces_it(tmp_path):
    from export_runs import make_run

    from tfseqgan.export.pipeline import MANIFEST_FILE, export_run

    run_dir = tmp_path / "run"
    make_run(str(run_dir), "ids")
    export_run(str(run_dir))
    manifest = (run_dir / "export" / MANIFEST_FILE).read_bytes()
    script = EXPORT_KILLER.format(root=str(REPO_ROOT), tests=str(REPO_ROOT / "tests"), run_dir=str(run_dir))
    killed = subprocess.run(
        [sys.executable, "-c", script], env=environment(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S * 3
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (run_dir / "export" / MANIFEST_FILE).read_bytes() == manifest  # complete files, not yet in place
    fresh = export_run(str(run_dir))
    written = json.loads((run_dir / "export" / MANIFEST_FILE).read_text())
    assert written == {k: v for k, v in fresh.items() if k != "out_dir"}
