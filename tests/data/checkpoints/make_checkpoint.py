"""How the checkpoints beside this file were made (kept for the record; it
imports tfseqgan.trainer, which no longer exists). Run from the root of an
old checkout, it writes a tiny run's final checkpoint (conftest's tiny
configs, 1 adversarial iteration) and the figures it must restore to:

    git worktree add /tmp/old aa8da39^ && cd /tmp/old && python make_checkpoint.py before_rollout_started
    git worktree add /tmp/old 044b43a && cd /tmp/old && python make_checkpoint.py before_split

aa8da39^ is the layout without `rollout_started`; 044b43a the last one of
tfseqgan/trainer.py, before the loop and the objectives were split.
"""

import json
import os
import shutil
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "tests")]

from conftest import tiny_configs  # noqa: E402
from tfseqgan.trainer import SeqGANTrainer  # noqa: E402


def main(out):
    run = "/tmp/checkpoint_run_" + os.path.basename(out)
    shutil.rmtree(run, ignore_errors=True)
    trainer = SeqGANTrainer(*tiny_configs(run, False, adversarial_iterations=1), log=lambda *a: None)
    trainer.run()
    prefix = trainer.checkpoint_manager.latest_checkpoint
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(os.path.dirname(prefix)):
        if name.startswith(os.path.basename(prefix) + "."):
            shutil.copy(os.path.join(os.path.dirname(prefix), name), out)
    expected = {
        "checkpoint": os.path.basename(prefix),
        "weights_sha256": trainer.weights_digest(),
        "mle_epoch": int(trainer.mle_epoch),
        "discriminator_round": int(trainer.discriminator_round),
        "adversarial_iteration": int(trainer.adversarial_iteration),
        "rng_state": [int(x) for x in trainer.rng.state.numpy()],
    }
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as stream:
        json.dump(expected, stream, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
