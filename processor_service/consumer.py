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
after a broker restart.

Admission by cost: a job starts only when its memory estimate (`ProcessJob.cost_bytes`, or one read from
the stored file's header for a job published without it) fits in what is left of the processor's budget
(`processor_service.admission`); until then it is held un-started, and the queue's intake takes no more
(`processor_service.intake`). A job larger than the whole budget can never start here: from the standard
queue it is passed on to the large-jobs queue (acked here), and from the large-jobs queue it fails with a
reason that names the budget it needs, so it is never retried toward the delivery limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import prometheus_client
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from common.app.logs import get_logger
from common.app.web import readiness_checks_key
from common.messaging.broker import JOB_LARGE, Broker, broker_key, publish, status_key
from common.messaging.consuming import typed
from common.messaging.faults import is_infrastructure_error, retry_through_outage
from common.messaging.messages import ImageResult, InstanceStatus, ProcessJob, ProcessResult, StatusEvent
from common.storage.blobs import BlobNotFound, BlobStore, BlobUnreadable
from processor_service.admission import Admission, watch_usage
from processor_service.estimate import blob_cost
from processor_service.imaging import ImagingError
from processor_service.intake import Intake
from processor_service.keys import admission_key, blob_store_key, pool_key, usage_sampler_key
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
    """Handles jobs as admission lets them start; `drain` waits for them on stop."""

    def __init__(
        self, settings: ProcessorSettings, broker: Broker, pool: WorkerPool, store: BlobStore, admission: Admission
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.pool = pool
        self.store = store
        self.admission = admission
        self.worker = worker_id()
        self.in_flight: set[asyncio.Task[object]] = set()

    async def handle_job(self, intake: Intake, job: ProcessJob, message: AbstractIncomingMessage) -> None:
        """Process one job of `intake`'s queue once it fits; return only once its result (or its forward to the
        large-jobs queue) is confirmed (then the wrapper acks)."""
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            cost = job.cost_bytes if job.cost_bytes is not None else await self._estimate(job)
            if self.admission.never_fits(cost):
                intake.decided(message)
                await self._too_large(intake, job, cost, message)
                return
            async with intake.admitted(cost, message):
                await self._process(job, message)
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def _estimate(self, job: ProcessJob) -> int:
        """The estimate of a job published without one, read from its file's header in a worker process; its size
        if that fails (the job itself then fails or is retried with its reason)."""
        try:
            return await self.pool.run(
                blob_cost, self.store, job.sha256, job.size, timeout=self.settings.processor_job_timeout
            )
        except Exception as exc:  # timed out, worker lost: the job's own run will meet the same and say so
            log.warning("job_estimate_failed", instance_id=job.instance_id, error=repr(exc)[:300])
            return job.size

    async def _too_large(self, intake: Intake, job: ProcessJob, cost: int, message: AbstractIncomingMessage) -> None:
        """A job larger than the whole budget: pass it on to the large-jobs queue, or fail it there."""
        budget = self.admission.memory_budget
        if intake.queue_name != self.broker.topology.names.jobs_large:
            forwarded = job.model_copy(update={"cost_bytes": cost})
            await self._confirmed(lambda: publish(self.broker.topology.exchange, forwarded, JOB_LARGE), message)
            JOBS.labels("passed_to_large").inc()
            log.info("job_passed_to_large_queue", instance_id=job.instance_id, cost_bytes=cost, budget_bytes=budget)
            return
        reason = (
            f"needs an estimated {cost} bytes ({cost / 1024**2:.0f} MiB) of memory to process, more than the whole "
            f"budget of the large-jobs processor that took it ({budget} bytes); run a large-jobs processor with "
            f"PROCESSOR_MEMORY_BUDGET_BYTES of at least {cost}, then upload the file again"
        )
        result = _result_of(job, reason=reason)
        await self._confirmed(
            lambda: publish(self.broker.topology.exchange, result, f"result.{result.status.value}"), message
        )
        JOBS.labels("too_large").inc()
        log.warning("job_too_large", instance_id=job.instance_id, cost_bytes=cost, budget_bytes=budget)

    async def _confirmed(self, send: Callable[[], Awaitable[None]], message: AbstractIncomingMessage) -> None:
        await retry_through_outage(
            send,
            what="publish",
            max_delay=self.settings.retry_max_delay,
            still_wanted=lambda: not message.channel.is_closed,
        )

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
        await self._confirmed(
            lambda: publish(self.broker.topology.exchange, result, f"result.{result.status.value}"), message
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
    """Take jobs from the configured queues for the app's lifetime, as admission lets them in, and watch the
    processor's use for overload (a readiness check while it runs); on stop, stop taking, then drain."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        broker = app[broker_key]
        admission = app[admission_key]
        processor = JobProcessor(settings, broker, app[pool_key], app[blob_store_key], admission)
        names = broker.topology.names
        queues = [names.jobs if name == "standard" else names.jobs_large for name in settings.processor_queues]
        intakes = [Intake(broker.connection, settings, queue, admission) for queue in queues]

        def kick_all() -> None:
            for intake in intakes:
                intake.kick()

        async def intakes_ready(_: web.Application | None = None) -> None:
            if broker.connection.is_closed or not broker.connection.connected.is_set():
                raise ConnectionError("processor_service: no connection to RabbitMQ")
            closed = [intake.queue_name for intake in intakes if not intake.attached()]
            if closed:
                raise ConnectionError(f"processor_service: not consuming {', '.join(closed)}")

        watch = asyncio.create_task(watch_usage(admission, app[usage_sampler_key], settings.processor_usage_interval))
        admission.subscribe(kick_all)
        try:
            for intake in intakes:
                await intake.start(typed(functools.partial(processor.handle_job, intake), ProcessJob))
            app[readiness_checks_key].append(intakes_ready)
            log.info(
                "consuming",
                queues=queues,
                cpu_slots=admission.cpu_slots,
                memory_budget_bytes=admission.memory_budget,
                memory_limit_bytes=admission.limits.memory_bytes,
                cpu_limit_percent=admission.limits.cpu_percent,
            )
            yield
        finally:
            if intakes_ready in app[readiness_checks_key]:
                app[readiness_checks_key].remove(intakes_ready)
            for intake in intakes:
                await intake.stop_taking()
            await processor.drain(settings.shutdown_timeout)
            for intake in intakes:
                await intake.close()
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    return context


def pool_context(
    settings: ProcessorSettings, pool_factory: Callable[[int], WorkerPool] = WorkerPool
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Worker processes for the app's lifetime, one per CPU slot (`pool_factory` lets tests control job time)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        pool = pool_factory(app[admission_key].cpu_slots)
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
