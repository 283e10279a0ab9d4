"""Training progress from Ray Train workers to the driver while ``TorchTrainer.fit()`` runs.

Ray Train 2.60 (Train V2) runs the training controller in its own actor, so
its callbacks print nowhere the user looks, and worker stdout reaches the
driver only with ``log_to_driver`` (off unless ``--verbose``). Instead the
driver opens a Ray queue (an actor, so it works across a cluster's nodes),
passes its handle to the workers inside ``train_loop_config``, and a driver
thread prints each record rank 0 puts there, as it arrives, and logs it to
``OUT/progress.jsonl``. Records and lines are built by
:mod:`demoscope.training.progress`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from demoscope.training.progress import ProgressPrinter, Send

# The train_loop_config key that carries the queue handle; TrainConfig itself forbids unknown keys.
PROGRESS_KEY = "_progress_queue"
# Seconds between step records: often enough to see a run move, rare enough to cost nothing.
STEP_EVERY = 10.0


def worker_settings(cfg: dict) -> tuple[dict, Send | None]:
    """Split a worker's ``train_loop_config`` into the TrainConfig settings and a ``send`` (rank 0 only, else None)."""
    import ray.train

    settings = {k: v for k, v in cfg.items() if k != PROGRESS_KEY}
    channel = cfg.get(PROGRESS_KEY)
    if channel is None or ray.train.get_context().get_world_rank() != 0:
        return settings, None

    def send(record: dict[str, Any]) -> None:
        try:
            channel.put(record, timeout=5)
        except Exception:  # noqa: BLE001 - progress is best-effort: a lost line must never stop training
            pass

    return settings, send


class ProgressPump:
    """Context manager around ``fit()``: owns the queue and the thread that prints what arrives.

    ``loop_config(settings)`` adds the queue handle to a trainer's config. On
    exit (normal, error or Ctrl-C) the thread stops, records still queued are
    printed, and the queue actor is shut down; the exception, if any, propagates.
    """

    def __init__(self, log_path: str | Path | None) -> None:
        from ray.util.queue import Queue

        self.printer = ProgressPrinter(log_path)
        # num_cpus=0: the queue must never take a CPU that a training worker is waiting for.
        self.queue = Queue(actor_options={"num_cpus": 0})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="demoscope-train-progress", daemon=True)

    def loop_config(self, settings: dict) -> dict:
        return {**settings, PROGRESS_KEY: self.queue}

    def __enter__(self) -> ProgressPump:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            for record in self.queue.get_nowait_batch(self.queue.qsize()):
                self.printer.show(record)
        except Exception:  # noqa: BLE001 - Ray may be going down (Ctrl-C); the job's own error matters more
            pass
        finally:
            try:
                self.queue.shutdown(force=True)
            except Exception:  # noqa: BLE001 - same: never mask the job's outcome while tidying up
                pass

    def _pump(self) -> None:
        from ray.util.queue import Empty

        while not self._stop.is_set():
            try:
                record = self.queue.get(timeout=0.5)
            except Empty:
                continue
            except Exception:  # noqa: BLE001 - the queue actor is gone: nothing more will arrive
                return
            self.printer.show(record)
