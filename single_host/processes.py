"""The whole system as child processes on this host, on free ports: for `make up`, end-to-end tests and benchmarks.

:class:`ChildProcess` is the one implementation of starting and stopping a process: each runs in a
session of its own, is stopped with SIGTERM to itself (it shuts its own workers down, as under an
orchestrator), then SIGKILL to its whole process group, workers included, if it has not exited in
time. The supervisor runs the services with it in the foreground; :class:`RunningSystem` runs all
four of one source tree with their own free 127.0.0.1 ports, database, AMQP prefix and blob folder,
waits for every `/readyz`, can stop, kill and restart one service, reads its resident memory, and
deletes its queues and exchanges when stopped.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

from common.app.secret_settings import SERVICE_SECRET_FILE, ServiceTokenSettings
from common.auth.identity import Caller
from common.auth.service_tokens import ServiceSigner
from common.auth.tokens import Role
from common.messaging.broker import delete_topology

ROOT = Path(__file__).resolve().parents[1]
# In start order: results_service owns the database, the others call it.
SERVICES = ("results_service", "ingest_service", "processor_service", "gateway")
PORT_VARIABLES = {
    "results_service": "RESULTS_PORT",
    "ingest_service": "INGEST_PORT",
    "processor_service": "PROCESSOR_PORT",
    "gateway": "GATEWAY_PORT",
}
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
OPERATOR = Caller(user_id="operator", role=Role.ADMIN)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_argv(name: str) -> list[str]:
    """How a service is started: `python -m <service>` with this interpreter."""
    return [sys.executable, "-m", name]


class ChildProcess:
    """One child process named `name`, its output appended to `log_path` (or this process's own stdout)."""

    def __init__(self, name: str, log_path: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, argv: Sequence[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        """Spawn `argv` in a session of its own."""
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(self.log_path.open("ab")) if self.log_path else None
            self.process = subprocess.Popen(
                [str(arg) for arg in argv],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.poll() is None, f"{self.name} is not running"
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """None while running (or never started), else the exit code."""
        return None if self.process is None else self.process.poll()

    def wait_ready(self, url: str, timeout: float = READY_TIMEOUT) -> None:
        """Poll `url` until it answers 200; the process's exit or the timeout raises with the end of its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 (a URL of our own)
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self, *, kill: bool = False, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM to the process, which shuts its workers down itself (as an orchestrator stops it), or SIGKILL at
        once to its whole process group; SIGKILL to the group after `timeout`. True if it had to be killed."""
        process = self.process
        if process is None or process.poll() is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            if kill:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.terminate()
        killed = kill
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(ProcessLookupError):  # workers left behind by a killed parent
            os.killpg(process.pid, signal.SIGKILL)
        return killed

    def log_text(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Service(ChildProcess):
    """One of the four services, listening on `port`."""

    def __init__(self, name: str, port: int, log_path: Path) -> None:
        super().__init__(name, log_path)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class User:
    """An account made for a test or a benchmark, and its bearer token."""

    email: str
    password: str
    id: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class RunningSystem:
    """Four service processes of the source tree at `root`, sharing one database, AMQP prefix and blob folder."""

    def __init__(
        self, database_url: str, folder: Path, env: dict[str, str] | None = None, *, root: Path = ROOT
    ) -> None:
        self.root = root
        self._signer: ServiceSigner | None = None  # made once the secret exists (`make setup` may write it)
        self.prefix = f"e2e_{uuid.uuid4().hex[:10]}"
        self.folder = folder
        self.blob_dir = folder / "blobs"
        self.services = {name: Service(name, free_port(), folder / f"{name}.log") for name in SERVICES}
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
            "DATABASE_URL": database_url,
            "AMQP_PREFIX": self.prefix,
            "BLOB_DIR": str(self.blob_dir),
            "RESULTS_URL": self.results_url,
            "INGEST_URL": self.ingest_url,
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

    def run(self, module: str) -> None:
        """Run `python -m <module>` of this tree to completion (a set-up step), its output in `setup.log`."""
        step = ChildProcess(module, self.folder / "setup.log")
        step.start(service_argv(module), cwd=self.root, env=self.env)
        assert step.process is not None
        if step.process.wait() != 0:
            raise RuntimeError(f"{module} exited with {step.process.returncode}:\n{step.log_tail()}")

    def start(self, name: str, *, wait: bool = True) -> None:
        """Start one service (appending to its log) and, unless told not to, wait until it is ready."""
        self.services[name].start(service_argv(name), cwd=self.root, env=self.env)
        if wait:
            self.wait_ready(name)

    def start_all(self) -> None:
        for name in SERVICES:
            self.start(name, wait=False)
        for name in SERVICES:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        service = self.services[name]
        service.wait_ready(f"{service.url}/readyz", timeout)

    def stop(self, name: str, *, kill: bool = False) -> None:
        """Graceful (SIGTERM, SIGKILL after STOP_TIMEOUT), or SIGKILL at once to the service and its workers."""
        self.services[name].stop(kill=kill)

    def kill(self, name: str) -> None:
        """SIGKILL the service and its workers: no chance to ack, nack or flush anything."""
        self.stop(name, kill=True)

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)

    def stop_all(self) -> None:
        """Stop every service (the gateway first), then delete this system's queues and exchanges."""
        for name in reversed(SERVICES):
            self.stop(name)
        asyncio.run(self._delete_topology())

    async def _delete_topology(self) -> None:
        connection = await aio_pika.connect(self.env.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
        async with connection:
            await delete_topology(await connection.channel(), self.prefix)

    def pid(self, name: str) -> int:
        return self.services[name].pid

    def rss(self, name: str, *, children: bool = False) -> int:
        """Resident memory of the service's process in bytes (plus its child processes if asked)."""
        import psutil  # type: ignore[import-untyped]  # a dev dependency: only tests and benchmarks read memory

        process = psutil.Process(self.pid(name))
        total = int(process.memory_info().rss)
        if children:
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += int(child.memory_info().rss)
        return total

    async def sample_rss(self, peaks: dict[str, int], stop: asyncio.Event, interval: float = 0.05) -> None:
        """Raise `peaks[name]` to each named service's RSS every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            for name in peaks:
                peaks[name] = max(peaks[name], self.rss(name))
            await asyncio.sleep(interval)

    def log_tail(self, name: str, lines: int = 40) -> str:
        return self.services[name].log_tail(lines)

    def log_text(self, name: str) -> str:
        return self.services[name].log_text()

    def service_headers(self, caller: Caller | None = None) -> dict[str, str]:
        """A current service token for results_service, signed with the system's SERVICE_SECRET (its environment's,
        or the file its services read), vouching for `caller`: how a harness calls results_service directly."""
        if self._signer is None:
            settings = ServiceTokenSettings(
                service_secret=self.env.get("SERVICE_SECRET", ""),
                service_secret_file=self.env.get("SERVICE_SECRET_FILE") or str(self.root / SERVICE_SECRET_FILE),
            )
            self._signer = ServiceSigner(settings.service_secret.get_secret_value(), "single_host")
        return self._signer.headers("results_service", caller)

    async def results_get(self, path: str) -> tuple[int, Any]:
        """GET a results_service route directly as an admin (what the system recorded, whoever owns it)."""
        url = f"{self.results_url}{path}"
        headers = self.service_headers(OPERATOR)
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
            return response.status, await response.json()

    async def create_user(self, name: str, role: str = "user") -> User:
        """A new account (through results_service's operator route) logged in through the gateway."""
        user = User(email=f"{name}-{uuid.uuid4().hex[:8]}@example.org", password=secrets.token_urlsafe(16))
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{self.results_url}/internal/users",
                json={"email": user.email, "password": user.password, "role": role},
                headers=self.service_headers(),
            ) as response:
                if response.status != 201:
                    raise RuntimeError(f"creating {user.email}: {response.status} {await response.text()}")
                user.id = (await response.json())["id"]
            async with session.post(
                f"{self.gateway_url}/api/auth/login", json={"email": user.email, "password": user.password}
            ) as response:
                if response.status != 200:
                    raise RuntimeError(f"logging in {user.email}: {response.status} {await response.text()}")
                token = (await response.json())["access_token"]
        user.headers = {"Authorization": f"Bearer {token}"}
        return user
