"""The job consumer: one ProcessJob in, a `processing` status event and one ProcessResult out.

Deterministic failures (the stored file is missing, its pixel data cannot be decoded) become a
`failed` result and the job is acked: retrying would not help. A worker process that times out or
dies makes the handler raise, so the job is requeued; the quorum queue's delivery limit eventually
parks it and results_service marks the instance failed from the dead letter. The job is acked only
once the result's publish is confirmed by the broker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable

import prometheus_client
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aiohttp import web

from common.app.logs import get_logger
from common.messaging.broker import Broker, broker_key, consume, publish, status_key
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
                await self._process(job, redelivered=bool(message.redelivered))
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def _process(self, job: ProcessJob, *, redelivered: bool) -> None:
        started = time.perf_counter()
        log.info("job_started", instance_id=job.instance_id, redelivered=redelivered)
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
            JOBS.labels("retried").inc()
            log.warning("job_will_be_retried", instance_id=job.instance_id, reason=str(exc))
            raise
        else:
            image = analysis.result
            if analysis.preview_png is not None:
                image = image.model_copy(update={"preview_sha256": await self.store.put_bytes(analysis.preview_png)})
            result = _result_of(job, image=image)
        await publish(self.broker.topology.exchange, result, f"result.{result.status.value}")
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


def _queues(settings: ProcessorSettings, broker: Broker) -> list[AbstractQueue]:
    topology = broker.topology
    return [topology.jobs if name == "standard" else topology.jobs_large for name in settings.processor_queues]


def consumer_context(settings: ProcessorSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Consume the configured job queues for the app's lifetime; on stop, stop consuming, then drain."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        broker = app[broker_key]
        processor = JobProcessor(settings, broker, app[pool_key], app[blob_store_key])
        queues = _queues(settings, broker)
        tags = [await consume(queue, processor.handle_job, ProcessJob) for queue in queues]
        log.info("consuming", queues=[queue.name for queue in queues], concurrency=settings.processor_concurrency)
        yield
        for queue, tag in zip(queues, tags, strict=True):
            if not broker.channel.is_closed:
                await queue.cancel(tag)
        await processor.drain(settings.shutdown_timeout)

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
