"""Seconds per adversarial iteration of each objective on the paper's
synthetic settings (vocabulary 5,000, length 20, batch 64, the paper's
discriminator), with each objective's flagfile schedule inside an iteration:

- seqgan: one policy-gradient step (64 samples, 16 rollouts each) and one D
  round of 2,048 fresh negatives, 1 epoch (flags/synthetic_quick.cfg);
- gumbel: one generator step through D and 5 D steps (one batch each), the
  hard id fed back;
- wgan_gp: 5 critic steps and one generator step.

The weights are untrained: the time of an iteration does not depend on them.
Writes JSON with the median of several iterations and the machine's CPU.

    python bench/bench_objectives.py --out bench/results/objectives_speed.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from bench.bench_synthetic import cpu_description  # noqa: E402
from tfseqgan import config  # noqa: E402
from tfseqgan.training.loop import Trainer  # noqa: E402

SCHEDULES = {  # the inside of one adversarial iteration, as the synthetic_quick flagfiles set it
    "seqgan": dict(
        generator_steps=1,
        discriminator_rounds=1,
        adversarial_discriminator_negatives=2048,
        adversarial_discriminator_epochs=1,
    ),
    "gumbel": dict(generator_steps=1, discriminator_steps=5, d_loss="relativistic", gumbel_feedback="hard"),
    "wgan_gp": dict(generator_steps=1, critic_steps=5),
}


def seconds_per_iteration(objective, repeats, oracle_weights, reward_precision):
    train = config.TrainConfig(objective=objective, reward_precision=reward_precision, **SCHEDULES[objective])
    trainer = Trainer(
        config.ModelConfig(),
        config.OracleConfig(weights_path=oracle_weights, num_real_samples=9984, num_test_samples=64),
        train,
        config.RunConfig(run_dir=f"/tmp/tfseqgan_bench_{objective}", progress=False),
        log=lambda *a: None,
    )
    trainer.make_data()
    trainer.objective.begin()
    trainer.objective.iteration(1)  # warm-up: traces
    times = []
    for iteration in range(2, repeats + 2):
        began = time.perf_counter()
        trainer.objective.iteration(iteration)
        times.append(time.perf_counter() - began)
    return {
        "median_s": statistics.median(times),
        "runs_s": [round(t, 4) for t in times],
        "schedule": SCHEDULES[objective],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/objectives_speed.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--oracle_weights", default="", help="oracle .npz; default: random oracle")
    parser.add_argument("--reward_precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--objectives", default="seqgan,gumbel,wgan_gp")
    args = parser.parse_args()
    results = {}
    for objective in args.objectives.split(","):
        results[objective] = seconds_per_iteration(objective, args.repeats, args.oracle_weights, args.reward_precision)
        print(objective, results[objective], flush=True)
    report = {
        "what": "seconds per adversarial iteration, paper's synthetic settings",
        "objectives": results,
        "reward_precision": args.reward_precision,
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_description(),
            "cpu_count": os.cpu_count(),
            "tensorflow": tf.__version__,
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as stream:
        json.dump(report, stream, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
