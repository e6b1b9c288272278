"""`python -m single_host.supervisor`: run every service as a local process, in the foreground, and keep them up.

Their JSON log lines go to this terminal, interleaved (each line names its service). A service that
exits on its own (a crash, an out-of-memory kill, `kill -9`) is started again after a backoff, as
Kubernetes restarts a crashing container: RESTART_BACKOFF_INITIAL seconds, doubling with each crash in
a row up to RESTART_BACKOFF_MAX; a service that stayed up RESTART_BACKOFF_RESET seconds starts the
count over. Each exit (`service_exited`) and each restart (`service_restarted`, with the exit code, the
attempt and the delay) is logged; what the dead process left in its process group (worker processes)
is killed before the restart, as a container's processes end with it. The other services keep
running meanwhile: they ride out a dependency's absence the way they would in a cluster.

Ctrl-C (SIGINT) or SIGTERM stops them all cleanly, the gateway first: each child gets SIGTERM and
SHUTDOWN_TIMEOUT seconds to finish its in-flight work before it is killed; a planned restart is
dropped. Starting and stopping are `single_host.processes`'s, the same code the end-to-end tests and
benchmarks run the services with.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass

from common.app.logs import configure_logging, get_logger
from common.app.web import load_settings
from single_host.processes import SERVICES, ChildProcess, service_argv
from single_host.settings import SupervisorSettings

log = get_logger(__name__)

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff between restarts of one service."""

    initial: float
    maximum: float
    reset_after: float

    @classmethod
    def from_settings(cls, settings: SupervisorSettings) -> RestartPolicy:
        return cls(settings.restart_backoff_initial, settings.restart_backoff_max, settings.restart_backoff_reset)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number `attempt` of a crash streak (1, 2, ...)."""
        return min(self.maximum, self.initial * 2.0 ** min(attempt - 1, 64))


@dataclass
class Supervised:
    """One service under supervision: its process, how it is started, and its crash streak."""

    name: str
    child: ChildProcess
    argv: list[str]
    started_at: float = 0.0
    attempt: int = 0
    """Restarts in the current crash streak (0 while it has not crashed since it last stayed up)."""
    restart_at: float | None = None
    """When the planned restart is due (monotonic clock), or None while the service runs."""
    delay: float = 0.0
    exit_code: int | None = None

    def start(self) -> None:
        self.child.start(self.argv)
        self.started_at = time.monotonic()
        self.restart_at = None

    def crashed(self, policy: RestartPolicy, now: float) -> bool:
        """If the process has exited on its own, plan its restart and return True."""
        code = self.child.returncode
        if self.restart_at is not None or code is None:
            return False
        if now - self.started_at >= policy.reset_after:
            self.attempt = 0
        self.attempt += 1
        self.exit_code = code
        self.delay = policy.delay(self.attempt)
        self.restart_at = now + self.delay
        process = self.child.process
        if process is not None:  # its session's leftovers (e.g. worker processes) die with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        return True


def supervise(services: tuple[str, ...], policy: RestartPolicy, timeout: float) -> int:
    """Run `services`, restarting any that exits, until SIGINT or SIGTERM; then stop them all and return 0."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    supervised = [Supervised(name, ChildProcess(name), service_argv(name)) for name in services]
    for service in supervised:
        service.start()
        log.info("service_spawned", child=service.name, pid=service.child.pid)
    while not stop.wait(POLL_SECONDS):
        now = time.monotonic()
        for service in supervised:
            if service.crashed(policy, now):
                log.error(
                    "service_exited",
                    child=service.name,
                    code=service.exit_code,
                    attempt=service.attempt,
                    restart_in=service.delay,
                )
            elif service.restart_at is not None and now >= service.restart_at:
                service.start()
                log.warning(
                    "service_restarted",
                    child=service.name,
                    code=service.exit_code,
                    attempt=service.attempt,
                    delay=service.delay,
                    pid=service.child.pid,
                )
    log.info("stopping_services")
    for service in reversed(supervised):
        if service.child.stop(timeout=timeout):
            log.warning("service_killed", child=service.name)
    log.info("all_services_stopped")
    return 0


def main() -> None:
    """Start every service and keep them up until told to stop."""
    settings = load_settings(SupervisorSettings)
    configure_logging("supervisor", settings.log_level, settings.log_format)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(supervise(SERVICES, RestartPolicy.from_settings(settings), settings.shutdown_timeout + 2))


if __name__ == "__main__":
    main()
