"""The accept path's floor: the architecture's two Python HTTP hops with no work behind them.

Every uploaded byte crosses the gateway (auth, then `gateway.proxy`) and ingest_service before ingest
validates, hashes, encrypts, fsyncs, registers and queues it. The floor keeps the hops and drops the
work (`bench/hop_floor_apps.py`): the load generator posts to a proxy process running the gateway's
streaming proxy, which streams to a sink process that reads the body as ingest does and answers 202.
Its rate and CPU are what moving the bytes through two aiohttp processes costs on this machine, a lower
bound for this architecture in Python, measured in the same run as ours and Orthanc's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import psutil

from bench.hop_floor_apps import RECEIVED, UPLOADS
from bench.load_generator import UploadTarget, cpu_of, timed_upload
from tests.e2e.conftest import ROOT, free_port

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CPU_PARTS = ("proxy", "sink", "load generator")


class FloorApp:
    """One of the two apps as a child process on a free 127.0.0.1 port, its output in `folder/<role>.log`."""

    def __init__(self, role: str, folder: Path, upstream: str = "") -> None:
        self.role = role
        self.port = free_port()
        self.log_path = folder / f"{role}.log"
        self.env = {**os.environ, "FLOOR_ROLE": role, "FLOOR_PORT": str(self.port), "FLOOR_UPSTREAM": upstream}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.hop_floor_apps"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        """Poll `/healthz` until the app answers; its exit or a timeout raises with the end of its log."""
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"floor {self.role} exited with {self.process.returncode}:\n{self.log_tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"floor {self.role} not ready after {READY_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (aiohttp shuts down gracefully), SIGKILL if the process has not exited after STOP_TIMEOUT."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cpu(self) -> float:
        assert self.process is not None
        return cpu_of(psutil.Process(self.process.pid))

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class HopFloor:
    """The sink and the proxy in front of it, for the duration of a `with` block."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.sink = FloorApp("sink", folder)
        self.proxy = FloorApp("proxy", folder, upstream=self.sink.url)

    def __enter__(self) -> HopFloor:
        try:
            for app in (self.sink, self.proxy):
                app.start()
            for app in (self.sink, self.proxy):
                app.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """The proxy first, so nothing is in flight to the sink when it goes."""
        self.proxy.stop()
        self.sink.stop()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by the proxy, the sink and this process (the load generator)."""
        return {"proxy": self.proxy.cpu(), "sink": self.sink.cpu(), "load generator": cpu_of(psutil.Process())}

    def target(self) -> UploadTarget:
        """`POST /api/uploads` through the proxy, accepted as ours is: 202 and the file `accepted`."""
        return UploadTarget(
            f"{self.proxy.url}{UPLOADS}",
            {},
            lambda code, body: code == 202 and body["files"][0]["status"] == "accepted",
        )

    async def received(self) -> dict[str, Any]:
        """The sink's counters: requests answered and body bytes read so far."""
        async with aiohttp.ClientSession() as session, session.get(f"{self.sink.url}{RECEIVED}") as response:
            response.raise_for_status()
            counters: dict[str, Any] = await response.json()
            return counters


async def floor_round(floor: HopFloor, paths: list[Path]) -> dict[str, float]:
    """Upload every file through the two hops; raises unless every file's bytes reached the sink."""
    before = await floor.received()
    figures = await timed_upload(floor.target(), paths, floor.cpu_seconds)
    after = await floor.received()
    sent = sum(path.stat().st_size for path in paths)
    got = (after["requests"] - before["requests"], after["bytes"] - before["bytes"])
    if got != (len(paths), sent):
        raise RuntimeError(f"the floor's sink got {got[0]} requests and {got[1]} bytes; sent {len(paths)} and {sent}")
    return figures
