"""Benchmark: Ray Train opinion fine-tuning throughput with 2 workers against 1, same data, same run.

    .venv/bin/python bench/train.py [--rows 1024 --epochs 1]

Trains the tiny Llama (LoRA, forward KL) for one epoch on a synthetic
prepared set with 1 and then 2 CPU workers (DDP), and prints training examples
per second (timed inside the workers, so Ray's start-up is not counted), the
ratio, and peak RSS of this process and its Ray workers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aggregate import PeakRSS  # noqa: E402  (the same sampler as the aggregation benchmark)

from demoscope.pipelines.runtime import use_loopback_env  # noqa: E402

use_loopback_env()


def prepared_set(root: Path, rows: int) -> Path:
    from demoscope.surveys import AggregateInputs, aggregate_files, load_subpopulations
    from demoscope.surveys.finetuning import prepare_splits
    from demoscope.surveys.synthetic import generate_world

    world = generate_world(root / "world", waves=2, respondents=1000, seed=2, gss=False)
    distributions, _ = aggregate_files(world.files, AggregateInputs.build(load_subpopulations("22"),
                                                                          codebook_path=str(world.codebook_path)))
    train = prepare_splits(distributions, "QA", ratios=(1.0, 0.0, 0.0), seed=0)["train"].head(rows)
    path = root / "train.parquet"
    train.to_parquet(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    import torch

    from demoscope.pipelines import train as train_job
    from demoscope.pipelines.runtime import init_ray
    from demoscope.pipelines.train_opinion import OpinionTrainConfig

    root = Path(tempfile.mkdtemp(prefix="bench-train-"))
    data = prepared_set(root, args.rows)
    init_ray(num_cpus=os.cpu_count())
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}; {args.rows} rows, tiny Llama + LoRA, DDP on CPU")
    results = {}
    for workers in (1, 2):
        out = root / f"w{workers}"
        config = OpinionTrainConfig(model="tiny:llama", train_file=str(data), out=str(out), epochs=args.epochs,
                                    batch_size=16, num_workers=workers)
        with PeakRSS() as memory:
            start = time.perf_counter()
            train_job.run(config)
            wall = time.perf_counter() - start
        epochs = json.loads((out / "metrics.json").read_text())["epochs"]
        speed = sum(e["examples_per_second"] for e in epochs) / len(epochs)
        results[workers] = speed
        print(f"{workers} worker(s): {speed:7.1f} examples/s in training, {wall:5.1f} s wall with Ray Train start-up, "
              f"peak RSS {memory.peak / 2**20:.0f} MiB")
    print(f"2 workers / 1 worker: {results[2] / results[1]:.2f}x")


if __name__ == "__main__":
    main()
