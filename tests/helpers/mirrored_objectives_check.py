"""Run by tests/test_distribute.py in a fresh process (two logical CPU devices
must be configured before TensorFlow starts).

For --objective=gumbel and --objective=wgan_gp: builds the same tiny trainer
under the default (one-device) strategy and under MirroredStrategy over
/cpu:0 and /cpu:1, takes one whole adversarial iteration (generator step,
D or critic steps) from the same state, and prints JSON with the largest
weight difference and the iteration's metrics on each. Usage:
mirrored_objectives_check.py RUN_DIR
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from conftest import tiny_configs  # noqa: E402

from tfseqgan.training.loop import Trainer  # noqa: E402


def weights(t):
    return [w.numpy() for m in (t.generator, t.discriminator) for w in m.weights]


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(weights(a), weights(b)))


def main(run_dir):
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": mirrored.num_replicas_in_sync}
    # relativistic: D's pairs (real, fake) must stay together when the batch is split
    overrides = {"discriminator_steps": 2, "critic_steps": 2, "d_loss": "relativistic"}
    for objective in ("gumbel", "wgan_gp"):
        trainers = {
            name: Trainer(
                *tiny_configs(os.path.join(run_dir, objective, name), objective=objective, **overrides),
                log=lambda *a: None,
                strategy=strategy,
            )
            for name, strategy in (("single", tf.distribute.get_strategy()), ("mirrored", mirrored))
        }
        check = {"initial": max_difference(trainers["single"], trainers["mirrored"])}
        for name, t in trainers.items():
            t.make_data()
            before = weights(t)
            t.objective.begin()
            check[f"metrics_{name}"] = t.objective.iteration(1)
            check[f"moved_{name}"] = max(float(np.max(np.abs(x - y))) for x, y in zip(weights(t), before))
        check["after_iteration"] = max_difference(trainers["single"], trainers["mirrored"])
        result[objective] = check
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
