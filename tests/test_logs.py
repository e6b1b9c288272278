"""common.app.logs: what operators read in the log stream, written by structlog's native path and by stdlib logging."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pytest
import structlog
from structlog.testing import capture_logs

from common.app.logs import bind_correlation_id, configure_logging, get_logger

EXPECTED_KEYS = ["event", "request_id", "level", "logger", "timestamp", "service"]

# Built at import, before any configuration, as the services' module-level loggers are.
module_log = get_logger("tests.module")


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """`configure(level=..., fmt=...)` points logging at a new file and returns its path; the files are
    closed and logging is back on stdout after the test."""
    opened: list[TextIO] = []

    def configure(level: str = "INFO", fmt: Any = "json") -> Path:
        path = tmp_path / f"log-{len(opened)}.txt"
        opened.append(path.open("w", encoding="utf-8"))
        configure_logging("svc", level, fmt, stream=opened[-1])
        return path

    yield configure
    configure_logging("tests", "INFO", "json")
    for stream in opened:
        stream.close()


def records(path: Path) -> list[dict[str, Any]]:
    """Every line of the file, each parsed as one JSON object (fails on a partial or mixed line)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_structlog_and_stdlib_lines_are_one_json_object_each_with_the_same_keys(
    log_file: Callable[..., Path],
) -> None:
    path = log_file()
    bind_correlation_id("corr-1")
    get_logger("svc.intake").info("job_published", instance_id="i-1", routing_key="job.standard", size=3)
    logging.getLogger("aiormq.connection").warning("Connection %s lost", "amqp://x")
    ours, foreign = records(path)
    assert list(ours) == ["instance_id", "routing_key", "size", *EXPECTED_KEYS]
    assert list(foreign) == EXPECTED_KEYS
    assert ours | {"timestamp": None} == {
        "instance_id": "i-1",
        "routing_key": "job.standard",
        "size": 3,
        "event": "job_published",
        "request_id": "corr-1",
        "level": "info",
        "logger": "svc.intake",
        "timestamp": None,
        "service": "svc",
    }
    assert foreign | {"timestamp": None} == {
        "event": "Connection amqp://x lost",
        "request_id": "corr-1",
        "level": "warning",
        "logger": "aiormq.connection",
        "timestamp": None,
        "service": "svc",
    }
    for record in (ours, foreign):
        assert record["timestamp"].endswith("Z")
        stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() is not None and abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    # the text as json.dumps writes it: operators and the e2e tests search lines for `"key": "value", "next"`
    assert '"instance_id": "i-1", "routing_key": "job.standard"' in path.read_text()


def test_debug_is_dropped_at_info_and_written_at_debug_by_a_logger_built_before_configuration(
    log_file: Callable[..., Path],
) -> None:
    at_info = log_file("INFO")
    module_log.debug("hidden", n=1)
    logging.getLogger("asyncpg.pool").debug("hidden too")
    module_log.info("shown", n=2)
    assert [(r["event"], r["logger"]) for r in records(at_info)] == [("shown", "tests.module")]

    at_debug = log_file("DEBUG")
    module_log.debug("now_shown", n=3)
    logging.getLogger("asyncpg.pool").debug("stdlib shown")
    assert [(r["event"], r["level"]) for r in records(at_debug)] == [("now_shown", "debug"), ("stdlib shown", "debug")]
    assert records(at_info)[-1]["event"] == "shown"  # the earlier stream got nothing more

    at_warning = log_file("WARNING")
    module_log.info("quiet")
    module_log.warning("loud")
    assert [r["event"] for r in records(at_warning)] == ["loud"]


