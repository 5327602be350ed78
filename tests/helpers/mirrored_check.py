"""Run by tests/test_distribute.py in a fresh process: two logical CPU devices
must be configured before TensorFlow starts.

Builds the same tiny trainer under the default (one-device) strategy and under
MirroredStrategy over /cpu:0 and /cpu:1, takes one MLE step, one D step and one
adversarial generator step (sampling, rollout rewards, policy gradient,
rollout update) on the same global batch, and prints JSON with the largest
weight difference after each. Then checks that a checkpoint written under one
strategy resumes under the other. Usage: mirrored_check.py RUN_DIR
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

from tfseqgan import distribute  # noqa: E402
from tfseqgan.training.loop import Trainer  # noqa: E402


def trainer(strategy, run_dir, resume=False, **overrides):
    return Trainer(*tiny_configs(run_dir, resume, **overrides), log=lambda *a: None, strategy=strategy)


def weights(t):
    models = (t.generator, t.objective.rollout_policy, t.discriminator)
    return [w.numpy() for m in models for w in m.weights]


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(weights(a), weights(b)))


def first_batch(t, tensors):
    return next(iter(distribute.distributed_batches(t.strategy, tensors, t.train_config.batch_size)))


def main(run_dir):
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single = trainer(tf.distribute.get_strategy(), os.path.join(run_dir, "single"))
    multi = trainer(mirrored, os.path.join(run_dir, "mirrored"))
    result = {"replicas": mirrored.num_replicas_in_sync, "initial": max_difference(single, multi)}
    batch = single.train_config.batch_size
    rng = np.random.default_rng(0)
    tokens = tf.constant(rng.integers(0, 20, (batch, 6)), tf.int32)
    labels = tf.constant(rng.integers(0, 2, batch), tf.int32)

    losses = {}
    for name, t in (("single", single), ("mirrored", multi)):
        (x,) = first_batch(t, (tokens,))
        losses[f"mle_{name}"] = float(t.mle_step(x))
    result["mle_step"] = max_difference(single, multi)

    for name, t in (("single", single), ("mirrored", multi)):
        x, y = first_batch(t, (tokens, labels))
        loss, accuracy = t.discriminator_step(x, y, tf.constant([3, 4], tf.int64))
        losses[f"d_{name}"], losses[f"d_accuracy_{name}"] = float(loss), float(accuracy)
    result["discriminator_step"] = max_difference(single, multi)

    for name, t in (("single", single), ("mirrored", multi)):  # beta <- theta on every replica
        t.objective.start_rollout_policy()
        result[f"rollout_copy_{name}"] = max(
            float(np.max(np.abs(np.asarray(b) - np.asarray(g))))
            for beta, theta in zip(t.objective.rollout_policy.weights, t.generator.weights)
            for b, g in zip(
                t.strategy.experimental_local_results(beta.value), t.strategy.experimental_local_results(theta.value)
            )
        )
    for name, t in (("single", single), ("mirrored", multi)):
        samples = t.steps.generate_per_replica(tf.constant(batch, tf.int32), tf.constant([5, 6], tf.int64))
        rewards = t.objective.rewards(samples, tf.constant([7, 8], tf.int64), t.objective.real_batch())
        losses[f"pg_{name}"] = float(t.objective.policy_gradient_step(samples, rewards))
        losses[f"mean_reward_{name}"] = float(t.steps.mean_over_replicas(rewards))
        t.objective.update_rollout()
        gathered = t.strategy.gather(samples, axis=0) if t.num_replicas > 1 else samples
        result[f"samples_{name}"] = gathered.numpy().tolist()
    result["adversarial_step"] = max_difference(single, multi)
    result["losses"] = losses

    # A whole tiny run under one strategy, resumed under the other.
    for first, second, label in ((mirrored, None, "mirrored_then_single"), (None, mirrored, "single_then_mirrored")):
        first = first or tf.distribute.get_strategy()
        second = second or tf.distribute.get_strategy()
        folder = os.path.join(run_dir, label)
        trainer(first, folder, adversarial_iterations=1).run()
        resumed = trainer(second, folder, resume=True, adversarial_iterations=2)
        history = resumed.run()
        result[label] = {
            "resumed_adversarial_steps": [r["step"] for r in history if r["phase"] == "adversarial"],
            "final_nll_oracle": history[-1]["nll_oracle"],
        }
    straight = trainer(tf.distribute.get_strategy(), os.path.join(run_dir, "straight"), adversarial_iterations=2)
    result["straight_final_nll_oracle"] = straight.run()[-1]["nll_oracle"]
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
