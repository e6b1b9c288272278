"""The running system for end-to-end tests: all four services as real processes (`python -m <service>`).

Each system gets free 127.0.0.1 ports, this run's migrated database, its own AMQP prefix and blob
folder; it waits for every `/readyz`, can stop, kill and restart one service (e.g. a processor
mid-batch), reads each process's RSS, and on teardown terminates (then kills) every process and
deletes its queues and exchanges.

- `running_system` (session): one system shared by the tests that need no special settings.
- `start_system(**env)` (function): a system of its own with extra environment variables
  (e.g. `UPLOAD_MAX_BYTES`, `JOB_DELIVERY_LIMIT`), torn down after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiohttp
import psutil
import pytest

from common.messaging.broker import delete_topology

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("results_service", "ingest_service", "processor_service", "gateway")
PORT_VARIABLES = {
    "results_service": "RESULTS_PORT",
    "ingest_service": "INGEST_PORT",
    "processor_service": "PROCESSOR_PORT",
    "gateway": "GATEWAY_PORT",
}
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class User:
    """An account made for a test, and its bearer token (empty headers while the gateway has no auth)."""

    email: str
    password: str
    id: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Service:
    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class RunningSystem:
    """Four service processes sharing one database, one AMQP prefix and one blob folder."""

    def __init__(self, database_url: str, folder: Path, env: dict[str, str] | None = None) -> None:
        self.prefix = f"e2e_{uuid.uuid4().hex[:10]}"
        self.folder = folder
        self.blob_dir = folder / "blobs"
        self.services = {name: Service(name, free_port(), folder / f"{name}.log") for name in SERVICES}
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "AMQP_PREFIX": self.prefix,
            "BLOB_DIR": str(self.blob_dir),
            "RESULTS_URL": self.services["results_service"].url,
            "INGEST_URL": self.services["ingest_service"].url,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # Every test's users (and browsers) log in from 127.0.0.1: the per-address login limit
            # would otherwise make tests depend on how many ran before them.
            "LOGIN_RATE_LIMIT_BURST": "1000",
            "LOGIN_RATE_LIMIT_PER_MINUTE": "6000",
            **{PORT_VARIABLES[name]: str(service.port) for name, service in self.services.items()},
            **(env or {}),
        }

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].url

    @property
    def ingest_url(self) -> str:
        return self.services["ingest_service"].url

    @property
    def results_url(self) -> str:
        return self.services["results_service"].url

    @property
    def processor_url(self) -> str:
        return self.services["processor_service"].url

    def start(self, name: str, *, wait: bool = True) -> None:
        """Start one service (appending to its log) and wait until it is ready."""
        service = self.services[name]
        with service.log_path.open("ab") as log:
            service.process = subprocess.Popen(
                [sys.executable, "-m", name],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: worker processes go down with it
            )
        if wait:
            self.wait_ready(name)

    def start_all(self) -> None:
        for name in SERVICES:
            self.start(name, wait=False)
        for name in SERVICES:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        service = self.services[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if service.process is not None and service.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {service.process.returncode}:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{service.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {timeout} s:\n{self.log_tail(name)}")

    def stop(self, name: str, *, kill: bool = False) -> None:
        """SIGTERM (graceful, then SIGKILL after STOP_TIMEOUT) or SIGKILL at once, to the whole process group."""
        process = self.services[name].process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(ProcessLookupError):  # leftover workers of a killed parent
            os.killpg(process.pid, signal.SIGKILL)

    def kill(self, name: str) -> None:
        """SIGKILL the service and its workers: no chance to ack, nack or flush anything."""
        self.stop(name, kill=True)

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)

    def stop_all(self) -> None:
        for name in reversed(SERVICES):
            self.stop(name)
        asyncio.run(self._delete_topology())

    async def _delete_topology(self) -> None:
        connection = await aio_pika.connect(self.env.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
        async with connection:
            await delete_topology(await connection.channel(), self.prefix)

    def pid(self, name: str) -> int:
        process = self.services[name].process
        assert process is not None and process.poll() is None, f"{name} is not running"
        return process.pid

    def rss(self, name: str, *, children: bool = False) -> int:
        """Resident memory of the service's process in bytes (plus its child processes if asked)."""
        process = psutil.Process(self.pid(name))
        total = int(process.memory_info().rss)
        if children:
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += int(child.memory_info().rss)
        return total

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.services[name].log_path
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def log_text(self, name: str) -> str:
        path = self.services[name].log_path
        return path.read_text(errors="replace") if path.exists() else ""

    async def results_get(self, path: str) -> tuple[int, object]:
        """GET a results_service route directly as an admin (what the system recorded, whoever owns it)."""
        headers = {"X-Authenticated-User": "e2e-admin", "X-Authenticated-Role": "admin"}
        async with aiohttp.ClientSession() as session, session.get(f"{self.results_url}{path}", headers=headers) as r:
            return r.status, await r.json()

    async def create_user(self, name: str, role: str = "user") -> User:
        """A new account (through results_service's operator route) logged in through the gateway."""
        user = User(email=f"{name}-{uuid.uuid4().hex[:8]}@example.org", password=secrets.token_urlsafe(16))
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{self.results_url}/internal/users",
                json={"email": user.email, "password": user.password, "role": role},
                headers={"X-Authenticated-User": "operator", "X-Authenticated-Role": "admin"},
            ) as response:
                assert response.status == 201, await response.text()
                user.id = (await response.json())["id"]
            async with session.post(
                f"{self.gateway_url}/api/auth/login", json={"email": user.email, "password": user.password}
            ) as response:
                if response.status == 404:  # the gateway has no authentication yet
                    return user
                assert response.status == 200, await response.text()
                token = (await response.json())["access_token"]
        user.headers = {"Authorization": f"Bearer {token}"}
        return user


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
