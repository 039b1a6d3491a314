"""Progress of long work, shown the same way by every command and stage.

On a terminal: a bar on stderr with counts, rate and time left (Rich). Anywhere else (CI, a
log file, a notebook's captured stderr): once the work has run ``first`` seconds, one plain
line, then at most one every ``interval`` seconds (``$CASCADE_PROGRESS_INTERVAL``, default 10),
and one at the end; each with the count, the total when known, the rate and the estimated time
left, so a log shows that work is moving and when it should end. Work done within ``first`` seconds prints nothing.

>>> import io
>>> out = io.StringIO()
>>> with Progress("encoding documents", total=3, unit="docs", stream=out, interval=0, first=0) as bar:
...     bar.update(2)
...     bar.update(3)
>>> print(out.getvalue().splitlines()[-1].split(",")[0])
encoding documents: 3/3 docs (100%)
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, Callable

INTERVAL = 10.0  # seconds between two plain progress lines
FIRST = 2.0  # seconds of work before the first plain line
INTERVAL_ENV = "CASCADE_PROGRESS_INTERVAL"  # overrides INTERVAL (0: a line on every update)


def default_interval() -> float:
    """Seconds between plain lines: ``$CASCADE_PROGRESS_INTERVAL`` when set to a number, else 10."""
    try:
        return max(0.0, float(os.environ[INTERVAL_ENV]))
    except (KeyError, ValueError):
        return INTERVAL


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """One task's progress: ``update(done)`` with the count so far (``total`` may be None)."""

    def __init__(self, label: str, total: int | None = None, *, unit: str = "", stream: IO[str] | None = None,
                 interval: float | None = None, first: float = FIRST, terminal: bool | None = None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = default_interval() if interval is None else interval
        self.first = min(first, self.interval)
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.done = 0
        self._start = time.monotonic()
        self._last_line = self._start - self.interval + self.first  # the first line once ``first`` seconds have passed
        self._lines = 0
        self._shown: tuple[str, int] | None = None  # the label and count of the last plain line
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "Progress":
        if self.terminal:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=self.stream),
                            transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
        elif exc[0] is None and self._lines and self._shown != (self.label, self.done):
            self._line(final=True)

    def relabel(self, label: str, total: int | None = None) -> None:
        """Start a new phase of the same work (the count starts over)."""
        self.label, self.total, self.done = label, total, 0
        self._start = time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, description=label, total=total, completed=0)
        elif self._lines:  # a log already showing progress shows the new phase at once
            self._line()

    def update(self, done: int) -> None:
        """``done`` units finished so far."""
        self.done = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
        elif time.monotonic() - self._last_line >= self.interval:
            self._line()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def callback(self) -> Callable[[int], None]:
        """``update`` as a plain function (what encoders and builders take)."""
        return self.update

    def _line(self, final: bool = False) -> None:
        self._lines += 1
        self._shown = (self.label, self.done)
        self._last_line = time.monotonic()
        elapsed = self._last_line - self._start
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            text = f"{self.label}: {self.done:,}/{self.total:,}{unit} ({100 * self.done / self.total:.0f}%)"
        else:
            text = f"{self.label}: {self.done:,}{unit}"
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            text += f", {rate:,.1f}{unit}/s"
            if self.total and not final and self.done < self.total:
                text += f", about {_duration((self.total - self.done) / rate)} left"
        text += f", {_duration(elapsed)} elapsed" if final or self.done else ""
        print(text, file=self.stream, flush=True)
