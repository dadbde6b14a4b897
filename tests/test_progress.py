"""The CLI's progress callback (pipeline/progress.py): a bar opened at the first call, plain lines off a terminal."""

from __future__ import annotations

import io

import pytest

import celebamask.progress as progress_module
from celebamask.progress import LineProgress, ProgressCallback


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stderr is no terminal here: the callback's bar is a LineProgress; its lines are caught."""
    caught = io.StringIO()
    monkeypatch.setattr(progress_module, "LineProgress",
                        lambda desc, total: LineProgress(desc, total, interval=0.0, file=caught))
    return caught


def test_the_callback_follows_done_and_total_and_leaves_its_last_line(lines: io.StringIO) -> None:
    callback = ProgressCallback("build")
    assert callback.bar is None  # nothing shown before the first call
    for done in (0, 3, 10):
        callback(done, 10)
    callback.close()
    shown = lines.getvalue().splitlines()
    assert shown[0].startswith("build: 0/10 samples (0%)") and shown[-1].startswith("build: 10/10 samples (100%)")
    assert [line.split()[1] for line in shown] == ["0/10", "3/10", "10/10"]
    callback.close()  # closing twice is harmless
    assert lines.getvalue().splitlines() == shown


def test_a_removed_or_disabled_callback_prints_nothing_more(lines: io.StringIO) -> None:
    quiet = ProgressCallback("score", disable=True)
    quiet(5, 10)
    quiet.close()
    assert lines.getvalue() == ""
    failing = ProgressCallback("build")
    failing.bar = LineProgress("build", 10, interval=3600.0, file=lines)  # no line before the end
    failing(4, 10)
    failing.close(keep=False)  # the error line takes its place
    assert lines.getvalue() == ""
