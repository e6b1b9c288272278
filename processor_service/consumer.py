"""The job consumer: one ProcessJob in, a `processing` status event and one ProcessResult out.

Deterministic failures (the stored file is missing, its pixel data cannot be decoded) become a
`failed` result and the job is acked: retrying would not help. A worker process that times out or
dies makes the handler raise, so the job is requeued; the quorum queue's delivery limit eventually
parks it and results_service marks the instance failed from the dead letter. The job is acked only
once the result's publish is confirmed by the broker.

An outage is not the job's fault and costs it no delivery attempt (`common.messaging.faults`): a
blob store that cannot be read (not a missing blob) or a broker that does not confirm makes the
consuming edge hold the job and run it again with backoff; a result already computed is only
published again. Each job queue has its own channel, declared there so that its consumer is back
after a broker restart; `JobConsumers.ready` is a readiness check.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable

import prometheus_client
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from common.app.logs import get_logger
from common.app.web import readiness_checks_key
from common.messaging.broker import Broker, broker_key, publish, status_key
from common.messaging.consuming import ConsumerSet
from common.messaging.faults import is_infrastructure_error, retry_through_outage
from common.messaging.messages import ImageResult, InstanceStatus, ProcessJob, ProcessResult, StatusEvent
from common.storage.blobs import BlobNotFound, BlobStore, BlobUnreadable
from processor_service.imaging import ImagingError
from processor_service.keys import blob_store_key, pool_key
from processor_service.pool import WorkerPool
from processor_service.settings import ProcessorSettings
from processor_service.work import measure_blob

log = get_logger(__name__)

JOBS = prometheus_client.Counter("processor_jobs_total", "Jobs handled, by outcome.", ["outcome"])
JOB_SECONDS = prometheus_client.Histogram(
    "processor_job_seconds", "Wall time of one job, status event to confirmed result."
)


def worker_id() -> str:
    """hostname:pid of this service process, recorded with every result."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _result_of(job: ProcessJob, *, image: ImageResult | None = None, reason: str | None = None) -> ProcessResult:
    """The result message of `job` (its instance, upload, owner and pipeline version): failed for `reason`,
    or done with `image`."""
    return ProcessResult(
        instance_id=job.instance_id,
        upload_id=job.upload_id,
        owner=job.owner,
        pipeline_version=job.pipeline_version,
        status=InstanceStatus.FAILED if reason is not None else InstanceStatus.DONE,
        result=image,
        reason=reason,
    )


class JobProcessor:
    """Handles jobs with at most `processor_concurrency` in flight; `drain` waits for them on stop."""

    def __init__(self, settings: ProcessorSettings, broker: Broker, pool: WorkerPool, store: BlobStore) -> None:
        self.settings = settings
        self.broker = broker
        self.pool = pool
        self.store = store
        self.worker = worker_id()
        self.semaphore = asyncio.Semaphore(settings.processor_concurrency)
        self.in_flight: set[asyncio.Task[object]] = set()

    async def handle_job(self, job: ProcessJob, message: AbstractIncomingMessage) -> None:
        """Process one job; return only once its result is confirmed (then the wrapper acks)."""
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            async with self.semaphore:
                await self._process(job, message)
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def _process(self, job: ProcessJob, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        log.info("job_started", instance_id=job.instance_id, redelivered=bool(message.redelivered))
        await self._announce(job, InstanceStatus.PROCESSING)
        try:
            analysis = await self.pool.run(
                measure_blob,
                self.store,
                job.sha256,
                self.worker,
                timeout=self.settings.processor_job_timeout,
            )
        except BlobNotFound:
            result = _result_of(
                job, reason=f"the stored file {job.sha256} is missing from the blob store; upload it again"
            )
        except BlobUnreadable as exc:
            result = _result_of(job, reason=f"the stored file cannot be decrypted ({exc}); upload it again")
        except ImagingError as exc:
            result = _result_of(job, reason=str(exc))
        except Exception as exc:
            if is_infrastructure_error(exc):
                JOBS.labels("held").inc()
                log.warning("job_held_in_outage", instance_id=job.instance_id, error=repr(exc)[:300])
            else:
                JOBS.labels("retried").inc()
                log.warning("job_will_be_retried", instance_id=job.instance_id, reason=str(exc))
            raise
        else:
            image = analysis.result
            if analysis.preview_png is not None:
                image = image.model_copy(update={"preview_sha256": await self.store.put_bytes(analysis.preview_png)})
            result = _result_of(job, image=image)
        await retry_through_outage(
            lambda: publish(self.broker.topology.exchange, result, f"result.{result.status.value}"),
            what="publish result",
            max_delay=self.settings.retry_max_delay,
            still_wanted=lambda: not message.channel.is_closed,
        )
        JOBS.labels(result.status.value).inc()
        JOB_SECONDS.observe(time.perf_counter() - started)
        log.info("job_finished", instance_id=job.instance_id, status=result.status.value, reason=result.reason)

    async def _announce(self, job: ProcessJob, status: InstanceStatus) -> None:
        event = StatusEvent(instance_id=job.instance_id, upload_id=job.upload_id, owner=job.owner, status=status)
        await publish(self.broker.topology.exchange, event, status_key(status.value))

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` for in-flight jobs; cancel the rest (their jobs go back to the queue)."""
        pending = set(self.in_flight)
        if not pending:
            return
        log.info("draining_jobs", in_flight=len(pending))
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            log.warning("jobs_requeued_on_stop", count=len(still))
            await asyncio.wait(still, timeout=2)


def consumer_context(settings: ProcessorSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Consume the configured job queues for the app's lifetime (a readiness check while it runs); on stop,
    stop consuming, then drain."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        broker = app[broker_key]
        processor = JobProcessor(settings, broker, app[pool_key], app[blob_store_key])
        names = broker.topology.names
        queues = [names.jobs if name == "standard" else names.jobs_large for name in settings.processor_queues]
        consumers = ConsumerSet(broker.connection, settings, "processor_service")
        try:
            for queue in queues:
                await consumers.add_typed(
                    queue, processor.handle_job, ProcessJob, prefetch=settings.processor_concurrency
                )
            app[readiness_checks_key].append(consumers.ready)
            log.info("consuming", queues=queues, concurrency=settings.processor_concurrency)
            yield
        finally:
            if consumers.ready in app[readiness_checks_key]:
                app[readiness_checks_key].remove(consumers.ready)
            await consumers.stop_consuming()
            await processor.drain(settings.shutdown_timeout)
            await consumers.close()

    return context


def pool_context(settings: ProcessorSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Worker processes for the app's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        pool = WorkerPool(settings.processor_concurrency)
        app[pool_key] = pool
        try:
            await pool.start()
            yield
        finally:
            await pool.close()

    return context


async def pool_ready(app: web.Application) -> None:
    """Readiness check: the worker pool is open."""
    if app[pool_key].closed:
        raise RuntimeError("worker pool is closed")
