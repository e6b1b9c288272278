"""The running system for end-to-end tests: all four services as real processes (`python -m <service>`).

The processes are `single_host.processes.RunningSystem`: free 127.0.0.1 ports, this run's migrated
database, its own AMQP prefix and blob folder; it waits for every `/readyz`, can stop, kill and
restart one service (e.g. a processor mid-batch), reads each process's RSS, and on teardown
terminates (then kills) every process and deletes its queues and exchanges.

- `running_system` (session): one system shared by the tests that need no special settings.
- `start_system(**env)` (function): a system of its own with extra environment variables
  (e.g. `UPLOAD_MAX_BYTES`, `JOB_DELIVERY_LIMIT`), torn down after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from single_host.processes import ROOT, SERVICES, RunningSystem, Service, User, free_port

__all__ = ["ROOT", "SERVICES", "RunningSystem", "Service", "User", "free_port", "running_system", "start_system"]


@pytest.fixture(scope="session")
def running_system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """All four services, started once for the session's end-to-end tests."""
    system = RunningSystem(database_url, tmp_path_factory.mktemp("system"))
    try:
        system.start_all()
        yield system
    finally:
        system.stop_all()


@pytest.fixture
def start_system(database_url: str, tmp_path: Path) -> Iterator[Callable[..., RunningSystem]]:
    """Start a system of this test's own with extra environment variables; stopped after the test."""
    systems: list[RunningSystem] = []

    def start(**env: str) -> RunningSystem:
        system = RunningSystem(database_url, tmp_path / f"system-{len(systems)}", env)
        system.folder.mkdir(parents=True)
        systems.append(system)
        system.start_all()
        return system

    yield start
    for system in systems:
        system.stop_all()
