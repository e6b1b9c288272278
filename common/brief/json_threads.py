"""The brief's threaded JSON processor (exercise 6): one thread per element, at most N alive at once.

The main thread starts a worker per element; once `max_threads` are alive it waits for one to
report that it is done, joins it (so it has really ended) and only then starts the next. The
bound is therefore strict, and a new thread starts as soon as one ends. Every worker prints its
element and writes one line to a shared JSON-lines log; a lock makes each line whole, so lines
from different threads never interleave. A bad element is recorded with its reason and the
others still finish.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from common.app.logs import get_logger
from common.brief.elements import ElementDataError, ElementFigures, summarise
from common.brief.opening import explain_open_errors

log = get_logger(__name__)

WORKER_PREFIX = "element-"
Emit = Callable[[str], None]
Hook = Callable[[str], None]

_stdout_lock = threading.Lock()


class JsonFileError(ValueError):
    """The whole file cannot be processed (missing, not JSON, not an object of elements)."""


@dataclass(frozen=True, slots=True)
class ElementResult:
    """What happened to one element: its figures, or the reason it could not be processed."""

    key: str
    element_id: str | None
    device_name: str | None
    thread: str
    figures: ElementFigures | None = None
    error: str | None = None


@dataclass(slots=True)
class ProcessSummary:
    """The whole run: every element in file order, and the most worker threads alive at once."""

    path: str
    log_path: str
    max_threads: int
    run_id: str
    results: list[ElementResult] = field(default_factory=list)
    peak_threads: int = 0
    elapsed: float = 0.0

    @property
    def failed(self) -> list[ElementResult]:
        """The elements that could not be processed."""
        return [result for result in self.results if result.error is not None]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return {
            "path": self.path,
            "log": self.log_path,
            "run_id": self.run_id,
            "max_threads": self.max_threads,
            "peak_threads": self.peak_threads,
            "elements": len(self.results),
            "processed": len(self.results) - len(self.failed),
            "failed": len(self.failed),
            "elapsed_s": round(self.elapsed, 6),
            "results": [_result_dict(result) for result in self.results],
        }


class SharedLog:
    """An append-only JSON-lines file shared by threads: one lock, one whole line per record."""

    def __init__(self, path: str | os.PathLike[str], run_id: str) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, event: str, **fields: object) -> None:
        """Append one record, stamped with time, run id and the writing thread."""
        record = {
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "event": event,
            "run": self.run_id,
            "thread": threading.current_thread().name,
            **fields,
        }
        line = json.dumps(record) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> SharedLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def print_line(text: str) -> None:
    """Write one whole line to stdout; the lock keeps lines of different threads apart."""
    with _stdout_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def load_elements(path: str | os.PathLike[str]) -> dict[str, object]:
    """The file's top-level object of elements, keyed as in the file."""
    file = Path(path)
    try:
        with explain_open_errors(file, "JSON file", JsonFileError), file.open("rb") as handle:
            document = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JsonFileError(f"{file.name} is not valid JSON: {e}") from e
    if not isinstance(document, dict):
        raise JsonFileError(f"{file.name} must hold a JSON object of elements, not a {type(document).__name__}")
    return document


def process_elements(
    elements: Mapping[str, object],
    shared_log: SharedLog,
    max_threads: int = 4,
    emit: Emit | None = print_line,
    on_worker_start: Hook | None = None,
) -> tuple[list[ElementResult], int]:
    """Process every element in its own thread, at most `max_threads` alive; results in input order.

    `on_worker_start(key)` runs inside each worker first (tests use it to watch the threads).
    Returns the results and the most workers that were alive at once.
    """
    if max_threads < 1:
        raise ValueError(f"max_threads must be >= 1, got {max_threads}")
    items = list(elements.items())
    results: list[ElementResult | None] = [None] * len(items)
    finished: queue.SimpleQueue[threading.Thread] = queue.SimpleQueue()
    output = _Output(emit)

    def work(index: int, key: str, element: object) -> None:
        try:
            if on_worker_start is not None:
                on_worker_start(key)
            results[index] = _process_one(key, element, shared_log, output.emit)
        except Exception as e:  # a thread's edge: one broken element must not stop the others
            results[index] = _failed(key, element, f"unexpected {type(e).__name__}: {e}", shared_log, output.emit)
        finally:
            finished.put(threading.current_thread())

    alive = peak = 0
    for index, (key, element) in enumerate(items):
        if alive == max_threads:
            finished.get().join()
            alive -= 1
        if output.closed.is_set():
            break
        thread = threading.Thread(target=work, args=(index, key, element), name=f"{WORKER_PREFIX}{key}")
        thread.start()
        alive += 1
        peak = max(peak, alive)
    while alive:
        finished.get().join()
        alive -= 1
    if output.closed.is_set():
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")
    return [result for result in results if result is not None], peak


