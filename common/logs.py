"""structlog set-up: one JSON line per event with ISO time, level, service and correlation id.

The standard library's `logging` is routed through the same renderer, so lines from aiohttp,
aio-pika or Tortoise look like ours. The correlation id lives in structlog's contextvars:
bind it once at the start of each request or message and every line carries it.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import TYPE_CHECKING, Any, TextIO

import structlog

if TYPE_CHECKING:  # keeps pydantic out of the CLI's start-up time
    from common.settings import LogFormat

CORRELATION_HEADER = "X-Request-ID"
CORRELATION_KEY = "request_id"
_MAX_CORRELATION_LEN = 128


def configure_logging(service: str, level: str = "INFO", fmt: LogFormat = "json", stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging for this process; call once at entry.

    Services log to stdout; the CLI passes stderr so that its own output stays clean.
    """
    stream = stream if stream is not None else sys.stdout
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    renderer: structlog.types.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    final: list[structlog.types.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        final.append(structlog.processors.dict_tracebacks)
    final.append(renderer)
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log duplicates our request/response middleware lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _add_service(service: str) -> structlog.types.Processor:
    def add(_: Any, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
        event.setdefault("service", service)
        return event

    return add


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; `name` becomes the `logger` key."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


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
