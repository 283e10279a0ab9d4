"""Row progress: plain lines with rate and ETA in a log, a live bar on a terminal."""

import io
import re

from rich.console import Console

from demoscope.pipelines.progress import RowProgress


def test_a_log_gets_plain_lines_with_rate_and_time_left():
    sink = io.StringIO()
    with RowProgress(300, "scoring", every=0, console=Console(file=sink, force_terminal=False, width=200)) as progress:
        progress.advance(100)
        progress.advance(100)
        progress.advance(100)
    lines = sink.getvalue().splitlines()
    assert lines[0] == "scoring: 0/300 rows"
    assert re.fullmatch(r"scoring: 100/300 rows \(33%\), [\d,.]+ rows/s, ETA \d+s", lines[1])
    assert re.fullmatch(r"scoring: 300/300 rows \(100%\), [\d,.]+ rows/s, done in \d+s", lines[-1])
    assert len(lines) == 5


def test_a_log_is_not_flooded_between_intervals():
    sink = io.StringIO()
    with RowProgress(1000, "scoring", every=3600, console=Console(file=sink, force_terminal=False)) as progress:
        for _ in range(10):
            progress.advance(100)
    assert sink.getvalue().splitlines() == [sink.getvalue().splitlines()[0], sink.getvalue().splitlines()[-1]]
    assert sink.getvalue().splitlines()[-1].startswith("scoring: 1,000/1,000 rows (100%)")


def test_a_terminal_gets_a_bar_with_the_count_and_eta():
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=120)
    with RowProgress(50, "scoring", console=console) as progress:
        progress.advance(50)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", sink.getvalue())
    assert "scoring" in text and "50/50" in text and "ETA" in text
