"""The faults a drill injects, each returning once the faulted part is back, with what it found on the way.

- `kill-<service>`: SIGKILL to the service's process alone, as `kill -9 <pid>` or the OOM killer
  does (not to its process group: its workers must die with it by themselves), then a start as the
  supervisor would. Processes of its session still alive ORPHAN_DEADLINE after it died are reported
  as orphans (and killed, so they do not outlive the drill).
- `broker-*`: the RabbitMQ node stopped cleanly, left down, started again with its data.
- `database-*`: the PostgreSQL cluster stopped (fast shutdown), left down, started again.

The outages longer than a minute are `long`: `make drills` runs them, the suite does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import psutil  # type: ignore[import-untyped]  # a dev dependency, as in single_host.processes

from single_host.processes import SERVICES
from tests.drills.rig import Rig

SHORT_OUTAGE = 5.0
LONG_OUTAGE = 65.0
ORPHAN_DEADLINE = 10.0  # how long a killed service's workers may take to notice, never a wait in itself

Inject = Callable[[Rig], Awaitable[list[str]]]


@dataclass(frozen=True)
class Fault:
    """A fault and how it is injected: `inject` returns once the faulted part is back, with its findings."""

    name: str
    what: str
    inject: Inject
    long: bool = False


def _session(session_id: int) -> list[int]:
    """Live processes (zombies aside) of the session `session_id` (a service's pid: it runs in its own)."""
    found = []
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(process.pid) == session_id:
                found.append(process.pid)
    return found


async def _orphans(session_id: int) -> list[int]:
    """Processes of the dead service's session still alive at ORPHAN_DEADLINE (none: returns as they go)."""
    deadline = time.monotonic() + ORPHAN_DEADLINE
    while (left := await asyncio.to_thread(_session, session_id)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left


def kill_service(name: str) -> Inject:
    async def inject(rig: Rig) -> list[str]:
        pid = rig.system.pid(name)
        os.kill(pid, signal.SIGKILL)
        process = rig.system.services[name].process
        assert process is not None
        await asyncio.to_thread(process.wait)
        findings = []
        orphans = await _orphans(pid)
        if orphans:
            findings.append(f"{len(orphans)} process(es) outlived {name} by {ORPHAN_DEADLINE:.0f} s: {orphans}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        await asyncio.to_thread(rig.system.start, name)  # as the supervisor restarts a crashed service
        return findings

    return inject


class PrivateServer(Protocol):
    """The rig's private RabbitMQ node or PostgreSQL cluster."""

    def stop(self) -> None: ...

    def start(self) -> None: ...


def server_down(server: Callable[[Rig], PrivateServer], seconds: float) -> Inject:
    """Stop the rig's `server` (its broker or its database) for `seconds`, then start it again."""

    async def inject(rig: Rig) -> list[str]:
        await asyncio.to_thread(server(rig).stop)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(server(rig).start)
        return []

    return inject


def broker_down(seconds: float) -> Inject:
    return server_down(lambda rig: rig.broker, seconds)


def database_down(seconds: float) -> Inject:
    return server_down(lambda rig: rig.postgres, seconds)


async def no_fault(rig: Rig) -> list[str]:
    """The baseline of `make drills`: the same batch with nothing done to it."""
    return []


BASELINE = Fault("baseline", "no fault", no_fault)
FAULTS = [
    *(Fault(f"kill-{name}", f"kill -9 of {name}, restarted", kill_service(name)) for name in SERVICES),
    Fault("broker-short", f"RabbitMQ stopped {SHORT_OUTAGE:.0f} s", broker_down(SHORT_OUTAGE)),
    Fault("broker-long", f"RabbitMQ stopped {LONG_OUTAGE:.0f} s", broker_down(LONG_OUTAGE), long=True),
    Fault("database-short", f"PostgreSQL stopped {SHORT_OUTAGE:.0f} s", database_down(SHORT_OUTAGE)),
    Fault("database-long", f"PostgreSQL stopped {LONG_OUTAGE:.0f} s", database_down(LONG_OUTAGE), long=True),
]
