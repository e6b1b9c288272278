"""A server the pipeline benchmark runs beside ours as a child process (Orthanc, the floor's apps).

Started with its output in a log file and in its own session, polled until a URL answers 200 (its
exit or a timeout raises with the end of its log), and stopped with SIGTERM, then SIGKILL if it has
not exited in time.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import psutil

from bench.load_generator import cpu_of

READY_TIMEOUT = 30.0


class ChildProcess:
    """One child process named `name` (for messages), logging to `log_path`."""

    def __init__(self, name: str, log_path: Path, *, stop_timeout: float = 10.0) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: Sequence[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(argv), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, url: str) -> None:
        """Poll `url` until it answers 200."""
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                urllib.request.urlopen(url, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (the server shuts down cleanly), SIGKILL if it has not exited after `stop_timeout`."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cpu(self) -> float:
        """CPU seconds (user + system) the process has used so far."""
        assert self.process is not None
        return cpu_of(psutil.Process(self.process.pid))

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
