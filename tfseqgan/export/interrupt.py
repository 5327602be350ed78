"""What SIGINT/SIGTERM do during an export, for `tfseqgan-export` and for
the export at the end of `tfseqgan-train`. Standard library only: a signal
can come while the pipeline (and TensorFlow) are still importing."""

import os
import sys


def end_export(signum, message):
    """Removes the export's temporary folders, prints `message` as one line and ends the process
    with 128 + signum; during the commit's renames, returns (the pipeline raises the signal
    again once the export is in place).

    Nothing is raised: an exception raised from a signal handler surfaces
    wherever the interpreter happens to be, also inside a C extension calling
    back into Python, where TensorFlow turns it into a SystemError traceback.
    """
    # The pipeline may still be importing (a signal at start-up): its functions may not exist yet.
    pipeline = sys.modules.get("tfseqgan.export.pipeline")
    defer = getattr(pipeline, "defer_signal", None)
    if defer is not None and defer(signum):
        return
    remove = getattr(pipeline, "remove_temporary_folders", None)
    if remove is not None:
        remove()
    print(message, file=sys.stderr, flush=True)
    quiet = sys.modules.get("tfseqgan.quiet")
    if quiet is not None:
        quiet.finish()  # the filtered stderr's last lines are out before the process ends
    os._exit(128 + signum)
