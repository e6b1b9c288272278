"""Feedback while a run sends: files, bytes, files/s, MB/s and retries.

`Progress` counts; what shows the counts is chosen by where they go: a `rich` bar on a terminal, a plain line
every few seconds otherwise (a log file or a CI job's output stays readable), nothing for `--json` or a
script. All of it goes to stderr: stdout carries only the run's summary.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBar

PLAIN_INTERVAL = 5.0
"""Seconds between plain progress lines."""


class Progress:
    """The run's counters, and a display that may show them; also a context manager that starts and stops it."""

    def __init__(self) -> None:
        self.files_total = 0
        self.bytes_total = 0
        self.files_done = 0
        self.bytes_sent = 0
        self.retries = 0
        self.started = time.monotonic()

    def start(self, files: int, size: int) -> None:
        """The run's totals are known (after the resume lookup): the clock starts."""
        self.files_total, self.bytes_total = files, size
        self.started = time.monotonic()
        self.refresh()

    def sent_bytes(self, count: int) -> None:
        """`count` more bytes went out."""
        self.bytes_sent += count
        self.refresh()

    def file_done(self) -> None:
        """One more file has its answer."""
        self.files_done += 1
        self.refresh()

    def skipped(self, size: int) -> None:
        """A file is done without being sent (already on the server, or unreadable)."""
        self.files_done += 1
        self.bytes_total -= size
        self.refresh()

    def retried(self) -> None:
        """One more request is being retried."""
        self.retries += 1
        self.refresh()

    def rates(self) -> tuple[float, float]:
        """Files per second and MB per second so far."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return self.files_done / elapsed, self.bytes_sent / 1e6 / elapsed

    def line(self) -> str:
        """The counts as one line of text."""
        files_rate, mb_rate = self.rates()
        return (
            f"{self.files_done}/{self.files_total} files, {self.bytes_sent / 1e6:.1f}/{self.bytes_total / 1e6:.1f} MB, "
            f"{files_rate:.1f} files/s, {mb_rate:.2f} MB/s, {self.retries} retries"
        )

    def refresh(self) -> None:
        """Show the counts, if this display shows anything (it does not)."""

    def note(self, text: str) -> None:
        """A message for the person watching, above the bar (not shown by a silent display)."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.refresh()


class PlainProgress(Progress):
    """A line every `PLAIN_INTERVAL` seconds and one at the end, for output that is not a terminal."""

    def __init__(self, stream: TextIO | None = None, interval: float = PLAIN_INTERVAL) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last = 0.0

    def refresh(self) -> None:
        now = time.monotonic()
        if self.files_total and (now - self._last >= self.interval or self.files_done == self.files_total):
            if self.files_done == self.files_total and self._last == -1.0:
                return  # the final line is printed once
            self._last = -1.0 if self.files_done == self.files_total else now
            print(f"progress: {self.line()}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class BarProgress(Progress):
    """A `rich` progress bar on the terminal."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(stderr=True)
        self._bar = RichBar(
            TextColumn("[bold]uploading"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._task: TaskID | None = None

    def start(self, files: int, size: int) -> None:
        self._task = self._bar.add_task("upload", total=files, detail="")
        super().start(files, size)

    def refresh(self) -> None:
        if self._task is None:
            return
        files_rate, mb_rate = self.rates()
        detail = (
            f"{self.bytes_sent / 1e6:.1f}/{self.bytes_total / 1e6:.1f} MB  {files_rate:.1f} files/s  "
            f"{mb_rate:.2f} MB/s  {self.retries} retries"
        )
        self._bar.update(self._task, completed=self.files_done, detail=detail)

    def note(self, text: str) -> None:
        self._bar.console.print(text, markup=False, highlight=False)

    def __enter__(self) -> Progress:
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.refresh()
        self._bar.stop()


def progress_for(*, quiet: bool, stream: TextIO | None = None) -> Progress:
    """The display for this run: none when `quiet`, a bar on a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    if quiet:
        return Progress()
    return BarProgress() if stream.isatty() else PlainProgress(stream)
