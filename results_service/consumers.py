"""results_service's consumers: results in batches, status changes in batches, and dead-lettered jobs.

- `P.results`: results are collected for up to `results_batch_size` messages or `results_batch_ms`,
  stored in one transaction, and each message is acked only after that commit; the done/failed
  status events are published after the commit (so a client that sees `done` can read the result).
- `P.status`: the workers' status events (`processing`), applied in batches (one UPDATE per target
  status, forward only) and announced on `P.events` once committed. Late or repeated ones change
  nothing. `queued` comes from ingest's registration calls (`registration_batch`); final states
  only from results and dead letters, never from here.
- `P.deadletters`: a job the broker gave up on (delivery limit, rejection) fails its instance with a
  reason a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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


def status_store(broker: Broker) -> Callable[[list[StatusEvent]], Awaitable[None]]:
    """Apply a batch of workers' status events; announce the moves it made, once committed."""

    async def store(items: list[StatusEvent]) -> None:
        moves: dict[InstanceStatus, set[str]] = {}
        for item in items:
            if item.status.rank < InstanceStatus.DONE.rank:
                moves.setdefault(item.status, set()).add(item.instance_id)
        moved = await pipeline_store.advance_statuses(moves)
        await announce(broker, moved)
        log.debug("status_batch_applied", size=len(items), moved=len(moved))

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


def died_in(headers: Mapping[str, Any]) -> str | None:
    """The queue a dead-lettered message died in (from the broker's `x-death` header), if known."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        queue = deaths[0].get("queue")
        return str(queue) if queue is not None else None
    return None


def deadletter_handler(broker: Broker, delivery_limit: int) -> Callable[[ProcessJob, AbstractIncomingMessage], Any]:
    """Consumer handler of `P.deadletters`: fail the job's instance with the reason (forward-only).

    A copy of a job dead in `P.status` (earlier releases copied every job there; on upgrade the
    copies left in it are rejected) says nothing about processing: the job itself is still queued,
    so the instance is left alone.
    """
    status_queue = broker.topology.names.status

    async def handle_dead_job(job: ProcessJob, message: AbstractIncomingMessage) -> None:
        if died_in(message.headers or {}) == status_queue:
            log.warning("job_copy_dead_lettered", instance_id=job.instance_id, queue=status_queue)
            return
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
    """Run the three consumers for the app's lifetime; on stop, stop consuming and let the last batches finish."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        broker = app[broker_key]
        topology = broker.topology
        results: Batcher[ProcessResult] = Batcher(
            "results", result_store(broker), settings.results_batch_size, settings.results_batch_ms
        )
        statuses: Batcher[StatusEvent] = Batcher("statuses", status_store(broker), STATUS_PREFETCH, STATUS_BATCH_MS)

        async def handle_result(result: ProcessResult, _: AbstractIncomingMessage) -> None:
            await results.submit(result)

        async def handle_status(event: StatusEvent, _: AbstractIncomingMessage) -> None:
            await statuses.submit(event)

        tasks = [asyncio.create_task(results.run()), asyncio.create_task(statuses.run())]
        results_channel = await open_channel(broker.connection, prefetch=settings.results_batch_size)
        status_channel = await open_channel(broker.connection, prefetch=STATUS_PREFETCH)
        dead_channel = await open_channel(broker.connection, prefetch=DEADLETTER_PREFETCH)
        consumers = [
            await _consume_on(results_channel, topology.results, handle_result, ProcessResult),
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
                await asyncio.wait_for(
                    asyncio.gather(results.idle.wait(), statuses.idle.wait()), settings.shutdown_timeout
                )
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for channel in (results_channel, status_channel, dead_channel):
                await channel.close()

    return context
