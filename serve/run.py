"""``demoscope serve``: run the opinions API on the local Ray (or a cluster), on 127.0.0.1 by default.

    demoscope serve --model tiny:llama adapters.subpop=runs/train/adapter
    python -m demoscope.serve.run --config serve/config.yaml
"""

from __future__ import annotations

import signal
import sys
import time

from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import init_ray
from demoscope.serve.config import ServeConfig

SUMMARY = "the opinions HTTP API on Ray Serve (POST /v1/opinions, /v1/models, /healthz, /docs)"
DESCRIPTION = """\
Serve option distributions over HTTP with Ray Serve: POST /v1/opinions takes
survey items (question, options, a subpopulation or free steering text,
optionally the humans' distribution) and returns each item's distribution over
its options, the model and adapter used, and the Wasserstein distance to the
humans. GET /v1/models lists adapters; GET /healthz; OpenAPI docs at /docs.
Set DEMOSCOPE_API_TOKEN to require 'Authorization: Bearer <token>'.

example demoscope serve --model tiny:llama adapters.subpop=runs/demo/train/adapter default_adapter=subpop
        curl -s 127.0.0.1:8000/v1/models
"""


def run(config: ServeConfig, address: str | None = None, verbose: bool = False) -> int:
    """Deploy the application; with ``blocking``, serve until SIGINT/SIGTERM."""
    init_ray(address, verbose)
    from ray import serve

    from demoscope.serve.app import build_app

    serve.start(http_options={"host": config.host, "port": config.port})
    serve.run(build_app(config.model_dump(mode="json")), name="demoscope", route_prefix="/")
    print(f"serving {config.model} at http://{config.host}:{config.port} (opinion explorer: /, API docs: /docs)",
          flush=True)
    if not config.blocking:
        return 0
    stop = {"now": False}
    previous = {sig: signal.signal(sig, lambda *_: stop.update(now=True)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop["now"]:
            time.sleep(0.5)
        serve.shutdown()
    finally:  # the caller's handlers again: a later Ctrl-C must reach it
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


JOB = Job(name="serve", description=DESCRIPTION, config=ServeConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
