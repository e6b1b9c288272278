"""`python -m single_host.supervisor`: run every service as a local process, in the foreground.

Their JSON log lines go to this terminal, interleaved (each line names its service). Ctrl-C
(SIGINT) or SIGTERM stops them all cleanly: each child gets SIGTERM and
SHUTDOWN_TIMEOUT seconds to finish its in-flight work before it is killed. If any service dies
on its own, the others are stopped too and the supervisor exits with that service's code, so
a broken start is never half-running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from common.app.logs import configure_logging, get_logger
from common.app.settings import BaseServiceSettings
from common.app.web import load_settings

log = get_logger(__name__)

SERVICES = ("results_service", "ingest_service", "processor_service", "gateway")


async def _start(service: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", service, start_new_session=True)
    log.info("service_spawned", child=service, pid=process.pid)
    return process


async def _stop(processes: dict[str, asyncio.subprocess.Process], timeout: float) -> None:
    for process in processes.values():
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
    for service, process in processes.items():
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            log.warning("service_killed", child=service, pid=process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def supervise(services: tuple[str, ...], timeout: float) -> int:
    """Run `services` until a signal arrives or one of them exits; return the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    processes = {service: await _start(service) for service in services}
    waits = {asyncio.ensure_future(p.wait()): s for s, p in processes.items()}
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if stopper not in done:
        first = next(task for task in done if task in waits)
        code = first.result() or 1
        log.error("service_exited", child=waits[first], code=first.result())
    else:
        log.info("stopping_services")
    stopper.cancel()
    await _stop(processes, timeout)
    log.info("all_services_stopped")
    return code


def main() -> None:
    """Start every service and wait."""
    settings = load_settings(BaseServiceSettings)
    configure_logging("supervisor", settings.log_level, settings.log_format)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(asyncio.run(supervise(SERVICES, settings.shutdown_timeout + 2)))


if __name__ == "__main__":
    main()
