"""`make up`'s supervisor as a process: a service killed with SIGKILL comes back after its backoff, logged;
SIGTERM to the supervisor stops every service and leaves no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from single_host.processes import ROOT, SERVICES, ChildProcess, RunningSystem, service_argv
from tests.pipeline_helpers import eventually
from tests.process_helpers import alive
from tests.queue_helpers import LIVENESS


def service_pids(supervisor: int) -> dict[str, int]:
    """The supervisor's live children by service name (`python -m <service>`)."""
    pids: dict[str, int] = {}
    for child in psutil.Process(supervisor).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            argv = child.cmdline()
            if alive(child.pid) and argv[-2:-1] == ["-m"] and argv[-1] in SERVICES:
                pids[argv[-1]] = child.pid
    return pids


def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.startswith("{")]
    return [entry for entry in map(json.loads, lines) if entry.get("event") == event]


async def answers(url: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(2)) as r:
            return r.status == 200
    return False


async def test_a_killed_service_is_restarted_and_sigterm_stops_everything(database_url: str, tmp_path: Path) -> None:
    system = RunningSystem(database_url, tmp_path)  # its environment and ports; the supervisor runs the services
    log_path = tmp_path / "supervisor.log"
    supervisor = ChildProcess("supervisor", log_path)
    supervisor.start(service_argv("single_host.supervisor"), cwd=ROOT, env=system.env)
    seen: set[int] = set()
    try:
        for name in SERVICES:
            await asyncio.to_thread(system.services[name].wait_ready, f"{system.services[name].url}/readyz")
        before = service_pids(supervisor.pid)
        assert set(before) == set(SERVICES)
        seen |= set(before.values())
        victim = system.ingest_url

        os.kill(before["ingest_service"], signal.SIGKILL)

        async def back_with_a_new_pid() -> bool:
            pid = service_pids(supervisor.pid).get("ingest_service")
            return pid not in (None, before["ingest_service"]) and await answers(f"{victim}/healthz")

        await eventually(back_with_a_new_pid)
        after = service_pids(supervisor.pid)
        seen |= set(after.values())
        assert {name: pid for name, pid in after.items() if name != "ingest_service"} == {
            name: pid for name, pid in before.items() if name != "ingest_service"
        }  # the others kept running
        [restart] = log_events(log_path, "service_restarted")
        assert restart["child"] == "ingest_service"
        assert restart["code"] == -signal.SIGKILL
        assert restart["attempt"] == 1
        assert restart["delay"] == 1.0
        assert restart["pid"] == after["ingest_service"]
        seen |= {child.pid for child in psutil.Process(supervisor.pid).children(recursive=True)}

        os.kill(supervisor.pid, signal.SIGTERM)
        assert supervisor.process is not None
        code = await asyncio.to_thread(supervisor.process.wait, LIVENESS)
        assert code == 0
        assert [pid for pid in seen if alive(pid)] == []
        assert log_events(log_path, "all_services_stopped")
    finally:
        supervisor.stop(kill=True)
        for pid in seen:  # only if the test failed: never leave services running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        await asyncio.to_thread(system.stop_all)
