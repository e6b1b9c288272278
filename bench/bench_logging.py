"""CPU cost of one log line: `common.app.logs` against the set-up it replaced, measured in the same run.

The baseline (`configure_baseline`) is a copy of `common/app/logs.py` as it was before structlog's
native path: structlog through the standard library (`stdlib.LoggerFactory`, `stdlib.BoundLogger`,
`ProcessorFormatter`, `json.dumps` per line). Both write to a file, flushing each line as a
service's stdout does, with a correlation id bound through contextvars. Lines are shaped like the
hot ones of an upload (`http_request`, `upload_file`, `job_published`, `http_response`). Rounds
alternate between the two set-ups; each figure is the best round's process CPU time per line.
After the rounds, the lines both set-ups wrote are compared: the same text, timestamps aside.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import structlog

from bench.report import write_section
from common.app.logs import bind_correlation_id, configure_logging, get_logger

SERVICE = "ingest_service"
LINES = 20_000
ROUNDS = 7
TIMESTAMP = re.compile(r'"timestamp": "[^"]+"')
LINES_PER_FILE = 6  # INFO lines per uploaded file across the services (issue 5)

INTRO = """`bench/bench_logging.py`: the CPU cost of one log line written by `common.app.logs`, against a copy of
the set-up it replaced (structlog routed through the standard library: `stdlib.LoggerFactory`,
`stdlib.BoundLogger`, `ProcessorFormatter`, `json.dumps` per line) in the same run, rounds alternating.
Lines go to a file, flushed one by one as a service's stdout is, with a correlation id bound through
contextvars; our lines have the shapes of the upload path's hot ones. `common.app.logs` now sends our lines
through structlog's filtering bound logger (a level below the configured one is a method that returns
at once) and writes the rendered line straight to the stream; stdlib lines (aiohttp, aio-pika, aiormq,
Tortoise, asyncpg) still go through a `ProcessorFormatter`, into the same writer under the same lock.
The JSON text is unchanged (a kept `json.JSONEncoder` instead of the one `json.dumps(default=...)` builds
per line): orjson encodes these lines in about 0.5 µs instead of 3-5 µs, but writes `{"key":"value"}`
without the spaces that operators' searches and `tests/e2e/test_upload.py` (`"instance_id": "...",
"routing_key"`) rely on, so it was not taken."""

HOT: list[tuple[str, dict[str, Any]]] = [
    (
        "http_request",
        {"service": SERVICE, "method": "POST", "path": "/internal/uploads", "client": "127.0.0.1", "bytes": 1048576},
    ),
    (
        "upload_file",
        {"upload_id": "u-5c1f", "index": 3, "status": "accepted", "instance_id": "i-8a7e21", "reason": None},
    ),
    ("job_published", {"instance_id": "i-8a7e21", "routing_key": "job.standard", "message_id": "m-77d0"}),
    (
        "http_response",
        {
            "service": SERVICE,
            "method": "POST",
            "path": "/internal/uploads",
            "status": 202,
            "duration_ms": 4.21,
            "bytes": 311,
        },
    ),
]


def configure_baseline(service: str, stream: TextIO) -> Callable[[str], Any]:
    """The set-up of `common/app/logs.py` before this benchmark (kept here as the baseline); its `get_logger`."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service_baseline(service),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("INFO")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return structlog.stdlib.get_logger


def configure_current(service: str, stream: TextIO) -> Callable[[str], Any]:
    """`common.app.logs` as the services use it; its `get_logger`."""
    configure_logging(service, "INFO", "json", stream=stream)
    return get_logger


def _add_service_baseline(service: str) -> structlog.types.Processor:
    def add(_: Any, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
        event.setdefault("service", service)
        return event

    return add


SETUPS: dict[str, Callable[[str, TextIO], Callable[[str], Any]]] = {
    "baseline": configure_baseline,
    "common.app.logs": configure_current,
}


def run_round(setup: str, kind: str, path: Path) -> float:
    """CPU seconds per line for `LINES` lines of `kind` written to `path` by `setup`."""
    with path.open("w", encoding="utf-8") as stream:
        make_logger = SETUPS[setup](SERVICE, stream)
        ours, foreign = make_logger("ingest_service.intake"), logging.getLogger("aio_pika.robust_connection")
        bind_correlation_id("9f1c2e4a7b3d4f60a1b2c3d4e5f60718")
        rounds = LINES // len(HOT)
        started = time.process_time()
        if kind == "info":
            for _ in range(rounds):
                for event, values in HOT:
                    ours.info(event, **values)
        elif kind == "debug":
            for _ in range(rounds):
                for event, values in HOT:
                    ours.debug(event, **values)
        else:
            for _ in range(rounds):
                for _event in HOT:
                    foreign.info("Connection to %s closed", "amqp://127.0.0.1:5672/")
        elapsed = time.process_time() - started
        stream.flush()
    logging.getLogger().handlers.clear()  # the stream is closed; neither set-up may write to it again
    return elapsed / (rounds * len(HOT))


def same_lines(first: Path, second: Path) -> int:
    """Number of lines compared; stops the benchmark if the files differ in anything but their timestamps."""
    a, b = (TIMESTAMP.sub('"timestamp": "?"', path.read_text()).splitlines() for path in (first, second))
    if len(a) != len(b):
        raise SystemExit(f"{first.name}: {len(a)} lines, {second.name}: {len(b)} lines")
    for left, right in zip(a, b, strict=True):
        if left != right or not isinstance(json.loads(left), dict):
            raise SystemExit(f"the set-ups write different lines:\n{left}\n{right}")
    return len(a)


def main() -> None:
    kinds = {
        "info": "INFO line of ours (4 hot shapes)",
        "debug": "DEBUG line at INFO (dropped)",
        "foreign": "stdlib line (aio-pika) into the same stream",
    }
    load = os.getloadavg()[0]
    best: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for _ in range(ROUNDS):
            for kind in kinds:
                for setup in SETUPS:
                    seconds = run_round(setup, kind, folder / f"{setup}-{kind}.log")
                    best[setup, kind] = min(best.get((setup, kind), float("inf")), seconds)
        compared = sum(
            same_lines(folder / f"baseline-{kind}.log", folder / f"common.app.logs-{kind}.log") for kind in kinds
        )
    configure_logging("bench", "INFO", "json")
    rows = []
    for kind, label in kinds.items():
        before, after = best["baseline", kind] * 1e6, best["common.app.logs", kind] * 1e6
        rows.append(f"| {label} | {before:.2f} | {after:.2f} | {after / before:.2f}x |")
    info_saved = (best["baseline", "info"] - best["common.app.logs", "info"]) * 1e6
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs (load average "
        f"{load:.1f} before the run), Python {platform.python_version()}, structlog {structlog.__version__}: "
        f"{LINES} lines per round to a file, flushed per line, best of {ROUNDS} alternating rounds, "
        "process CPU time.",
        "",
        "| line | baseline (µs CPU) | common.app.logs (µs CPU) | common.app.logs / baseline |",
        "|---|---|---|---|",
        *rows,
        "",
        f"- Output checked: the {compared} lines of the last rounds are the same text in both set-ups, "
        "timestamps aside.",
        f"- About {LINES_PER_FILE} INFO lines per uploaded file: {info_saved * LINES_PER_FILE:.0f} µs of CPU "
        "saved per file.",
    ]
    for line in lines:
        print(line)
    write_section("bench_logging", "Cost of a log line", lines, INTRO)


if __name__ == "__main__":
    main()
