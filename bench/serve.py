"""Benchmark: the opinions API under load on loopback, dynamic batching on against off, same run.

    .venv/bin/python bench/serve.py [--levels 1 8 32 --requests 96 --seconds 60]

Deploys the app twice on a local Ray Serve (one model replica each time,
batching on, then off), sends single-item POST /v1/opinions requests from a
thread pool at each concurrency level (bounded by --requests and --seconds,
127.0.0.1 only), and prints throughput, p50 and p99 latency and the count of
non-200 answers. The model is the tiny Llama, or with --bigger a 4-layer,
hidden-256 one from the same factory, so compute is not dwarfed by HTTP.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from demoscope.pipelines.runtime import use_loopback_env

use_loopback_env()

GROUPS = [("POLPARTY", "Democrat"), ("POLPARTY", "Republican"), ("POLIDEOLOGY", "Liberal"),
          ("POLIDEOLOGY", "Conservative"), ("RELIG", "Protestant"), ("RACE", "Black"), ("SEX", "Female"),
          ("CREGION", "South")]
QUESTIONS = [
    ("How much, if at all, do you worry about climate change?", ["A great deal", "Some", "Not too much", "Not at all"]),
    ("Do you think the economy is getting better or worse?", ["Getting better", "Getting worse", "Staying the same"]),
    ("How often do you attend religious services?", ["Weekly", "Monthly", "Yearly", "Seldom", "Never"]),
]


def item(i: int) -> dict:
    attribute, group = GROUPS[i % len(GROUPS)]
    question, options = QUESTIONS[i % len(QUESTIONS)]
    return {"question": question, "options": options, "subpopulation": {"attribute": attribute, "group": group}}


def load(url: str, concurrency: int, total: int, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    latencies, codes = [], []

    def one(i: int) -> None:
        if time.monotonic() > deadline:
            return
        start = time.perf_counter()
        response = requests.post(f"{url}/v1/opinions", json={"items": [item(i)]}, timeout=60)
        latencies.append(time.perf_counter() - start)
        codes.append(response.status_code)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(total)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"rps": len(latencies) / wall, "p50": statistics.median(ordered) * 1000,
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
            "errors": sum(c != 200 for c in codes), "server_errors": sum(c >= 500 for c in codes), "n": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--bigger", action="store_true")
    args = parser.parse_args()

    from ray import serve

    from demoscope.models import build_tiny_model
    from demoscope.pipelines.runtime import init_ray
    from demoscope.serve.app import build_app
    from demoscope.serve.config import ServeConfig

    model = "tiny:llama"
    if args.bigger:
        model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "bigger", hidden_size=256, num_layers=4, num_heads=4))
    init_ray()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    print(f"model {model}; one replica; {args.requests} single-item requests per level (at most {args.seconds:.0f} s)")
    results = {}
    for batching in (True, False):
        config = ServeConfig(model=model, port=port, batching=batching, min_replicas=1, max_replicas=1)
        serve.run(build_app(config.model_dump(mode="json")), name="demoscope", route_prefix="/")
        load(url, 4, 8, 30)  # warm-up
        for level in args.levels:
            r = results[(batching, level)] = load(url, level, args.requests, args.seconds)
            print(f"batching {'on ' if batching else 'off'} concurrency {level:3d}: {r['rps']:7.1f} req/s  "
                  f"p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms  "
                  f"non-200 {r['errors']} (5xx {r['server_errors']}) of {r['n']}")
        serve.delete("demoscope")
    for level in args.levels:
        print(f"concurrency {level:3d}: batching on / off = "
              f"{results[(True, level)]['rps'] / results[(False, level)]['rps']:.2f}x")
    print(f"5xx in total: {sum(r['server_errors'] for r in results.values())}")
    serve.shutdown()


if __name__ == "__main__":
    main()
