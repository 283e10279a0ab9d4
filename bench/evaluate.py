"""Benchmark: the evaluate job streams, so 20x more prompts need about the same memory.

    .venv/bin/python bench/evaluate.py [--small 1000 --large 20000]

Writes a test set of --small and of --large rows (real QA-steered SubPOP
prompts, repeated), runs `demoscope evaluate` on each in a fresh process
(tiny Llama, Transformers backend, one scoring actor), and prints prompts/s
and peak RSS of the process tree above an idle Ray.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aggregate import PeakRSS  # noqa: E402


def test_set(root: Path, rows: int) -> Path:
    import pandas as pd

    from demoscope.surveys import AggregateInputs, aggregate_files, load_subpopulations
    from demoscope.surveys.finetuning import prepare_splits
    from demoscope.surveys.synthetic import generate_world

    world = generate_world(root / "world", waves=1, respondents=800, seed=4, gss=False)
    distributions, _ = aggregate_files(world.files, AggregateInputs.build(load_subpopulations("22"),
                                                                          codebook_path=str(world.codebook_path)))
    base = prepare_splits(distributions, "QA", ratios=(0.0, 0.0, 1.0), seed=0)["test"]
    frame = pd.concat([base] * (rows // len(base) + 1), ignore_index=True).head(rows)
    path = root / f"test-{rows}.parquet"
    frame.to_parquet(path, index=False)
    return path


def probe(path: str, out: str) -> dict:
    from demoscope.pipelines import evaluate as evaluate_job
    from demoscope.pipelines.evaluate import EvaluateConfig
    from demoscope.pipelines.runtime import init_ray

    init_ray(num_cpus=2)
    with PeakRSS() as idle:
        time.sleep(0.5)
    with PeakRSS() as busy:
        start = time.perf_counter()
        evaluate_job.run(EvaluateConfig(test_file=path, out=out, n_boot=100))
        seconds = time.perf_counter() - start
    return {"idle_mb": idle.peak / 2**20, "peak_mb": busy.peak / 2**20, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(*args.probe)))
        return
    root = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    for rows in (args.small, args.large):
        path = test_set(root, rows)
        run = subprocess.run([sys.executable, __file__, "--probe", str(path), str(root / f"out-{rows}")],
                             capture_output=True, text=True, check=True)
        mem = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{rows:6d} prompts: {rows / mem['seconds']:6.1f} prompts/s end to end ({mem['seconds']:.1f} s), "
              f"peak RSS {mem['peak_mb']:.0f} MiB (idle Ray {mem['idle_mb']:.0f} MiB, "
              f"job adds {mem['peak_mb'] - mem['idle_mb']:.0f} MiB)")


if __name__ == "__main__":
    main()
