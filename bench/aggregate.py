"""Benchmark: the Ray aggregation job against a serial loop and the read floor.

    .venv/bin/python bench/aggregate.py [--waves 20 --respondents 5000]

In one run, on the same synthetic waves:
  floor   read every file once with pyreadstat (all columns), nothing else;
  serial  a straightforward serial implementation of the same algorithm, as
          SubPOP structures it: read each file, then loop over questions and
          groups, filter respondents and sum weights per answer with pandas;
  ray     our job (one Ray task per file, vectorised partial counts, streamed
          combine), timed once Ray is up;
  data    the same reduction as a Ray Data ``map`` (one block per file), for
          the record: why the job uses tasks.
It checks that serial and ray give the same numbers, prints the ratios, and
measures peak memory (driver + Ray workers) for --waves and 2x --waves in
fresh processes, to show that memory follows the largest file, not the
number of files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.pipelines.runtime import use_loopback_env

use_loopback_env()


def make_world(out: Path, waves: int, respondents: int) -> list[Path]:
    from demoscope.surveys.synthetic import generate_world

    marker = out / f"world-{waves}-{respondents}.json"
    if marker.exists():
        return [Path(p) for p in json.loads(marker.read_text())]
    world = generate_world(out / f"world-{waves}-{respondents}", waves=waves, respondents=respondents, seed=1,
                           gss=False)
    marker.write_text(json.dumps([str(p) for p in world.files]))
    return world.files


def read_floor(files: list[Path]) -> float:
    import pyreadstat

    start = time.perf_counter()
    for path in files:
        pyreadstat.read_sav(str(path))
    return time.perf_counter() - start


def serial_aggregate(files: list[Path], inputs) -> pd.DataFrame:
    """The baseline: per file, per question, per group, filter and sum (SubPOP's loop structure)."""
    import pyreadstat

    from demoscope.surveys.plan import plan_file
    from demoscope.surveys.readers import read_meta

    rows = []
    for path in files:
        meta = read_meta(path)
        spec = inputs.specs[0]
        plan = plan_file(meta, spec, inputs.subpopulations, inputs.codebook_for(spec))
        frame, _ = pyreadstat.read_sav(str(path))
        weights = frame[plan.weight_column].fillna(0.0)
        for question in plan.questions:
            for group in plan.groups:
                column, codes = group.conditions[0]
                sub = frame[frame[column].isin(codes) & frame[question.qkey].notna()]
                if sub.empty:
                    continue
                sums = weights[sub.index].groupby(sub[question.qkey]).sum()
                dist = np.array([sums.get(code, 0.0) for code in question.slot_codes])
                if dist.sum() <= 0 or dist[:-1].sum() <= 0:
                    continue
                dist = dist / dist.sum()
                rows.append((question.qkey, group.subpopulation.group, (dist[:-1] / dist[:-1].sum()).tolist(),
                             dist[-1]))
    return pd.DataFrame(rows, columns=["qkey", "group", "responses", "refusal_rate"])


def ray_aggregate(files: list[Path]):
    from demoscope.pipelines.aggregate import AggregateConfig, compute

    frame, _ = compute(AggregateConfig(inputs=[str(p) for p in files], progress=False))
    return frame


def ray_data_reduce(files: list[Path]) -> float:
    """Time the per-file reduction as a Ray Data map (best of 2, after a warm-up)."""
    import ray.data

    from demoscope.surveys import AggregateInputs, load_subpopulations, reduce_file

    inputs = AggregateInputs.build(load_subpopulations("22"))

    def reduce_row(row: dict) -> dict:
        return {"n": reduce_file(row["path"], inputs).respondents}

    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        dataset = ray.data.from_items([{"path": str(p)} for p in files], override_num_blocks=len(files))
        sum(row["n"] for row in dataset.map(reduce_row).iter_rows())
        best = min(best, time.perf_counter() - start)
    return best


class PeakRSS:
    """Samples the summed RSS of this process and its children (Ray workers) every 20 ms."""

    def __init__(self):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def _sample(self):
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def memory_probe(files: list[Path]) -> dict:
    """Run in a fresh process: baseline RSS once Ray is up, then peak RSS during the job."""
    from demoscope.pipelines.runtime import init_ray

    init_ray(num_cpus=2)
    ray_aggregate(files[:2])  # warm the worker pool so the measurement is the job, not Ray's start-up
    with PeakRSS() as idle:
        time.sleep(0.5)
    with PeakRSS() as busy:
        ray_aggregate(files)
    return {"files": len(files), "idle_mb": idle.peak / 2**20, "peak_mb": busy.peak / 2**20,
            "largest_file_mb": max(p.stat().st_size for p in files) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--respondents", type=int, default=5000)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--probe", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe is not None:
        print(json.dumps(memory_probe([Path(p) for p in args.probe])))
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = make_world(out, args.waves, args.respondents)
    print(f"{len(files)} waves x {args.respondents} respondents, "
          f"{sum(p.stat().st_size for p in files) / 2**20:.1f} MiB of .sav files")

    from demoscope.pipelines.runtime import init_ray
    from demoscope.surveys import AggregateInputs, load_subpopulations

    floor = read_floor(files)
    inputs = AggregateInputs.build(load_subpopulations("22"))
    start = time.perf_counter()
    serial = serial_aggregate(files, inputs)
    serial_s = time.perf_counter() - start

    init_ray(num_cpus=os.cpu_count())
    ray_aggregate(files[:2])  # Ray up and workers warm: we time the job, not Ray's start-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        ours = ray_aggregate(files)
        times.append(time.perf_counter() - start)
    ray_s = min(times)

    data_s = ray_data_reduce(files)

    merged = ours.merge(serial, on=["qkey", "group"], suffixes=("", "_serial"))
    assert len(merged) == len(serial) == len(ours), (len(merged), len(serial), len(ours))
    worst = max(np.abs(np.array(a) - np.array(b)).max() for a, b in zip(merged.responses, merged.responses_serial))
    assert worst < 1e-9, worst

    n = len(files)
    print(f"rows: {len(ours):,} (serial and ray agree to {worst:.1e})")
    print(f"read floor  {floor:7.2f} s   {floor / n * 1000:7.1f} ms/file")
    print(f"serial loop {serial_s:7.2f} s   {serial_s / n * 1000:7.1f} ms/file")
    print(f"ray job     {ray_s:7.2f} s   {ray_s / n * 1000:7.1f} ms/file   "
          f"(best of 3: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"ray data    {data_s:7.2f} s   {data_s / n * 1000:7.1f} ms/file   "
          f"(the same reduce as a Ray Data map; not used)")
    print(f"speed-up over the serial loop: {serial_s / ray_s:5.1f}x   (target >= 10x)")
    print(f"per-file cost / read floor:    {ray_s / floor:5.2f}x   (target <= 2x)")

    import ray

    ray.shutdown()
    more = make_world(out, 2 * args.waves, args.respondents)
    for subset in (files, more):
        probe = subprocess.run([sys.executable, __file__, "--probe", *map(str, subset)], capture_output=True, text=True,
                               check=True)
        mem = json.loads(probe.stdout.strip().splitlines()[-1])
        print(f"peak RSS, {mem['files']:3d} waves: {mem['peak_mb']:7.0f} MiB (idle Ray {mem['idle_mb']:.0f} MiB; "
              f"job adds {mem['peak_mb'] - mem['idle_mb']:.0f} MiB; largest file {mem['largest_file_mb']:.1f} MiB)")


if __name__ == "__main__":
    main()
