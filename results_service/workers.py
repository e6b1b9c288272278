"""The live worker list: every processor's latest heartbeat, kept in memory by each results_service replica.

Each replica consumes `worker.heartbeat` through its own exclusive, auto-delete queue (`declare_heartbeat_queue`),
so every replica hears every worker and any of them can answer `GET /api/workers`. A worker is live from its
first heartbeat until it sends one marked `stopping` (a clean shutdown) or stays silent for `WORKER_STALE_AFTER`
seconds (killed, partitioned, or its broker connection down). Nothing is stored: a replica that starts learns
every worker within one heartbeat interval, which is also how old a figure shown may be.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import prometheus_client
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from common.app.logs import get_logger
from common.app.web import scrape_hooks_key
from common.auth.identity import request_caller
from common.messaging.broker import broker_key, declare_heartbeat_queue, open_channel
from common.messaging.consuming import consume
from common.messaging.heartbeats import WorkerHeartbeatSettings
from common.messaging.messages import WorkerHeartbeat
from common.schemas.workers_api import WorkerList, WorkersSummary, WorkerView

log = get_logger(__name__)

WORKERS_LIVE = prometheus_client.Gauge(
    "dicomflow_workers_live", "Processors that sent a heartbeat within WORKER_STALE_AFTER seconds."
)
HEARTBEAT_PREFETCH = 64


@dataclass(frozen=True)
class Sighting:
    """A worker's latest heartbeat and when this replica received it (registry clock, seconds)."""

    heartbeat: WorkerHeartbeat
    seen: float


class WorkerRegistry:
    """The latest heartbeat per worker; a worker not heard from for `stale_after` seconds is forgotten.

    `clock` (seconds since the epoch) is injectable so that tests move time by hand."""

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.time) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self._workers: dict[str, Sighting] = {}

    def record(self, heartbeat: WorkerHeartbeat) -> None:
        """Keep `heartbeat` as its worker's latest (an older one arriving late changes nothing); a `stopping`
        one removes the worker."""
        if heartbeat.stopping:
            if self._workers.pop(heartbeat.worker, None) is not None:
                log.info("worker_stopped", worker=heartbeat.worker)
            return
        previous = self._workers.get(heartbeat.worker)
        if previous is not None and previous.heartbeat.created_at > heartbeat.created_at:
            return
        if previous is None:
            log.info("worker_joined", worker=heartbeat.worker, queues=heartbeat.queues)
        self._workers[heartbeat.worker] = Sighting(heartbeat, self.clock())

    def live(self) -> list[Sighting]:
        """The workers heard from within `stale_after`, by worker id; the others are forgotten now."""
        now = self.clock()
        for worker, sighting in list(self._workers.items()):
            if now - sighting.seen > self.stale_after:
                del self._workers[worker]
                log.warning("worker_lost", worker=worker, silent_seconds=round(now - sighting.seen, 1))
        return [self._workers[worker] for worker in sorted(self._workers)]


worker_registry_key = web.AppKey("worker_registry", WorkerRegistry)


def view(sighting: Sighting) -> WorkerView:
    """The API's view of one live worker."""
    heartbeat = sighting.heartbeat
    fields = heartbeat.model_dump(exclude={"kind", "version", "message_id", "created_at", "stopping"})
    return WorkerView(**fields, sent_at=heartbeat.created_at, last_seen=datetime.fromtimestamp(sighting.seen, UTC))


def worker_list(registry: WorkerRegistry) -> WorkerList:
    """Every live worker and the totals over them."""
    items = [view(sighting) for sighting in registry.live()]
    summary = WorkersSummary(
        workers=len(items),
        paused=sum(item.paused for item in items),
        memory_budget_bytes=sum(item.memory_budget_bytes for item in items),
        reserved_bytes=sum(item.reserved_bytes for item in items),
        cpu_slots=sum(item.cpu_slots for item in items),
        jobs_in_flight=sum(item.jobs_in_flight for item in items),
        cpu_percent=round(sum(item.cpu_percent for item in items), 1),
        memory_bytes=sum(item.memory_bytes for item in items),
    )
    return WorkerList(items=items, summary=summary, stale_after_seconds=registry.stale_after)


async def handle_list_workers(request: web.Request) -> web.Response:
    """GET /api/workers (admins): the live workers and their load. Not audited: the portal polls it every 2 s,
    and it shows no user's data."""
    request_caller(request).require_admin()
    body = worker_list(request.app[worker_registry_key])
    return web.Response(body=body.model_dump_json().encode(), content_type="application/json")


def _replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def workers_context(
    settings: WorkerHeartbeatSettings, clock: Callable[[], float] = time.time
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Keep the registry for the app's lifetime, fed by this replica's own heartbeat queue (on the service's
    robust connection, so it is declared, bound and consumed again after a reconnect)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        registry = WorkerRegistry(settings.heartbeat_stale_after, clock)
        app[worker_registry_key] = registry
        broker = app[broker_key]
        channel = await open_channel(broker.connection, prefetch=HEARTBEAT_PREFETCH)
        try:
            queue = await declare_heartbeat_queue(
                channel, broker.topology.names.prefix, f"results-{_replica_name()}", settings.heartbeat_stale_after
            )

            async def handle_heartbeat(heartbeat: WorkerHeartbeat, _: AbstractIncomingMessage) -> None:
                registry.record(heartbeat)

            await consume(queue, handle_heartbeat, WorkerHeartbeat)
            yield
        finally:
            await channel.close()

    return context


async def scrape_workers(app: web.Application) -> None:
    """Scrape hook: `dicomflow_workers_live`."""
    WORKERS_LIVE.set(len(app[worker_registry_key].live()))


def setup_workers(app: web.Application, settings: WorkerHeartbeatSettings) -> None:
    """The live worker list: its consumer (after the broker's cleanup context) and its gauge."""
    app.cleanup_ctx.append(workers_context(settings))
    app[scrape_hooks_key].append(scrape_workers)
