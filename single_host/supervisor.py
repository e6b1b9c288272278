"""`python -m single_host.supervisor`: run every service as a local process, in the foreground.

Their JSON log lines go to this terminal, interleaved (each line names its service). Ctrl-C
(SIGINT) or SIGTERM stops them all cleanly, the gateway first: each child gets SIGTERM and
SHUTDOWN_TIMEOUT seconds to finish its in-flight work before it is killed. If any service dies
on its own, the others are stopped too and the supervisor exits with that service's code, so
a broken start is never half-running. Starting and stopping are `single_host.processes`'s, the
same code the end-to-end tests and benchmarks run the services with.
"""

from __future__ import annotations

import os
import signal
import threading

from common.app.logs import configure_logging, get_logger
from common.app.settings import BaseServiceSettings
from common.app.web import load_settings
from single_host.processes import SERVICES, ChildProcess, service_argv

log = get_logger(__name__)

POLL_SECONDS = 0.2


def supervise(services: tuple[str, ...], timeout: float) -> int:
    """Run `services` until a signal arrives or one of them exits; return the exit code."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    children = {name: ChildProcess(name) for name in services}
    for name, child in children.items():
        child.start(service_argv(name))
        log.info("service_spawned", child=name, pid=child.pid)
    exited: str | None = None
    while exited is None and not stop.wait(POLL_SECONDS):
        exited = next((name for name, child in children.items() if child.returncode is not None), None)
    code = 0
    if exited is not None:
        code = children[exited].returncode or 1
        log.error("service_exited", child=exited, code=children[exited].returncode)
    else:
        log.info("stopping_services")
    for name in reversed(services):
        if children[name].stop(timeout=timeout):
            log.warning("service_killed", child=name)
    log.info("all_services_stopped")
    return code


def main() -> None:
    """Start every service and wait."""
    settings = load_settings(BaseServiceSettings)
    configure_logging("supervisor", settings.log_level, settings.log_format)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(supervise(SERVICES, settings.shutdown_timeout + 2))


if __name__ == "__main__":
    main()
