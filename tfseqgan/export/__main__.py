"""tfseqgan-export --run_dir=RUN [--out=DIR] (in a checkout: python -m export): exports and verifies the newest
intact checkpoint of a training run (see tfseqgan/export/pipeline.py). tfseqgan-train runs the
same at the end of training.

Every failure ends in one `error:` line and exit status 1 (a bad flag: exit
status 2); SIGTERM and SIGINT remove the temporary folder and exit with 128 +
the signal's number (during the commit's renames: once the export is in place).
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from absl import app, flags, logging  # noqa: E402

from tfseqgan.export.interrupt import end_export  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "The training run to export (holds checkpoints/ and model.json or flags.cfg).")
flags.DEFINE_string("out", "", "Destination folder; empty: RUN/export. Replaced only by a verified export.")
flags.DEFINE_integer("opset", 17, "ONNX opset of the converted models.", lower_bound=17)
flags.DEFINE_integer(
    "num_distribution_samples", 100_000, "ONNX first tokens drawn for the distribution check.", lower_bound=1000
)
flags.DEFINE_integer("seed", 0, "Seed of the verification's draws.", lower_bound=0)


def _interrupted(signum, frame):
    """SIGTERM / SIGINT: removes the temporary folder, says so in one line and ends the process."""
    end_export(signum, f"error: interrupted by {signal.Signals(signum).name}; no temporary folder left")


def main(argv):
    for name in (signal.SIGINT, signal.SIGTERM):
        signal.signal(name, _interrupted)
    return _export(argv)


def _export(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value)", file=sys.stderr)
        return 2
    if not FLAGS.run_dir:
        print("error: --run_dir is required (the training run to export)", file=sys.stderr)
        return 2
    logging.set_verbosity(logging.ERROR)
    from tfseqgan.export.pipeline import export_run, summary_lines
    from tfseqgan.export.restore import ExportError

    try:
        manifest = export_run(
            FLAGS.run_dir,
            FLAGS.out or None,
            opset=FLAGS.opset,
            num_distribution_samples=FLAGS.num_distribution_samples,
            seed=FLAGS.seed,
        )
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a bug or a case no check foresaw: still one line, never a traceback
        text = str(error).strip()
        reason = text.splitlines()[0][:300] if text else ""
        print(f"error: unexpected {type(error).__name__} while exporting {FLAGS.run_dir}: {reason}", file=sys.stderr)
        return 1
    try:
        for line in summary_lines(manifest):
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:  # the export is in place; a reader that went away is no failure of it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


def parse_flags(argv):
    """absl's flag parsing, with a bad flag as one `error:` line and exit status 2 (absl prints two)."""
    for stream in (sys.stdout, sys.stderr):  # a path the terminal's encoding lacks is printed escaped
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"error: {str(error).strip().splitlines()[0] if str(error).strip() else 'bad flags'}", file=sys.stderr)
        sys.exit(2)


def run():
    """The console script's entry point (and `python -m export`'s in a checkout)."""
    from tfseqgan.quiet import filter_native_stderr

    filter_native_stderr()  # TensorFlow's native start-up lines ignore TF_CPP_MIN_LOG_LEVEL (tfseqgan/quiet.py)
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
