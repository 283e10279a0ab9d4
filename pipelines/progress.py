"""Progress of a long job by rows: a live bar on a terminal, plain timestamped lines in a log.

Ray Data's own bars are off unless ``-v`` (they describe operators, not the
job); a job that streams rows back to the driver counts them here instead.
"""

from __future__ import annotations

import time
from types import TracebackType

from demoscope.training.progress import eta_seconds, format_duration


class RowProgress:
    """Count rows done out of ``total`` and show the rate and the time left.

    On a terminal this is a rich bar; otherwise (a log file, ``nohup``, a
    pipe) one plain line at most every ``every`` seconds and one at the end, so
    a log shows a run is alive without a line per batch.

        with RowProgress(len(rows), "scoring") as progress:
            for batch in batches:
                progress.advance(len(batch))
    """

    def __init__(self, total: int, label: str, every: float = 30.0, console=None, unit: str = "rows"):
        from rich.console import Console

        self.total, self.label, self.every, self.unit = total, label, every, unit
        self.console = console or Console(soft_wrap=True)
        self.done = 0
        self._bar = None
        self._started = self._printed = 0.0

    def __enter__(self) -> RowProgress:
        self._started = self._printed = time.monotonic()
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        else:
            self.console.print(f"{self.label}: 0/{self.total:,} {self.unit}")
        return self

    def advance(self, rows: int) -> None:
        """Add ``rows`` finished rows."""
        self.done += rows
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif time.monotonic() - self._printed >= self.every:
            self._printed = time.monotonic()
            self.console.print(self.line())

    def line(self) -> str:
        """``label: done/total rows (pct), rate rows/s, ETA`` as printed to a log."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        share = self.done / self.total if self.total else 1.0
        if self.done >= self.total:
            tail = f"done in {format_duration(elapsed)}"
        else:
            tail = f"ETA {format_duration(eta_seconds(elapsed, self.done, self.total))}"
        return (f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({share:.0%}), "
                f"{rate:,.1f} {self.unit}/s, {tail}")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif kind is None:
            self.console.print(self.line())

