"""results_service's consumers: results in batches, status events, and dead-lettered jobs.

- `P.results`: results are collected for up to `results_batch_size` messages or `results_batch_ms`,
  stored in one transaction, and each message is acked only after that commit; the done/failed
  status events are published after the commit (so a client that sees `done` can read the result).
- `P.status`: `queued`/`processing` events move an instance forward; late or duplicate ones change
  nothing. Final states come only from results and dead letters, never from an event.
- `P.deadletters`: a job the broker gave up on (delivery limit, rejection) fails its instance with a
  reason a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiohttp import web

from common.broker import Broker, broker_key, consume, open_channel, publish
from common.logs import get_logger
from common.messages import InstanceStatus, ProcessJob, ProcessResult, StatusEvent
from results_service import pipeline_store
from results_service.pipeline_store import Transition
from results_service.settings import ResultsSettings

log = get_logger(__name__)

STATUS_PREFETCH = 50
DEADLETTER_PREFETCH = 10
_RETRY_DELAYS = (0.5, 1.0, 2.0)


async def announce(broker: Broker, transitions: list[Transition]) -> None:
    """Publish one status event per transition (confirmed)."""
    for t in transitions:
        event = StatusEvent(
            instance_id=t.instance_id, upload_id=t.upload_id, owner=t.owner, status=t.status, reason=t.reason
        )
        await publish(broker.topology.events, event, "")


class ResultBatcher:
    """Gathers results from concurrent deliveries into batches; `submit` returns once its batch is committed."""

    def __init__(self, broker: Broker, size: int, window_ms: float) -> None:
        self.broker = broker
        self.size = size
        self.window = window_ms / 1000
        self.queue: asyncio.Queue[tuple[ProcessResult, asyncio.Future[None]]] = asyncio.Queue()
        self.idle = asyncio.Event()  # set when no result waits and no batch is being stored
        self.idle.set()

    async def handle_result(self, result: ProcessResult, message: AbstractIncomingMessage) -> None:
        """Consumer handler: wait for the batch holding this result to commit (the wrapper then acks)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.idle.clear()
        self.queue.put_nowait((result, future))
        await future

    async def _collect(self) -> list[tuple[ProcessResult, asyncio.Future[None]]]:
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.window
        while len(batch) < self.size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _store(self, results: list[ProcessResult]) -> None:
        """Commit, then announce; a failing database is retried a few times before giving up."""
        for delay in (*_RETRY_DELAYS, None):
            try:
                transitions = await pipeline_store.save_results(results)
                break
            except Exception as exc:  # the boundary: the deliveries will be requeued
                if delay is None:
                    raise
                log.warning("result_batch_retry", size=len(results), error=str(exc), delay=delay)
                await asyncio.sleep(delay)
        await announce(self.broker, transitions)
        log.info("result_batch_stored", size=len(results), final=len(transitions))

    async def run(self) -> None:
        """Store batches until cancelled."""
        while True:
            batch = await self._collect()
            waiting = [(r, f) for r, f in batch if not f.done()]  # a cancelled delivery is requeued anyway
            try:
                await self._store([r for r, _ in waiting])
            except asyncio.CancelledError:
                for _, future in waiting:
                    future.cancel()
                raise
            except Exception as exc:
                log.exception("result_batch_failed", size=len(waiting))
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in waiting:
                    if not future.done():
                        future.set_result(None)
            finally:
                if self.queue.empty():
                    self.idle.set()


async def handle_status(event: StatusEvent, message: AbstractIncomingMessage) -> None:
    """Move the instance forward to `queued`/`processing`; anything late or repeated changes nothing."""
    if event.status.rank >= InstanceStatus.DONE.rank:
        return
    moved = await pipeline_store.apply_status(event.instance_id, event.status)
    log.debug("status_applied", instance_id=event.instance_id, status=event.status.value, moved=moved)


def dead_letter_reason(headers: Mapping[str, Any], delivery_limit: int) -> str:
    """Why the broker gave up on a job, in words an operator or a user can act on."""
    deaths = headers.get("x-death") or [{}]
    why = str(deaths[0].get("reason", "unknown")) if isinstance(deaths, list) and deaths else "unknown"
    replay = "the job is parked for operator review (`dicomflow jobs parked`, then `dicomflow jobs replay`)"
    if why == "delivery_limit":
        attempts = delivery_limit + 1
        return f"processing failed {attempts} times (the worker timed out or crashed each time); {replay}"
    if why == "rejected":
        return f"the processor could not read the job message (malformed or unknown version); {replay}"
    return f"the job was dead-lettered by the broker ({why}); {replay}"


def deadletter_handler(broker: Broker, delivery_limit: int) -> Callable[[ProcessJob, AbstractIncomingMessage], Any]:
    """Consumer handler of `P.deadletters`: fail the job's instance with the reason (forward-only)."""

    async def handle_dead_job(job: ProcessJob, message: AbstractIncomingMessage) -> None:
        reason = dead_letter_reason(message.headers or {}, delivery_limit)
        transition = await pipeline_store.fail_instance(job.instance_id, reason)
        log.warning("job_dead_lettered", instance_id=job.instance_id, reason=reason, moved=transition is not None)
        if transition is not None:
            await announce(broker, [transition])

    return handle_dead_job


async def _consume_on(channel: AbstractChannel, queue: AbstractQueue, handler: Any, model: Any) -> tuple[Any, str]:
    """Consume the queue of this name on `channel` (its own prefetch)."""
    own = await channel.get_queue(queue.name, ensure=False)
    return own, await consume(own, handler, model)


def consumers_context(settings: ResultsSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Run the three consumers for the app's lifetime; on stop, stop consuming and let the last batch finish."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        broker = app[broker_key]
        topology = broker.topology
        batcher = ResultBatcher(broker, settings.results_batch_size, settings.results_batch_ms)
        batch_task = asyncio.create_task(batcher.run())
        results_channel = await open_channel(broker.connection, prefetch=settings.results_batch_size)
        status_channel = await open_channel(broker.connection, prefetch=STATUS_PREFETCH)
        dead_channel = await open_channel(broker.connection, prefetch=DEADLETTER_PREFETCH)
        consumers = [
            await _consume_on(results_channel, topology.results, batcher.handle_result, ProcessResult),
            await _consume_on(status_channel, topology.status, handle_status, StatusEvent),
            await _consume_on(
                dead_channel, topology.deadletters, deadletter_handler(broker, settings.job_delivery_limit), ProcessJob
            ),
        ]
        try:
            yield
        finally:
            for queue, tag in consumers:
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batcher.idle.wait(), settings.shutdown_timeout)
            batch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await batch_task
            for channel in (results_channel, status_channel, dead_channel):
                await channel.close()

    return context
