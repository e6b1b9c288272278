"""structlog set-up: one JSON line per event with ISO time, level, service and correlation id.

Our own lines take structlog's native path: a filtering bound logger (a level below the
configured one is a method that returns at once), one processor chain, and the rendered line
written straight to the stream, without the standard library's `findCaller`, `LogRecord` and a
second chain in a formatter. The standard library's `logging` (aiohttp, aio-pika, aiormq,
Tortoise, asyncpg) goes through a `ProcessorFormatter` with the same processors into the same
writer, so its lines look like ours. The correlation id lives in structlog's contextvars: bind it
once at the start of each request or message and every line carries it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

if TYPE_CHECKING:  # keeps pydantic out of the CLI's start-up time
    from common.app.settings import LogFormat

CORRELATION_HEADER = "X-Request-ID"
CORRELATION_KEY = "request_id"
_MAX_CORRELATION_LEN = 128


class _LineWriter(logging.Handler):
    """The process's one log writer: structlog's rendered lines and the stdlib's formatted records.

    Each line is one `write` and a flush under one lock, so lines from threads and from both
    paths never interleave mid-line. A failed write is reported the way `logging` reports it
    (on stderr) and never raised into the code that logged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stream: TextIO = sys.stdout
        self._write_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line, record)

    def write_line(self, line: str, record: logging.LogRecord | None = None) -> None:
        """Write one rendered line and flush it."""
        with self._write_lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except Exception:
                self.handleError(record or logging.makeLogRecord({"msg": line}))


_WRITER = _LineWriter()


class _NamedWriter:
    """What a structlog bound logger wraps: the `logger` name and the shared writer."""

    __slots__ = ("name",)

    def __init__(self, name: str = "root") -> None:
        self.name = name

    def msg(self, message: str) -> None:
        _WRITER.write_line(message)

    debug = info = warning = warn = error = critical = fatal = exception = msg


class _BoundLogger(structlog.BoundLoggerBase):
    """structlog's filtering bound logger whose level methods `configure_logging` installs.

    Loggers are built once, at `get_logger` (module import), before logging is configured;
    the level lives on this one class, the processors in one list (`capture_logs` relies on
    the same list) and the stream on the writer, so a reconfiguration (tests, the CLI run in
    one process several times) reaches loggers built earlier.
    """


def _set_level(level: int) -> None:
    """Give `_BoundLogger` the methods of structlog's filtering logger for `level`."""
    source = structlog.make_filtering_bound_logger(level)
    for name, member in vars(source).items():
        if not name.startswith("_"):
            setattr(_BoundLogger, name, member)


_set_level(logging.NOTSET)
_PROCESSORS: list[Processor] = structlog.get_config()["processors"]


# Tracebacks as data, without each frame's local variables: those may hold a token, a password or a
# patient's name, and log streams are read far more widely than the data itself.
_TRACEBACKS = structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))


def configure_logging(service: str, level: str = "INFO", fmt: LogFormat = "json", stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging for this process; call once at entry.

    Services log to stdout; the CLI passes stderr so that its own output stays clean.
    """
    stream = stream if stream is not None else sys.stdout
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    console = fmt == "console"
    final: list[Processor] = (
        [structlog.dev.ConsoleRenderer(colors=stream.isatty())] if console else [_TRACEBACKS, _render_json]
    )
    root = logging.getLogger()
    root.setLevel(level)
    _set_level(root.level)
    _PROCESSORS[:] = [*shared, *final]
    structlog.configure(
        processors=_PROCESSORS,
        wrapper_class=_BoundLogger,
        logger_factory=_NamedWriter,  # for `structlog.get_logger(name)`, which builds the same loggers
        cache_logger_on_first_use=True,
    )
    _WRITER.stream = stream
    _WRITER.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final]
        )
    )
    root.handlers[:] = [_WRITER]
    # aiohttp's own access log duplicates our request/response middleware lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _add_service(service: str) -> Processor:
    def add(_: Any, __: str, event: EventDict) -> EventDict:
        event.setdefault("service", service)
        return event

    return add


def _fallback(value: Any) -> Any:
    """Values JSON has no type for: their `__structlog__()` if they have one, else their repr (as structlog's)."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


# `json.dumps(..., default=...)` builds an encoder per call; the text is the same, and the spacing
# (`"key": "value", `) is what operators and the e2e tests search for, so no compact serializer.
_ENCODER = json.JSONEncoder(default=_fallback)


def _render_json(_: WrappedLogger, __: str, event: EventDict) -> str:
    """The line, as structlog's `JSONRenderer` (json.dumps) writes it, from one kept encoder."""
    return _ENCODER.encode(event)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A structlog logger; `name` (the caller's module by default) becomes the `logger` key."""
    if name is None:
        name = str(sys._getframe(1).f_globals.get("__name__", "root"))
    return cast(FilteringBoundLogger, _BoundLogger(_NamedWriter(name), _PROCESSORS, {}))


def new_correlation_id() -> str:
    """A fresh correlation id (uuid4 hex)."""
    return uuid.uuid4().hex


def clean_correlation_id(value: str | None) -> str:
    """Accept a client-supplied id only if it is short printable ASCII; otherwise make a new one."""
    if value and len(value) <= _MAX_CORRELATION_LEN and value.isascii() and value.isprintable():
        return value
    return new_correlation_id()


def bind_correlation_id(value: str | None) -> str:
    """Start a new logging context (request or message) carrying this correlation id."""
    correlation_id = clean_correlation_id(value)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**{CORRELATION_KEY: correlation_id})
    return correlation_id


def current_correlation_id() -> str | None:
    """The correlation id bound in this context, if any."""
    value = structlog.contextvars.get_contextvars().get(CORRELATION_KEY)
    return str(value) if value is not None else None
