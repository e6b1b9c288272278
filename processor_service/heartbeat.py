"""This worker's heartbeat: who it is and how loaded it is, published every `WORKER_HEARTBEAT_INTERVAL` seconds.

Every results_service replica keeps the latest heartbeat of each worker (`results_service/workers.py`) and drops a
worker silent for `WORKER_STALE_AFTER`; a clean shutdown sends a last heartbeat marked `stopping`, so the worker
leaves the list at once. Heartbeats are transient (not persistent, expiring after the stale bound) and best
effort: a publish that fails or is not confirmed within one interval is logged and skipped, never retried, and
nothing of the job path waits for it. The same figures are this process's `dicomflow_worker_*` gauges, read at
scrape time from the same snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import prometheus_client
from aio_pika.abc import AbstractExchange
from aiohttp import web
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import AllTransferSyntaxes

from common.app.logs import get_logger
from common.app.web import scrape_hooks_key
from common.messaging.broker import WORKER_HEARTBEAT, broker_key, to_amqp
from common.messaging.messages import DecoderSupport, WorkerHeartbeat
from processor_service.admission import Admission
from processor_service.consumer import worker_id
from processor_service.keys import admission_key, usage_sampler_key
from processor_service.settings import ProcessorSettings
from processor_service.usage import UsageSampler

log = get_logger(__name__)

MEMORY_BUDGET = prometheus_client.Gauge("dicomflow_worker_memory_budget_bytes", "This processor's memory budget.")
CPU_SLOTS = prometheus_client.Gauge("dicomflow_worker_cpu_slots", "This processor's CPU slots.")
RESERVED = prometheus_client.Gauge(
    "dicomflow_worker_reserved_bytes", "Memory reserved by the jobs this processor runs now (their estimates)."
)
IN_FLIGHT = prometheus_client.Gauge("dicomflow_worker_jobs_in_flight", "Jobs this processor runs now.")
PAUSED = prometheus_client.Gauge("dicomflow_worker_paused", "1 while this processor takes no jobs (overload), else 0.")
CPU_PERCENT = prometheus_client.Gauge(
    "dicomflow_worker_cpu_percent", "CPU use of this processor and its worker processes (100 = one core)."
)
MEMORY = prometheus_client.Gauge(
    "dicomflow_worker_memory_bytes", "Resident memory of this processor and its worker processes."
)


def available_decoders() -> list[DecoderSupport]:
    """The transfer syntaxes whose pixel data pydicom can decode here, each with the plugins that can.

    Asked of pydicom itself (`get_decoder(uid).is_available`), so a missing optional package (pylibjpeg,
    pillow...) shows as a missing syntax, exactly as decoding would fail."""
    found = []
    for uid in AllTransferSyntaxes:
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            continue
        if decoder.is_available:
            found.append(DecoderSupport(transfer_syntax_uid=str(uid), name=uid.name, plugins=decoder.available_plugins))
    return found


class HeartbeatSender:
    """Builds this worker's heartbeat from its admission state and usage, and publishes it best effort."""

    def __init__(
        self,
        settings: ProcessorSettings,
        exchange: AbstractExchange,
        admission: Admission,
        sampler: UsageSampler,
        decoders: list[DecoderSupport],
    ) -> None:
        self.settings = settings
        self.exchange = exchange
        self.admission = admission
        self.sampler = sampler
        self.decoders = decoders
        self.worker = worker_id()
        self.started_at = datetime.now(UTC)
        self._pause_changed = asyncio.Event()
        self._paused = admission.paused
        admission.subscribe(self._on_admission_change)

    def _on_admission_change(self) -> None:
        """A pause or a resume is reported at once, not at the next interval (reservations wait for it)."""
        if self.admission.paused != self._paused:
            self._paused = self.admission.paused
            self._pause_changed.set()

    def snapshot(self, *, stopping: bool = False) -> WorkerHeartbeat:
        """The heartbeat as of now. CPU and memory are the admission's latest reading (taken every
        `PROCESSOR_USAGE_INTERVAL` for the overload pause: reading again here would split psutil's CPU intervals);
        before its first, a reading of our own."""
        admission = self.admission
        usage = admission.last_usage or self.sampler.sample()
        return WorkerHeartbeat(
            worker=self.worker,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            queues=list(self.settings.processor_queues),
            memory_budget_bytes=admission.memory_budget,
            cpu_slots=admission.cpu_slots,
            reserved_bytes=admission.reserved_bytes,
            jobs_in_flight=admission.jobs_in_flight,
            paused=admission.paused,
            pause_reason=admission.pause_reason,
            cpu_percent=max(0.0, usage.cpu_percent),
            memory_bytes=max(0, usage.memory_bytes),
            decoders=self.decoders,
            stopping=stopping,
        )

    async def send(self, *, stopping: bool = False) -> bool:
        """Publish one heartbeat; False (logged) when the broker did not take it within one interval."""
        heartbeat = self.snapshot(stopping=stopping)
        message = to_amqp(heartbeat, expiration=self.settings.heartbeat_stale_after)
        try:
            await asyncio.wait_for(
                self.exchange.publish(message, routing_key=WORKER_HEARTBEAT, mandatory=False),
                timeout=self.settings.worker_heartbeat_interval,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # best effort: nothing of the job path depends on a heartbeat
            log.warning("heartbeat_not_sent", stopping=stopping, error=repr(exc)[:300])
            return False
        return True

    async def run(self) -> None:
        """Send a heartbeat now, then every interval or as soon as the processor pauses or resumes, until
        cancelled."""
        while True:
            self._pause_changed.clear()
            await self.send()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pause_changed.wait(), self.settings.worker_heartbeat_interval)

    def observe(self) -> None:
        """Set this process's `dicomflow_worker_*` gauges from a snapshot."""
        heartbeat = self.snapshot()
        MEMORY_BUDGET.set(heartbeat.memory_budget_bytes)
        CPU_SLOTS.set(heartbeat.cpu_slots)
        RESERVED.set(heartbeat.reserved_bytes)
        IN_FLIGHT.set(heartbeat.jobs_in_flight)
        PAUSED.set(1 if heartbeat.paused else 0)
        CPU_PERCENT.set(heartbeat.cpu_percent)
        MEMORY.set(heartbeat.memory_bytes)


heartbeat_key = web.AppKey("heartbeat", HeartbeatSender)


def heartbeat_context(settings: ProcessorSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Heartbeats for the app's lifetime, and the load gauges at every scrape; on a clean stop, one last heartbeat
    marked `stopping` (sent first thing on the way out, before the jobs in flight drain)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        decoders = await asyncio.to_thread(available_decoders)  # imports the plugins: ~1 s, off the loop
        exchange = app[broker_key].topology.exchange
        sender = HeartbeatSender(settings, exchange, app[admission_key], app[usage_sampler_key], decoders)
        app[heartbeat_key] = sender

        async def observe(_: web.Application) -> None:
            sender.observe()

        app[scrape_hooks_key].append(observe)
        task = asyncio.create_task(sender.run(), name="heartbeat")
        log.info("heartbeat_started", worker=sender.worker, interval=settings.worker_heartbeat_interval)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            app[scrape_hooks_key].remove(observe)
            await sender.send(stopping=True)

    return context
