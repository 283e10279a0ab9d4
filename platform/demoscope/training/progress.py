"""Progress of long training runs: the records a worker sends as it trains, the lines a driver prints.

A training worker (rank 0) builds small JSON-safe records: a ``step`` record
now and then (the first optimiser step of a run, then at most one every
``every`` seconds) and an ``epoch`` record after every epoch, each with the
time elapsed and an estimate of the time left. It hands them to a ``send``
function (in ``demoscope train``, a Ray queue that the driver drains while
``fit()`` runs). The driver formats them with :func:`format_record` and shows
them through a :class:`ProgressPrinter`: whole lines on a terminal (never cut
to its width) and in a log, flushed as they come. Nothing here knows about Ray.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Send = Callable[[dict[str, Any]], None]


def format_duration(seconds: float | None) -> str:
    """``75.2`` -> ``"1m15s"``, ``3725`` -> ``"1h02m"``; ``None`` (not known yet) -> ``"?"``."""
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def eta_seconds(elapsed: float, done: float, total: float) -> float | None:
    """Time left if the remaining ``total - done`` units go at the pace so far; ``None`` before the first unit."""
    if done <= 0:
        return None
    return max(0.0, elapsed / done * (total - done))


class ProgressClock:
    """Worker-side timing: elapsed time, ETA over a run's steps, and a throttle for step records.

    ``total_steps`` counts the optimiser steps of the whole run and
    ``done_before`` those already done when it started (a resumed run), so
    the ETA is paced on this run's steps only.
    """

    def __init__(self, total_steps: int, done_before: int = 0, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total_steps, self.done_before, self.every, self.clock = total_steps, done_before, every, clock
        self.started = clock()
        self.last_sent: float | None = None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def eta(self, done_steps: int) -> float | None:
        """Seconds left after ``done_steps`` steps of the whole run (counting those before a resume)."""
        return eta_seconds(self.elapsed(), done_steps - self.done_before, self.total_steps - self.done_before)

    def due(self) -> bool:
        """True for the first call, then once ``every`` seconds have passed since the last True."""
        now = self.clock()
        if self.last_sent is None or now - self.last_sent >= self.every:
            self.last_sent = now
            return True
        return False


def step_record(clock: ProgressClock, epoch: int, epochs: int, step: int, steps: int, loss: float,
                done_steps: int) -> dict[str, Any]:
    """A ``step`` record: ``epoch`` is 0-based (as in metrics.json), ``step`` 1-based within the epoch."""
    return {"kind": "step", "epoch": epoch, "epochs": epochs, "step": step, "steps": steps, "loss": float(loss),
            "elapsed": clock.elapsed(), "eta": clock.eta(done_steps)}


def epoch_record(clock: ProgressClock, epochs: int, metrics: dict[str, Any], done_steps: int,
                 summary: str) -> dict[str, Any]:
    """An ``epoch`` record: the epoch's metrics as reported to Ray Train (and kept in metrics.json), and ``summary``.

    ``summary`` is the metrics part of the printed line; each recipe words its
    own (``opinion_epoch_summary``, ``student_epoch_summary``,
    ``trl_epoch_summary``), so the printer never guesses a trainer from keys.
    """
    return {"kind": "epoch", "epochs": epochs, "metrics": _plain(metrics), "summary": summary,
            "elapsed": clock.elapsed(), "eta": clock.eta(done_steps)}


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """Numbers as Python floats/ints (numpy and torch scalars would not survive JSON)."""
    out = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        out[key] = value
    return out


def _epoch_label(epoch: float, epochs: float) -> str:
    """1-based ``k/N``; TRL counts epochs as floats that are already 1-based at an epoch's end."""
    if isinstance(epoch, float) and not float(epoch).is_integer():
        return f"{epoch:.2f}/{epochs:g}"
    return f"{int(epoch) + 1}/{epochs:g}" if isinstance(epoch, int) else f"{epoch:g}/{epochs:g}"


def format_record(record: dict[str, Any]) -> str:
    """One line for a progress record (``step`` or ``epoch``), with elapsed time and ETA."""
    timing = f"elapsed {format_duration(record.get('elapsed'))}  ETA {format_duration(record.get('eta'))}"
    if record["kind"] == "step":
        return (f"epoch {_epoch_label(record['epoch'], record['epochs'])}  step {record['step']}/{record['steps']}  "
                f"loss {record['loss']:.4f}  {timing}")
    metrics = record["metrics"]
    return f"epoch {_epoch_label(metrics['epoch'], record['epochs'])} done: {record['summary']}  {timing}"


class ProgressPrinter:
    """Driver side: print each record as a whole line as it arrives, and append it to a JSON-lines log.

    On a terminal the lines go through ``rich`` with soft wrapping (a long
    line wraps instead of being cut at 80 columns); elsewhere (a log file, a
    pipe, ``ray job logs``) they are plain lines, flushed one by one.
    """

    def __init__(self, log_path: str | Path | None = None, stream: IO[str] | None = None) -> None:
        self.log_path = Path(log_path) if log_path else None
        self._stream = stream
        self.shown = 0

    @property
    def stream(self) -> IO[str]:
        # Looked up at each write, so a redirected sys.stdout (a test's capture) is honoured.
        return self._stream or sys.stdout

    def show(self, record: dict[str, Any]) -> None:
        """Print ``record`` and log it; a record that cannot be formatted is logged and skipped, never fatal."""
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        try:
            line = format_record(record)
        except (KeyError, TypeError, ValueError):  # a record from a newer worker: keep training, not the display
            return
        stream = self.stream
        if stream.isatty():
            from rich.console import Console

            Console(file=stream, soft_wrap=True, highlight=False).print(line, markup=False)
        else:
            print(line, file=stream, flush=True)
        self.shown += 1
