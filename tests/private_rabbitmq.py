"""A RabbitMQ node of a test's own, on free ports, that the test may stop, kill and restart.

The fault drills take the broker away mid-batch. The machine's shared broker on 5672 must never be
stopped (other tests, `make up` and other helpers use it), so :class:`PrivateRabbitMQ` starts a node of
its own: a unique node name (`dicomflow-<hex>@localhost`), its AMQP and distribution ports picked free,
its database, logs, config and plugin list in a temporary folder, and a private Erlang cookie (HOME
points at that folder), so no command can reach the shared node by mistake. The node registers with
the machine's epmd like any other node; nothing here stops epmd.

The node runs as `erl` directly (`RUNNING_UNDER_SYSTEMD`, so the shell wrapper execs instead of staying
in between) in a session of its own: `stop` sends SIGTERM, which RabbitMQ turns into a clean shutdown;
`kill` sends SIGKILL to the whole session (beam and its port helper), as a crash would; `restart` keeps
the data folder, the node name and the ports, so robust clients find it again where it was. Readiness
is read from the wire: the node is up once its AMQP listener answers a protocol header with
`connection.start`. A node that does not come up fails with the tail of its log.

Plain and synchronous so that both sync and async tests can drive it (from async code, wrap the
blocking calls in `asyncio.to_thread`); `private_rabbitmq` is the pytest fixture.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from single_host.processes import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
# What a listener sends back to a protocol header: a method frame (type 1) on channel 0.
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_CONFIG = """\
listeners.tcp.1 = 127.0.0.1:{port}
loopback_users = none
disk_free_limit.absolute = 50MB
log.file.level = info
log.console = false
"""


class PrivateRabbitMQ:
    """One throwaway node; `start()` starts it (again), `close()` kills it and deletes its folder."""

    def __init__(self, port: int | None = None, dist_port: int | None = None) -> None:
        self.port = port or free_port()
        self.dist_port = dist_port or free_port()
        self.nodename = f"dicomflow-{secrets.token_hex(5)}@localhost"
        self.folder = Path(tempfile.mkdtemp(prefix="dicomflow-rabbit-"))
        self.log_dir = self.folder / "log"
        self.mnesia_dir = self.folder / "mnesia"
        self.config_file = self.folder / "rabbitmq.conf"
        self.plugins_file = self.folder / "enabled_plugins"
        self.console_log = self.folder / "console.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._prepare()

    @property
    def url(self) -> str:
        """The AMQP URL of this node (guest/guest, default vhost)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _prepare(self) -> None:
        self.log_dir.mkdir()
        self.mnesia_dir.mkdir()
        self.config_file.write_text(_CONFIG.format(port=self.port))
        self.plugins_file.write_text("[].\n")
        cookie = self.folder / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)

    def _environment(self) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("RABBITMQ_")}
        environment.update(
            HOME=str(self.folder),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.mnesia_dir),
            RABBITMQ_LOG_BASE=str(self.log_dir),
            RABBITMQ_CONFIG_FILE=str(self.config_file),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.plugins_file),
            RABBITMQ_PID_FILE=str(self.folder / "node.pid"),
            # exec erl in place of the wrapper shell: our child is the VM, signals reach it directly.
            RUNNING_UNDER_SYSTEMD="true",
        )
        return environment

    def start(self) -> None:
        """Start the node (with the data of any earlier run) and wait until AMQP answers."""
        if self.running:
            return
        if not SERVER.exists():
            raise RuntimeError(f"{SERVER} not found: install the rabbitmq-server package")
        with self.console_log.open("ab") as console:
            self._process = subprocess.Popen(
                [str(SERVER)],
                env=self._environment(),
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"RabbitMQ node {self.nodename} exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"RabbitMQ node {self.nodename} not up after {START_TIMEOUT:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(_AMQP_HEADER)
                return sock.recv(3)[:3] == b"\x01\x00\x00"
        except OSError:
            return False

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: RabbitMQ closes its connections and stops its queues)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"RabbitMQ node {self.nodename} ignored SIGTERM for {STOP_TIMEOUT:.0f} s:\n{self.log_tail()}"
            ) from None
        self._reap_session(process.pid)

    def kill(self) -> None:
        """A crash: SIGKILL to the node's whole session (the VM and its helpers), no shutdown at all."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self._reap_session(process.pid)
        process.wait()

    @staticmethod
    def _reap_session(session_id: int) -> None:
        """SIGKILL to what is left of the node's process group (its id is the VM's pid)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session_id, signal.SIGKILL)

    def restart(self) -> None:
        """Stop cleanly and start again with the same name, ports and data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Kill the node if it runs and delete its folder."""
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the node's log (and of its console, where boot failures are printed)."""
        parts = []
        for path in (*sorted(self.log_dir.glob("*.log")), self.console_log):
            text = path.read_text(errors="replace") if path.exists() else ""
            if text.strip():
                parts.append(f"--- {path.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no log written)"

    def __enter__(self) -> PrivateRabbitMQ:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


@pytest.fixture(name="private_rabbitmq")
def private_rabbitmq_fixture() -> Iterator[PrivateRabbitMQ]:
    """A started private node, killed and deleted after the test."""
    with PrivateRabbitMQ() as node:
        yield node