def test_exceptions_carry_a_traceback_dict_on_both_paths(log_file: Callable[..., Path]) -> None:
    path = log_file()
    bind_correlation_id("corr-2")
    log = get_logger("svc.web")
    known: dict[str, int] = {}
    try:
        known["missing"]
    except KeyError:
        log.exception("unhandled_error", method="GET", path="/x")
        logging.getLogger("aiohttp.server").exception("Error handling request")
    ours, foreign = records(path)
    for record, event in ((ours, "unhandled_error"), (foreign, "Error handling request")):
        assert record["event"] == event and record["level"] == "error" and record["request_id"] == "corr-2"
        (exception,) = record["exception"]
        assert exception["exc_type"] == "KeyError" and exception["exc_value"] == "'missing'"
        assert exception["frames"][-1]["name"] == "test_exceptions_carry_a_traceback_dict_on_both_paths"
        assert "exc_info" not in record
    assert ours["method"] == "GET" and ours["path"] == "/x"


def test_bound_values_and_a_new_correlation_id_reach_each_line(log_file: Callable[..., Path]) -> None:
    path = log_file()
    log = get_logger("svc.consumer").bind(queue="jobs")
    bind_correlation_id("message-1")
    log.info("message_received", attempt=1)
    bind_correlation_id("message-2")
    log.warning("message_received", attempt=2)
    first, second = records(path)
    assert (first["queue"], first["attempt"], first["request_id"]) == ("jobs", 1, "message-1")
    assert (second["queue"], second["attempt"], second["request_id"], second["level"]) == (
        "jobs",
        2,
        "message-2",
        "warning",
    )


def test_console_format_writes_a_line_for_people(log_file: Callable[..., Path]) -> None:
    path = log_file(fmt="console")
    bind_correlation_id("corr-3")
    get_logger("dicomflow.cli").error("command_failed", reason="no such file")
    logging.getLogger("pydicom").error("bad value")
    ours, foreign = path.read_text().splitlines()
    assert not ours.startswith("{") and "[error    ] command_failed" in ours and "[dicomflow.cli]" in ours
    assert "reason='no such file'" in ours and "request_id=corr-3" in ours and "service=svc" in ours
    assert "[error    ] bad value" in foreign and "[pydicom]" in foreign


def test_lines_from_threads_and_both_paths_never_mix(log_file: Callable[..., Path]) -> None:
    path = log_file()
    log, foreign = get_logger("svc.threads"), logging.getLogger("aio_pika.channel")
    per_thread = 300

    def write(n: int) -> None:
        for i in range(per_thread):
            log.info("tick", thread=n, i=i, padding="x" * 500)
            foreign.info("tock %d %d %s", n, i, "y" * 500)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = records(path)
    assert len(lines) == 6 * per_thread * 2
    assert sorted((r["thread"], r["i"]) for r in lines if r["event"] == "tick") == [
        (n, i) for n in range(6) for i in range(per_thread)
    ]


def test_a_closed_stream_never_raises_into_the_code_that_logs(
    log_file: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file()
    with (tmp_path / "closed.txt").open("w") as other:
        configure_logging("svc", "INFO", "json", stream=other)
    get_logger("svc.late").info("after_close")  # the stream is closed now
    logging.getLogger("aiohttp.server").warning("after close")
    assert "--- Logging error ---" in capsys.readouterr().err


def test_capture_logs_sees_the_loggers_of_common_logs(log_file: Callable[..., Path]) -> None:
    path = log_file()
    with capture_logs() as captured:
        module_log.info("captured", n=1)
        structlog.get_logger("tests.direct").info("also_captured")
    assert [(e["event"], e["log_level"]) for e in captured] == [("captured", "info"), ("also_captured", "info")]
    assert path.read_text() == ""


def test_tracebacks_never_carry_local_variables(log_file: Callable[..., Path]) -> None:
    """A frame's locals may hold a token or a patient's name: they stay out of the log on both paths."""
    path = log_file()
    patient_name = "Doe^Jane-7919"

    def fail(token: str) -> None:
        raise ValueError("bad input")

    try:
        fail("eyJ-secret-token")
    except ValueError:
        get_logger("svc.web").exception("unhandled_error")
        logging.getLogger("aiohttp.server").exception("Error handling request")
    text = path.read_text()
    assert text.count("bad input") == 2
    assert patient_name not in text and "eyJ-secret-token" not in text
    assert all("locals" not in frame for record in records(path) for frame in record["exception"][0]["frames"])
