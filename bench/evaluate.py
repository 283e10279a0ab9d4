"""Benchmark: evaluate's fixed cost on a few rows, and its memory as prompts grow 20x.

    .venv/bin/python bench/evaluate.py [--fixed-rows 20 --small 1000 --large 20000]

Fixed cost: `demoscope evaluate` on --fixed-rows rows (tiny Llama), each
run a fresh process timed from its start to its exit, once scoring in this
process (the default below `in_process_rows`) and once through Ray Data
(`in_process_rows=0`), with the time of each phase (imports, reading and
checking, Ray's start, model load and scoring, metrics, report, exit) and a
check that both wrote the same predictions.

Memory: a test set of --small and of --large rows (real QA-steered SubPOP
prompts, repeated) through Ray Data (one scoring actor) in a fresh process;
prompts/s and peak RSS of the process tree above an idle Ray.
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
    # Repeated copies get their own question keys: evaluate refuses duplicate rows.
    copies = [base.assign(qkey=base["qkey"] + (f"_copy{k}" if k else "")) for k in range(rows // len(base) + 1)]
    frame = pd.concat(copies, ignore_index=True).head(rows)
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
        evaluate_job.run(EvaluateConfig(test_file=path, out=out, n_boot=100, in_process_rows=0))
        seconds = time.perf_counter() - start
    return {"idle_mb": idle.peak / 2**20, "peak_mb": busy.peak / 2**20, "seconds": seconds}


def phases(path: str, out: str, in_process_rows: int) -> dict:
    """Run the evaluate command here, timing its phases by wrapping the functions that run them."""
    import functools

    marks: dict[str, float] = {}
    start = time.perf_counter()
    from demoscope.pipelines import evaluate as job

    marks["imports"] = time.perf_counter() - start

    def timed(name: str, phase: str) -> None:
        inner = getattr(job, name)

        @functools.wraps(inner)
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                marks[phase] = marks.get(phase, 0.0) + time.perf_counter() - began
        setattr(job, name, wrapper)

    for name, phase in (("init_ray", "Ray start"), ("_score", "model load + scoring"), ("score_rows", "metrics"),
                        ("report", "report")):
        timed(name, phase)
    began = time.perf_counter()
    job.main(["--test-file", path, "--out", out, "--in-process-rows", str(in_process_rows)])
    marks["read + check + write"] = time.perf_counter() - began - sum(
        marks.get(p, 0.0) for p in ("Ray start", "model load + scoring", "metrics", "report"))
    return marks


def fixed_cost(root: Path, rows: int) -> None:
    """Both paths on ``rows`` rows, each in a fresh process timed start to exit; phases and agreement printed."""
    import numpy as np
    import pandas as pd

    path = test_set(root, rows)
    results = {}
    for label, limit in (("in this process", 2000), ("Ray Data", 0)):
        out = root / f"fixed-{limit}"
        began = time.perf_counter()
        run = subprocess.run([sys.executable, __file__, "--phases", str(path), str(out), str(limit)],
                             capture_output=True, text=True, check=True)
        wall = time.perf_counter() - began
        marks = json.loads(run.stdout.strip().splitlines()[-1])
        marks["interpreter start + exit"] = max(0.0, wall - sum(marks.values()))  # Ray's shutdown, if started
        results[label] = (wall, marks, pd.read_parquet(out / "predictions"))
    names = list(dict.fromkeys(name for _, marks, _ in results.values() for name in marks))
    print(f"evaluate on {rows} rows (tiny:llama), fresh process each, seconds:")
    print(f"  {'phase':<24}" + "".join(f"{label:>18}" for label in results))
    for name in names:
        print(f"  {name:<24}" + "".join(f"{marks.get(name, 0.0):18.2f}" for _, marks, _ in results.values()))
    print(f"  {'total (start to exit)':<24}" + "".join(f"{wall:18.2f}" for wall, _, _ in results.values()))
    (_, _, here), (_, _, ray_data) = results.values()
    worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for column in here if column.startswith("dist_") for a, b in zip(here[column], ray_data[column]))
    ratio = results["Ray Data"][0] / results["in this process"][0]
    print(f"  same predictions: {list(here.columns) == list(ray_data.columns) and len(here) == len(ray_data)}, "
          f"max |difference| {worst:.1e}; in this process {ratio:.1f}x faster (target: under 15 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixed-rows", type=int, default=20, help="rows for the fixed-cost runs")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--phases", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(*args.probe)))
        return
    if args.phases:
        marks = phases(args.phases[0], args.phases[1], int(args.phases[2]))
        print(json.dumps(marks))
        return
    root = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    fixed_cost(root, args.fixed_rows)
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
