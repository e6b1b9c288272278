"""Where a run's structlog lines go: the `--log-file` (every line, JSON), and the console (stderr) for
warnings and errors, or every line with `--verbose`.

The log file is what `--send-log-on-failure` sends, so it is JSON lines whatever the console shows.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TextIO

from common.app.logs import configure_logging

_ALWAYS_SHOWN = frozenset({"warning", "error", "critical"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_log_file(sample_id: str | None, attempt: int) -> Path | None:
    """`<sample_id>-<attempt>.log` in the current folder when a sample id is given (made safe as a file name)."""
    if not sample_id:
        return None
    return Path(f"{_UNSAFE.sub('_', sample_id).strip('.') or 'sample'}-{attempt}.log")


class _RunLogStream:
    """A text stream for the log writer: every line to the file, some or all to the console."""

    def __init__(self, file: TextIO | None, console: TextIO, verbose: bool) -> None:
        self.file, self.console, self.verbose = file, console, verbose

    def write(self, text: str) -> int:
        if self.file is not None:
            self.file.write(text)
        if self.verbose or self.file is None or _level(text) in _ALWAYS_SHOWN:
            self.console.write(text)
        return len(text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
        self.console.flush()

    def isatty(self) -> bool:
        return False


def _level(line: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return str(record.get("level")) if isinstance(record, dict) else None


def configure_run_logging(log_file: Path | None, *, verbose: bool) -> TextIO | None:
    """Send the process's logs to `log_file` (appended) and the console; the open file, for the caller to close.

    Without a log file the console gets INFO lines only with `--verbose` (WARNING and up otherwise)."""
    handle = log_file.open("a", encoding="utf-8") if log_file is not None else None
    stream = _RunLogStream(handle, sys.stderr, verbose)
    level = "DEBUG" if verbose else ("INFO" if handle is not None else "WARNING")
    configure_logging("dicomflow", level=level, fmt="json", stream=stream)  # type: ignore[arg-type]
    return handle
