"""results_service's consumers: results in batches, status changes and job copies in batches, dead-lettered jobs.

- `P.results`: results are collected for up to `results_batch_size` messages or `results_batch_ms`,
  stored in one transaction, and each message is acked only after that commit; the done/failed
  status events are published after the commit (so a client that sees `done` can read the result).
- `P.queued`: the broker's copy of every job published (by ingest, or by the reconciler): the job
  is durable, so its instance moves to `queued`. Applied in batches, forward only (a late copy
  never moves an instance back), announced on `P.events` once committed.
- `P.status`: the workers' status events (`processing`), applied the same way. Late or repeated
  ones change nothing; final states come only from results and dead letters, never from here.
- `P.deadletters`: whatever the broker gave up on (delivery limit, rejection), read by its AMQP `type`
  (`results_service.dead_letters`): a job fails its instance with a reason a person can act on, a
  result is stored like any other, a status event is applied forward only; anything else is logged
  and dropped here (it stays in `P.parked` for operators).

Every consumer has its own channel on the service's robust connection and declares its queue there
(`common.messaging.consuming.ConsumerSet`), so all four are back after a broker restart; the set is
one of the app's readiness checks. Outages hold the deliveries and retry (`common.messaging.faults`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping

from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from common.app.logs import get_logger
from common.app.web import readiness_checks_key
from common.messaging.broker import Broker, broker_key, publish
from common.messaging.consuming import ConsumerSet
from common.messaging.messages import InstanceStatus, ProcessJob, ProcessResult, StatusChanges, StatusEvent
from results_service import pipeline_store
from results_service.batching import Batcher
from results_service.dead_letters import DeadLetters
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


def consumers_context(settings: ResultsSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Run the four consumers for the app's lifetime; on stop, stop consuming and let the last batches finish."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        broker = app[broker_key]
        names = broker.topology.names
        delay = settings.retry_max_delay
        results: Batcher[ProcessResult] = Batcher(
            "results", result_store(broker), settings.results_batch_size, settings.results_batch_ms, max_delay=delay
        )
        statuses: Batcher[StatusEvent] = Batcher(
            "statuses", status_store(broker), STATUS_PREFETCH, STATUS_BATCH_MS, max_delay=delay
        )
        copies: Batcher[ProcessJob] = Batcher(
            "job_copies", queued_store(broker), STATUS_PREFETCH, STATUS_BATCH_MS, max_delay=delay
        )

        async def handle_result(result: ProcessResult, _: AbstractIncomingMessage) -> None:
            await results.submit(result)

        async def handle_status(event: StatusEvent, _: AbstractIncomingMessage) -> None:
            await statuses.submit(event)

        async def handle_job_copy(job: ProcessJob, _: AbstractIncomingMessage) -> None:
            await copies.submit(job)

        batchers = (results, statuses, copies)
        tasks = [asyncio.create_task(batcher.run()) for batcher in batchers]
        consumers = ConsumerSet(broker.connection, settings, "results_service")
        dead_letters = DeadLetters(
            settings.job_delivery_limit, functools.partial(announce, broker), result_store(broker), status_store(broker)
        )
        try:
            await consumers.add_typed(names.results, handle_result, ProcessResult, prefetch=settings.results_batch_size)
            await consumers.add_typed(names.status, handle_status, StatusEvent, prefetch=STATUS_PREFETCH)
            await consumers.add_typed(names.queued, handle_job_copy, ProcessJob, prefetch=STATUS_PREFETCH)
            await consumers.add(names.deadletters, dead_letters.handle, prefetch=DEADLETTER_PREFETCH)
            app[readiness_checks_key].append(consumers.ready)
            yield
        finally:
            with contextlib.suppress(ValueError):
                app[readiness_checks_key].remove(consumers.ready)
            await consumers.stop_consuming()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(batcher.idle.wait() for batcher in batchers)), settings.shutdown_timeout
                )
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await consumers.close()

    return context