class _Output:
    """The workers' printed lines until a write finds the reader gone; from then on nothing is printed, and the
    worker whose write failed carries on as if it had printed (its element is still processed and logged)."""

    def __init__(self, emit: Emit | None) -> None:
        self._emit = emit
        self.closed = threading.Event()

    def emit(self, text: str) -> None:
        if self._emit is None or self.closed.is_set():
            return
        try:
            self._emit(text)
        except BrokenPipeError:
            self.closed.set()


def _process_one(key: str, element: object, shared_log: SharedLog, emit: Emit | None) -> ElementResult:
    thread = threading.current_thread().name
    element_id = _text(element, "id")
    device = _text(element, "deviceName")
    if emit is not None:
        emit(f"[{thread}] element {key}: id {element_id or '?'}")
    try:
        figures = summarise(_data_of(element))
    except ElementDataError as e:
        return _failed(key, element, str(e), shared_log, emit)
    shared_log.write("element_processed", key=key, id=element_id, deviceName=device, **asdict(figures))
    if emit is not None:
        emit(
            f"[{thread}] element {key}: id {element_id}, size {figures.data_size}, "
            f"average before {figures.average_before:.6f}, after {figures.average_after:.6f}"
        )
    return ElementResult(key, element_id, device, thread, figures=figures)


def _failed(key: str, element: object, reason: str, shared_log: SharedLog, emit: Emit | None) -> ElementResult:
    """Record an element that could not be processed: shared log, structlog, and the printed line."""
    thread = threading.current_thread().name
    element_id = _text(element, "id")
    shared_log.write("element_failed", key=key, id=element_id, reason=reason)
    log.warning("element_failed", key=key, id=element_id, reason=reason)
    if emit is not None:
        emit(f"[{thread}] element {key}: failed: {reason}")
    return ElementResult(key, element_id, _text(element, "deviceName"), thread, error=reason)


def _data_of(element: object) -> object:
    if not isinstance(element, dict):
        raise ElementDataError(f"element must be a JSON object, not a {type(element).__name__}")
    for key in ("id", "data"):
        if key not in element:
            raise ElementDataError(f"element has no {key!r} key")
    if not isinstance(element["id"], str) or not element["id"]:
        raise ElementDataError("element 'id' must be a non-empty string")
    return element["data"]


def _text(element: object, key: str) -> str | None:
    value = element.get(key) if isinstance(element, dict) else None
    return value if isinstance(value, str) else None


def process_json_file(
    path: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    max_threads: int = 4,
    emit: Emit | None = print_line,
    on_worker_start: Hook | None = None,
) -> ProcessSummary:
    """Load the file, process its elements in threads and log every outcome to `log_path`."""
    started = time.perf_counter()
    elements = load_elements(path)
    summary = ProcessSummary(str(path), str(log_path), max_threads, uuid.uuid4().hex)
    try:
        shared_log = SharedLog(log_path, summary.run_id)
    except OSError as e:
        raise JsonFileError(f"cannot open the log file {str(log_path)!r}: {e.strerror or e}") from e
    with shared_log:
        shared_log.write("run_started", file=str(path), elements=len(elements), max_threads=max_threads)
        try:
            summary.results, summary.peak_threads = process_elements(
                elements, shared_log, max_threads, emit, on_worker_start
            )
        except BrokenPipeError:
            shared_log.write("run_stopped", reason="the reader of the output went away")
            raise
        summary.elapsed = time.perf_counter() - started
        shared_log.write(
            "run_finished",
            processed=len(summary.results) - len(summary.failed),
            failed=len(summary.failed),
            peak_threads=summary.peak_threads,
            elapsed_s=round(summary.elapsed, 6),
        )
    return summary


def _result_dict(result: ElementResult) -> dict[str, Any]:
    data: dict[str, Any] = {"key": result.key, "id": result.element_id, "deviceName": result.device_name}
    if result.figures is not None:
        data.update(asdict(result.figures))
    else:
        data["error"] = result.error
    return data
