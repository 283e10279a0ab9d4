"""Progress records and lines: pacing, ETA, and whole lines on a terminal and in a log."""

import io
import json

import pytest

from demoscope.pipelines.train_distill import epoch_summary as student_epoch_summary
from demoscope.pipelines.train_opinion import epoch_summary as opinion_epoch_summary
from demoscope.pipelines.train_preference import epoch_summary as trl_epoch_summary
from demoscope.training.progress import (
    ProgressClock,
    ProgressPrinter,
    epoch_record,
    eta_seconds,
    format_duration,
    format_record,
    step_record,
)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("seconds, text", [(None, "?"), (0.4, "0s"), (59.6, "1m00s"), (75.2, "1m15s"), (3725, "1h02m")])
def test_durations_read_as_hours_minutes_seconds(seconds, text):
    assert format_duration(seconds) == text


def test_eta_is_unknown_before_the_first_unit_then_paced_on_the_units_so_far():
    assert eta_seconds(5.0, 0, 10) is None
    assert eta_seconds(30.0, 3, 12) == pytest.approx(90.0)
    assert eta_seconds(30.0, 12, 12) == 0.0


def test_a_resumed_run_paces_its_eta_on_its_own_steps():
    clock = FakeClock()
    progress = ProgressClock(total_steps=100, done_before=50, clock=clock)
    clock.now += 10.0
    assert progress.eta(done_steps=60) == pytest.approx(40.0)  # 10 steps in 10 s, 40 left


def test_step_records_are_due_first_then_at_most_once_per_interval():
    clock = FakeClock()
    progress = ProgressClock(total_steps=10, every=10.0, clock=clock)
    due = []
    for _ in range(25):
        due.append(progress.due())
        clock.now += 1.0
    assert [i for i, d in enumerate(due) if d] == [0, 10, 20]


def test_lines_show_one_based_epochs_losses_and_timing():
    clock = FakeClock()
    progress = ProgressClock(total_steps=20, clock=clock)
    clock.now += 12.0
    step = format_record(step_record(progress, epoch=0, epochs=2, step=3, steps=10, loss=0.56789, done_steps=3))
    assert step == "epoch 1/2  step 3/10  loss 0.5679  elapsed 12s  ETA 1m08s"  # 17 steps left at 4 s each
    metrics = {"epoch": 1, "train_kl": 0.5, "train_wd": 0.25, "val_kl": 0.4, "val_wd": 0.2, "lr": 1e-3}
    done = format_record(epoch_record(progress, 2, metrics, done_steps=20, summary=opinion_epoch_summary(metrics)))
    assert done == ("epoch 2/2 done: train kl 0.5000 wd 0.2500  val kl 0.4000 wd 0.2000  lr 1.00e-03  "
                    "elapsed 12s  ETA 0s")


def test_trl_epochs_are_already_counted_from_one():
    progress = ProgressClock(total_steps=8, clock=FakeClock())
    metrics = {"epoch": 1.0, "loss": 0.7, "eval_loss": 0.65}
    line = format_record(epoch_record(progress, 2, metrics, done_steps=4, summary=trl_epoch_summary(metrics)))
    assert line.startswith("epoch 1/2 done: loss 0.7000  eval_loss 0.6500")


def test_printer_writes_plain_flushed_lines_and_a_json_log(tmp_path):
    stream = io.StringIO()
    printer = ProgressPrinter(tmp_path / "progress.jsonl", stream=stream)
    progress = ProgressClock(total_steps=4, clock=FakeClock())
    records = [step_record(progress, 0, 2, 1, 2, 0.5, 1),
               epoch_record(progress, 2, {"epoch": 0, "train_loss": 0.4, "train_accuracy": 0.9}, 2,
                            student_epoch_summary({"train_loss": 0.4, "train_accuracy": 0.9}))]
    for record in records:
        printer.show(record)
    assert stream.getvalue().splitlines() == [format_record(r) for r in records]
    logged = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert logged == records and printer.shown == 2


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_long_line_on_a_narrow_terminal_wraps_instead_of_being_cut(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    stream = FakeTerminal()
    progress = ProgressClock(total_steps=4, clock=FakeClock())
    metrics = {"epoch": 0, "train_kl": 0.5, "train_wd": 0.25, "val_kl": 0.4, "val_wd": 0.2, "lr": 1e-3}
    record = epoch_record(progress, 2, metrics, 2, opinion_epoch_summary(metrics))
    ProgressPrinter(stream=stream).show(record)
    assert "".join(stream.getvalue().split()) == "".join(format_record(record).split())


def test_a_record_it_cannot_format_is_logged_but_not_fatal(tmp_path):
    stream = io.StringIO()
    printer = ProgressPrinter(tmp_path / "p.jsonl", stream=stream)
    printer.show({"kind": "epoch", "epochs": 2})  # no metrics
    assert stream.getvalue() == "" and printer.shown == 0
    assert json.loads((tmp_path / "p.jsonl").read_text()) == {"kind": "epoch", "epochs": 2}
