"""Progress for the CLI: a tqdm bar on a terminal, a plain line every few seconds otherwise.

A bar's ``\\r`` frames turn a log file (Slurm, CI, ``2> build.log``) into one huge line; without
a terminal the progress is written as ordinary lines instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

PLAIN_INTERVAL_SECONDS = 5.0


class LineProgress:
    """The part of tqdm's interface the CLI uses (n, total, update, close, leave), as lines like
    ``build: 1200/30000 samples (4%), 210/s, eta 2m17s`` at most every ``interval`` seconds."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "sample",
                 interval: float = PLAIN_INTERVAL_SECONDS, file: TextIO | None = None) -> None:
        self.desc, self.total, self.unit, self.interval = desc, total, unit, interval
        self.file = file if file is not None else sys.stderr
        self.n = 0
        self.leave = True
        self._started = time.monotonic()
        self._first_n: int | None = None  # rows already done at the first update (a resume)
        self._last_line = self._started
        self._printed_n = -1

    def update(self, count: int = 1) -> None:
        if self._first_n is None:
            self._first_n = self.n
        self.n += count
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._print(now)

    def close(self) -> None:
        if self.leave and self.n > 0 and self.n != self._printed_n:
            self._print(time.monotonic())

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _print(self, now: float) -> None:
        self._last_line, self._printed_n = now, self.n
        elapsed = now - self._started
        rate = (self.n - (self._first_n or 0)) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}"]
        if self.total:
            parts[0] += f"/{self.total} {self.unit}s ({100 * self.n // self.total}%)"
        else:
            parts[0] += f" {self.unit}s"
        parts.append(f"{rate:.0f}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"eta {_duration((self.total - self.n) / rate)}")
        print(", ".join(parts), file=self.file, flush=True)


def progress_bar(desc: str, total: int | None = None, *, disable: bool = False) -> Any:
    """A tqdm bar when stderr is a terminal, else a LineProgress; None when disabled."""
    if disable:
        return None
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, unit="sample", desc=desc, dynamic_ncols=True, smoothing=0.1)
    return LineProgress(desc, total)


class ProgressCallback:
    """The ``progress(done, total)`` callback of the library's long calls (build, score) as a bar
    (``progress_bar``) opened at the first call. ``close(keep=False)`` removes the bar, for the
    error line that takes its place."""

    def __init__(self, desc: str, *, disable: bool = False) -> None:
        self.desc, self.disable = desc, disable
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = progress_bar(self.desc, total, disable=self.disable)
            if self.bar is None:
                return
        self.bar.update(done - self.bar.n)

    def close(self, keep: bool = True) -> None:
        if self.bar is not None:
            if not keep:
                self.bar.leave = False
            self.bar.close()
            self.bar = None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
