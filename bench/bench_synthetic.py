"""Times the work units of the synthetic benchmark (REFERENCE.md settings:
vocabulary 5000, length 20, batch 64, the paper's discriminator) and writes
JSON with the median of several runs of each.

    python bench/bench_synthetic.py --out bench/results/synthetic.json
    python bench/bench_synthetic.py --mixed_precision=bfloat16 --out bench/results/synthetic_bf16.json
    python bench/bench_synthetic.py --jit_compile --out bench/results/synthetic_xla.json
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

from tfseqgan import config, distribute  # noqa: E402
from tfseqgan.training.loop import Trainer  # noqa: E402

# Fixed figures from another machine, not re-measured by this script: the
# original TF1 code and TextGAN-PyTorch's SeqGAN, seconds per work unit.
REFERENCE_SECONDS = {
    "sample_9984": {"original_tf1": 5.7, "textgan_pytorch": 24.6},
    "mle_epoch": {"original_tf1": 10.6, "textgan_pytorch": 4.1},
    "discriminator_round": {"original_tf1": 737.0, "textgan_pytorch": 105.0},
    "adversarial_generator_step": {"original_tf1": 11.3, "textgan_pytorch": 37.7},
}
REFERENCE_SOURCE = {
    "source": "../shared/docs/REFERENCE.md, 'Speed of other implementations on a 2-core CPU (measured here)'",
    "machine": "a 2-core x86-64 machine (REFERENCE.md names no CPU model)",
    "ratio_to_reference_<name>": "median_s here / reference_s[<name>]; below 1: less time than the reference figure",
    "caution": "the reference figures come from another machine, and 2-core machines differ by up to 2x "
    "on the same code: a ratio is not a speedup measured here; time both codes on one machine for that",
}


def cpu_description(cpuinfo="/proc/cpuinfo"):
    """The first CPU of /proc/cpuinfo: its model name, family and model numbers (the name alone
    can be as vague as "Intel(R) Xeon(R) Processor"), and whether it multiplies bfloat16 in hardware."""
    fields = {"model name": "model_name", "cpu family": "cpu_family", "model": "model"}
    cpu, flags = {}, None
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key in fields:
                    cpu.setdefault(fields[key], value)
                elif key == "flags" and flags is None:
                    flags = set(value.split())
    except OSError:
        return {"model_name": platform.processor() or None, "avx512_bf16": None, "amx_bf16": None}
    cpu.setdefault("model_name", None)
    for flag in ("avx512_bf16", "amx_bf16"):
        cpu[flag] = None if flags is None else flag in flags
    return cpu


def timed(fn, repeats):
    fn()  # warm-up: traces and compiles
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return {"median_s": statistics.median(times), "runs_s": [round(t, 4) for t in times]}


def projected_full_schedule(units, evaluation_s, train):
    """Seconds for flags/synthetic.cfg from the unit timings."""
    mle = train.mle_epochs * units["mle_epoch"]["median_s"]
    d_pretrain = train.discriminator_pretrain_rounds * units["discriminator_round"]["median_s"]
    d_round_adv = units["discriminator_round"]["median_s"]  # same work: 9,984 negatives, 3 epochs
    adversarial = train.adversarial_iterations * (
        train.generator_steps * units["adversarial_generator_step"]["median_s"]
        + train.discriminator_rounds * d_round_adv
    )
    evaluations = (train.mle_epochs // train.mle_eval_every + 1) + (
        train.adversarial_iterations // train.adversarial_eval_every + 1
    )
    total = mle + d_pretrain + adversarial + evaluations * evaluation_s
    return {
        "mle_s": mle,
        "discriminator_pretrain_s": d_pretrain,
        "adversarial_s": adversarial,
        "evaluations_s": evaluations * evaluation_s,
        "total_s": total,
        "total_hours": total / 3600,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/synthetic.json")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the fast units")
    parser.add_argument("--discriminator_repeats", type=int, default=3, help="runs of the D round")
    parser.add_argument("--oracle_weights", default="", help="oracle .npz; default: random oracle")
    parser.add_argument("--jit_compile", action="store_true", help="XLA-compile the steps")
    parser.add_argument("--mixed_precision", default="", choices=["", "bfloat16", "float16"])
    parser.add_argument("--reward_precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--strategy", default="auto", choices=distribute.STRATEGIES)
    parser.add_argument("--units", default="sample_9984,mle_epoch,adversarial_generator_step,discriminator_round")
    args = parser.parse_args()
    strategy = distribute.make_strategy(args.strategy)

    # The paper's schedule
    train = config.TrainConfig(
        jit_compile=args.jit_compile, mixed_precision=args.mixed_precision, reward_precision=args.reward_precision
    )
    trainer = Trainer(
        config.ModelConfig(),
        config.OracleConfig(weights_path=args.oracle_weights),
        train,
        config.RunConfig(run_dir="/tmp/tfseqgan_bench", progress=False),
        log=lambda *a: None,
        strategy=strategy,
    )
    trainer.make_data()
    trainer._started = time.perf_counter()

    class _NoWriter:
        def write(self, *args):
            pass

    trainer.metrics_writer = _NoWriter()
    units = {}
    work = {
        "sample_9984": (lambda: trainer.sample(9984).numpy(), args.repeats),
        "mle_epoch": (lambda: trainer.run_mle_epoch(1), args.repeats),
        "adversarial_generator_step": (lambda: trainer.objective.run_generator_step(1), args.repeats),
        "discriminator_round": (
            lambda: trainer.run_discriminator_round(9984, 3, "bench", 1),
            args.discriminator_repeats,
        ),
    }
    for name in args.units.split(","):
        fn, repeats = work[name]
        units[name] = timed(fn, repeats)
        print(name, units[name], flush=True)
    units["evaluation"] = timed(lambda: trainer.evaluate("mle", 0), 3)
    print("evaluation", units["evaluation"], flush=True)

    for name, reference in REFERENCE_SECONDS.items():
        if name not in units:
            continue
        units[name]["reference_s"] = reference
        for source, seconds in reference.items():
            units[name][f"ratio_to_reference_{source}"] = units[name]["median_s"] / seconds
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu": cpu_description(),
            "cpu_count": os.cpu_count(),
            "tensorflow": tf.__version__,
        },
        "settings": "vocabulary 5000, length 20, batch 64, paper D (1,720 filters), 16 rollouts",
        "jit_compile": args.jit_compile,
        "mixed_precision": args.mixed_precision or "float32",
        "reward_precision": args.reward_precision,
        "reward_dtype": (trainer.objective.reward_dtype or tf.as_dtype(trainer.discriminator.compute_dtype)).name,
        "strategy": args.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "units": units,
        "reference": REFERENCE_SOURCE,
    }
    if all(name in units for name in REFERENCE_SECONDS):
        result["projected_full_synthetic_cfg"] = projected_full_schedule(units, units["evaluation"]["median_s"], train)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as stream:
        json.dump(result, stream, indent=2)
    print(json.dumps(result.get("projected_full_synthetic_cfg"), indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
