"""A closed pipe (`dicomflow ... | head`) ends a command quietly, with the status a shell expects (141 = 128 +
SIGPIPE): no traceback from any thread, no error logged, the workers stopped.

The command runs as a real process whose stdout is a pipe the test closes after the first line. Its
output is far larger than any pipe buffer, so it cannot have finished writing before the pipe closes.
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from common.brief.json_threads import SharedLog, process_elements
from tests.queue_helpers import LIVENESS

ROOT = Path(__file__).resolve().parent.parent


def many_elements(path: Path, count: int, device_name: str = "scanner") -> Path:
    elements = {str(i): {"id": f"e{i}", "deviceName": device_name, "data": ["1 2 3", "4 5 6"]} for i in range(count)}
    path.write_text(json.dumps(elements))
    return path


def first_line_then_close(args: list[str | Path], stderr_path: Path) -> tuple[str, int, str]:
    """Run `python -m common.cli ARGS`, read one line of its stdout, close the pipe; its line, status and stderr."""
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "common.cli", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr
        )
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        process.stdout.close()
        code = process.wait(LIVENESS)
    return line, code, stderr_path.read_text()


def assert_quiet(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "Exception" not in stderr  # nor Python's "Exception ignored ... BrokenPipeError" at exit
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [entry for entry in logged if entry["level"] in ("warning", "error")] == []


def test_the_threads_stop_quietly_when_the_reader_goes_away(tmp_path: Path) -> None:
    source = many_elements(tmp_path / "elements.json", 20_000)
    log = tmp_path / "run.log"
    args: list[str | Path] = ["process-json", source, "--log", log, "--max-threads", "4"]
    line, code, stderr = first_line_then_close(args, tmp_path / "stderr")
    assert line.startswith("[element-")
    assert code == 128 + signal.SIGPIPE
    assert_quiet(stderr)
    records = [json.loads(record) for record in log.read_text().splitlines()]
    assert records[-1]["event"] == "run_stopped"
    processed = [record for record in records if record["event"] == "element_processed"]
    assert 0 < len(processed) < 20_000  # no new worker started once the pipe was closed
    assert not [record for record in records if record["event"] == "element_failed"]


def test_a_document_written_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """The main thread's write (`--json`) goes through the CLI's one handler, as every command's does."""
    source = many_elements(tmp_path / "elements.json", 2_000, device_name="d" * 1_000)
    args: list[str | Path] = ["process-json", source, "--log", tmp_path / "run.log", "--json"]
    line, code, stderr = first_line_then_close(args, tmp_path / "stderr")
    assert line == "{\n"
    assert code == 128 + signal.SIGPIPE
    assert_quiet(stderr)


def test_the_first_write_to_a_closed_pipe_stops_the_workers_and_raises_once(tmp_path: Path) -> None:
    """In process: no thread dies with an exception (pytest would fail the test on one), no new worker starts,
    no worker prints again, and the caller gets one BrokenPipeError."""
    written: list[str] = []
    started: list[str] = []

    def closed_pipe(text: str) -> None:
        written.append(text)
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    elements = {str(i): {"id": f"e{i}", "data": ["1 2 3"]} for i in range(100)}
    with SharedLog(tmp_path / "run.log", "run") as log, pytest.raises(BrokenPipeError):
        process_elements(elements, log, max_threads=2, emit=closed_pipe, on_worker_start=started.append)
    assert set(started) <= {"0", "1"}  # of 100: only workers already running when the pipe closed
    assert 1 <= len(written) <= len(started)  # each wrote at most once, before it learnt the pipe was closed
