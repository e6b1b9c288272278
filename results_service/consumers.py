"""results_service's consumers: results in batches, status changes and job copies in batches, dead-lettered jobs.

- `P.results`: results are collected for up to `results_batch_size` messages or `results_batch_ms`,
  stored in one transaction, and each message is acked only after that commit; the done/failed
  status events are published after the commit (so a client that sees `done` can read the result).
- `P.queued`: the broker's copy of every job published (by ingest, or by the reconciler): the job
  is durable, so its instance moves to `queued`. Applied in batches, forward only (a late copy
  never moves an instance back), announced on `P.events` once committed.
- `P.status`: the workers' status events (`processing`), applied the same way. Late or repeated
  ones change nothing; final states come only from results and dead letters, never from here.
- `P.deadletters`: a job the broker gave up on (delivery limit, rejection) fails its instance with a
  reason a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiohttp import web

from common.app.logs import get_logger
from common.messaging.broker import Broker, broker_key, consume, open_channel, publish
from common.messaging.messages import InstanceStatus, ProcessJob, ProcessResult, StatusChanges, StatusEvent
from results_service import pipeline_store
from results_service.batching import Batcher
from results_service.pipeline_store import Transition
from results_service.settings import ResultsSettings

log = get_logger(__name__)

STATUS_PREFETCH = 200
STATUS_BATCH_MS = 20.0
DEADLETTER_PREFETCH = 10


ANNOUNCE_MAX = 500


async def announce(broker: Broker, transitions: list[Transition]) -> None:
    """Publish the transitions as `StatusChanges` messages (up to ANNOUNCE_MAX events each) and wait for the
    confirms (with no gateway replica listening, the broker drops them: nobody is watching)."""
    events = [
        StatusEvent(instance_id=t.instance_id, upload_id=t.upload_id, owner=t.owner, status=t.status, reason=t.reason)
        for t in transitions
    ]
    messages = [StatusChanges(events=events[i : i + ANNOUNCE_MAX]) for i in range(0, len(events), ANNOUNCE_MAX)]
    await asyncio.gather(*(publish(broker.topology.events, message, "", mandatory=False) for message in messages))


def result_store(broker: Broker) -> Callable[[list[ProcessResult]], Awaitable[None]]:
    """Store a batch of results, then announce the instances now final."""

    async def store(results: list[ProcessResult]) -> None:
        transitions = await pipeline_store.save_results(results)
        await announce(broker, transitions)
        log.info("result_batch_stored", size=len(results), final=len(transitions))

    return store


async def apply_moves(broker: Broker, moves: Mapping[InstanceStatus, Collection[str]]) -> int:
    """Move instances forward in one transaction, then announce the moves made; how many moved."""
    moved = await pipeline_store.advance_statuses(moves)
    await announce(broker, moved)
    return len(moved)


def status_store(broker: Broker) -> Callable[[list[StatusEvent]], Awaitable[None]]:
    """Apply a batch of workers' status events; announce the moves it made, once committed."""

    async def store(items: list[StatusEvent]) -> None:
        moves: dict[InstanceStatus, set[str]] = {}
        for item in items:
            if item.status.rank < InstanceStatus.DONE.rank:
                moves.setdefault(item.status, set()).add(item.instance_id)
        moved = await apply_moves(broker, moves)
        log.debug("status_batch_applied", size=len(items), moved=moved)

    return store


def queued_store(broker: Broker) -> Callable[[list[ProcessJob]], Awaitable[None]]:
    """Move the instances of a batch of job copies to `queued` (their jobs are durable); announce the moves."""

    async def store(jobs: list[ProcessJob]) -> None:
        moved = await apply_moves(broker, {InstanceStatus.QUEUED: {job.instance_id for job in jobs}})
        log.debug("job_copies_applied", size=len(jobs), moved=moved)

    return store


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
    """Run the four consumers for the app's lifetime; on stop, stop consuming and let the last batches finish."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        broker = app[broker_key]
        topology = broker.topology
        results: Batcher[ProcessResult] = Batcher(
            "results", result_store(broker), settings.results_batch_size, settings.results_batch_ms
        )
        statuses: Batcher[StatusEvent] = Batcher("statuses", status_store(broker), STATUS_PREFETCH, STATUS_BATCH_MS)
        copies: Batcher[ProcessJob] = Batcher("job_copies", queued_store(broker), STATUS_PREFETCH, STATUS_BATCH_MS)

        async def handle_result(result: ProcessResult, _: AbstractIncomingMessage) -> None:
            await results.submit(result)

        async def handle_status(event: StatusEvent, _: AbstractIncomingMessage) -> None:
            await statuses.submit(event)

        async def handle_job_copy(job: ProcessJob, _: AbstractIncomingMessage) -> None:
            await copies.submit(job)

        batchers = (results, statuses, copies)
        tasks = [asyncio.create_task(batcher.run()) for batcher in batchers]
        results_channel = await open_channel(broker.connection, prefetch=settings.results_batch_size)
        status_channel = await open_channel(broker.connection, prefetch=STATUS_PREFETCH)
        queued_channel = await open_channel(broker.connection, prefetch=STATUS_PREFETCH)
        dead_channel = await open_channel(broker.connection, prefetch=DEADLETTER_PREFETCH)
        consumers = [
            await _consume_on(results_channel, topology.results, handle_result, ProcessResult),
            await _consume_on(status_channel, topology.status, handle_status, StatusEvent),
            await _consume_on(queued_channel, topology.queued, handle_job_copy, ProcessJob),
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
                await asyncio.wait_for(
                    asyncio.gather(*(batcher.idle.wait() for batcher in batchers)), settings.shutdown_timeout
                )
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for channel in (results_channel, status_channel, queued_channel, dead_channel):
                await channel.close()

    return context
