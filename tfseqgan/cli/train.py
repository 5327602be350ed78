"""tfseqgan-train (in a checkout: python main.py): trains SeqGAN or another
objective. With no flags: the quick synthetic benchmark on a seeded random
oracle; `--dataset=poems|coco|text` trains on real text instead;
`--preset=NAME` (or `--flagfile=flags/NAME.cfg`) loads a shipped flagfile.

A thin layer over the Python API (tfseqgan/api.py): flags -> `api.train_parsed`
-> `Run.export`, with one-line errors and exit codes (2: a bad flag; 1: a run
that failed; 128 + N: stopped by signal N, checkpointed).
"""

import os
import re
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from tfseqgan import options  # noqa: E402
from tfseqgan.export.interrupt import end_export  # noqa: E402

FLAGS = flags.FLAGS
SECTIONS = options.define_flags(FLAGS)
FlagError = options.FlagError


def _stop_while_starting(signum, frame):
    """SIGINT/SIGTERM before training has begun: nothing to save, so exit at once."""
    print(f"interrupted: stopped while starting (signal {signum}); nothing to save", file=sys.stderr, flush=True)
    quiet = sys.modules.get("tfseqgan.quiet")
    if quiet is not None:
        quiet.finish()  # the filtered stderr's last lines are out before the process ends
    os._exit(128 + signum)


def _stop_during_export(signum, frame):
    """SIGINT/SIGTERM after training: the run is checkpointed; the export's temporary folder is removed."""
    end_export(
        signum,
        f"interrupted: stopped during the export (signal {signum}); training is complete and checkpointed, "
        f"export it with: tfseqgan-export --run_dir={FLAGS.run_dir} (in a checkout: python -m export)",
    )


def build_configs():
    """The parsed flags as the library's typed configs (raises FlagError)."""
    return options.build_configs(FLAGS)


def resolved_flags_text():
    return options.resolved_flags_text(FLAGS)


def parse_flags(argv):
    """absl's parsing, `--preset=NAME` expanded to its flagfile, and a bad flag
    reported as one line (exit 2) instead of absl's two-line message."""
    try:
        return FLAGS([argv[0], *options.expand_presets(argv[1:])])
    except FlagError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except flags.Error as error:
        message = re.sub(r"^ERROR:+\s*", "", " ".join(str(error).split()))  # absl's flagfile errors start so
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value)", file=sys.stderr)
        return 2
    logging.set_verbosity(logging.WARNING)
    return _run(received=[])


def _run(received):
    """main() after its argument check; `received` collects the signals."""
    from tfseqgan import faults

    try:
        faults.from_environment()  # test-only fault injection; nothing unless TFSEQGAN_FAULT is set
        build_configs()  # a bad flag is refused before TensorFlow loads
    except (FlagError, faults.FaultSpecError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import tensorflow as tf

    from tfseqgan import api, runlock
    from tfseqgan.checkpoints import describe
    from tfseqgan.export.restore import ExportError
    from tfseqgan.text import CorpusError
    from tfseqgan.training.loop import TrainingError, TrainingInterrupted
    from tfseqgan.training.session import Session

    session = Session()
    session.signals = received
    try:
        run = api.train_parsed(FLAGS, session=session, log=print)
    except FlagError as error:  # --strategy cannot be made here
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as interrupted:
        print(f"interrupted: {interrupted}; continue with --resume --run_dir={FLAGS.run_dir}", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)
    except (CorpusError, TrainingError, ValueError, runlock.RunDirectoryInUse) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (OSError, tf.errors.OpError) as error:  # a full disk, a file that cannot be written, ...
        print(
            f"error: {describe(error)}. Last good checkpoint: {session.last_checkpoint() or 'none yet'}",
            file=sys.stderr,
        )
        return 1
    if run is None:  # a worker that is not the chief
        return 0
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_during_export)
    print(f"run directory: {run.run_dir}")
    if FLAGS.export:
        from tfseqgan.export.pipeline import summary_lines

        try:
            manifest = run.export()
        except ExportError as error:
            print(f"error: export: {error}", file=sys.stderr)
            return 1
        for line in summary_lines(manifest):
            print(line)
    return 0


def run():
    """The console script's entry point (and main.py's)."""
    # TensorFlow's native start-up lines ignore TF_CPP_MIN_LOG_LEVEL: filter them (tfseqgan/quiet.py)
    from tfseqgan.quiet import filter_native_stderr

    filter_native_stderr()
    # until the trainer installs its own handlers (TensorFlow takes seconds to load)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_while_starting)
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
