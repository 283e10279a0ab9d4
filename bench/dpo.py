"""Benchmark: DPO preference pairs per second on Ray Train with 2 workers against 1, same run.

    .venv/bin/python bench/dpo.py [--pairs 128]

Each worker count trains the tiny Llama (LoRA, TRL DPO) on synthetic pairs
for 1 and for 3 epochs; pairs/s = 2 x pairs / (t3 - t1), so Ray Train's and
TRL's start-up cancel out.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from demoscope.pipelines.runtime import use_loopback_env

use_loopback_env()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=128)
    args = parser.parse_args()

    import torch

    from demoscope.pipelines import train as train_job
    from demoscope.pipelines.runtime import init_ray
    from demoscope.pipelines.train_preference import PreferenceTrainConfig
    from demoscope.training.preference_data import synthetic_preferences

    root = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    data = root / "pairs.jsonl"
    synthetic_preferences(args.pairs, "left", seed=0).to_json(data, orient="records", lines=True)
    init_ray(num_cpus=os.cpu_count())
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"{args.pairs} synthetic pairs, tiny Llama + LoRA, TRL DPO")
    speed = {}
    for workers in (1, 2):
        wall = {}
        for epochs in (1, 3):
            config = PreferenceTrainConfig(objective="dpo", model="tiny:llama", train_file=str(data),
                                           out=str(root / f"w{workers}e{epochs}"), epochs=epochs, batch_size=4,
                                           num_workers=workers)
            start = time.perf_counter()
            train_job.run(config)
            wall[epochs] = time.perf_counter() - start
        speed[workers] = 2 * args.pairs / (wall[3] - wall[1])
        print(f"{workers} worker(s): {speed[workers]:6.1f} pairs/s "
              f"(1 epoch {wall[1]:.1f} s, 3 epochs {wall[3]:.1f} s wall)")
    print(f"2 workers / 1 worker: {speed[2] / speed[1]:.2f}x")


if __name__ == "__main__":
    main()
