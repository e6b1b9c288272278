"""The accept path's floor: the architecture's two Python HTTP hops with no work behind them.

Every uploaded byte crosses the gateway (auth, then `gateway.proxy`) and ingest_service before ingest
validates, hashes, encrypts, fsyncs, registers and queues it. The floor keeps the hops and drops the
work (`bench/hop_floor_apps.py`): the load generator posts to a proxy process running the gateway's
streaming proxy, which streams to a sink process that reads the body as ingest does and answers 202.
Its rate and CPU are what moving the bytes through two aiohttp processes costs on this machine, a lower
bound for this architecture in Python, measured in the same run as ours and Orthanc's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import psutil

from bench.child_process import ChildProcess
from bench.hop_floor_apps import RECEIVED, UPLOADS
from bench.load_generator import UploadTarget, cpu_of, timed_upload
from tests.e2e.conftest import ROOT, free_port

STOP_TIMEOUT = 10.0
CPU_PARTS = ("proxy", "sink", "load generator")


class FloorApp(ChildProcess):
    """One of the two apps as a child process on a free 127.0.0.1 port, its output in `folder/<role>.log`."""

    def __init__(self, role: str, folder: Path, upstream: str = "") -> None:
        super().__init__(f"floor {role}", folder / f"{role}.log", stop_timeout=STOP_TIMEOUT)
        self.role = role
        self.port = free_port()
        self.env = {**os.environ, "FLOOR_ROLE": role, "FLOOR_PORT": str(self.port), "FLOOR_UPSTREAM": upstream}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.spawn([sys.executable, "-m", "bench.hop_floor_apps"], cwd=ROOT, env=self.env)

    def ready(self) -> None:
        """Wait until the app answers its health route."""
        self.wait_ready(f"{self.url}/healthz")


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
                app.ready()
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
