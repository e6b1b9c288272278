"""The reconciler: no instance stays unfinished because a process, a message or a queue was lost.

An instance is `received` from its registration until results_service consumes the broker's copy
of its job (`P.queued`), `queued` until a worker says `processing`, and `processing` until its result
or its dead letter arrives. Any of those messages can be lost to a fault the broker cannot see (ingest
killed between commit and publish, a queue deleted by an operator, a broker node lost with its
replicas). So every `reconcile_interval_seconds` each replica looks for instances unfinished for
longer than their bound (`reconcile_after_seconds` for `received`, `reconcile_unfinished_after_seconds`
for `queued` and `processing`), and

- publishes their jobs again, confirmed, with ingest's message id and routing (`common.messaging.jobs`),
  counting the attempt and bumping `updated_at` in the same transaction, so each attempt waits a bound;
- fails those it has already republished `reconcile_max_attempts` times, with a reason that says what
  to check, and announces it like any other final status.

A wait that a backlog explains is not a loss: while the queue an instance waits in has ready messages
(`P.queued` for `received`, its jobs queue for `queued`/`processing`) those instances are left alone,
so a long batch behind a slow pool is never re-queued or failed for its length.

`FOR UPDATE SKIP LOCKED` keeps two replicas from claiming the same row in one round; a publish that
fails rolls the claim (and the attempt) back for the next round. A job published twice is harmless:
processing keeps one result per instance and pipeline version, and statuses only move forward.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractConnection, AbstractExchange
from aiohttp import web
from tortoise import connections

from common.app.logs import get_logger
from common.messaging.broker import Broker, Topology, broker_key, read_queue
from common.messaging.jobs import build_job, publish_job
from common.messaging.messages import InstanceStatus, ProcessJob
from results_service.consumers import announce
from results_service.pipeline_store import Transition
from results_service.settings import ResultsSettings

log = get_logger(__name__)

CLAIM_LIMIT = 500
PUBLISH_TIMEOUT = 30.0

# Which instances are overdue. $1 received bound (s), $2 unfinished bound (s), $3 P.queued has a backlog,
# $4/$5 the standard/large jobs queue has a backlog, $6 large_job_bytes (the routing rule of
# common.messaging.jobs.job_routing_key on routing_cost: an estimate larger than it goes to the large queue;
# an instance registered before estimates were stored is routed by its size), $7 the attempt limit.
_OVERDUE = """(
    (status = 'received' AND NOT $3::boolean AND updated_at < now() - make_interval(secs => $1::float8))
    OR (status IN ('queued', 'processing') AND updated_at < now() - make_interval(secs => $2::float8)
        AND NOT (CASE WHEN COALESCE(cost_bytes, size) > $6::bigint THEN $5::boolean ELSE $4::boolean END))
)"""

# Every field of the job is a column of the instance row: the reconciler needs nothing ingest remembered.
_CLAIM_SQL = f"""WITH due AS (
    SELECT id FROM instances WHERE {_OVERDUE} AND reconcile_attempts < $7::int
    ORDER BY updated_at LIMIT $8 FOR UPDATE SKIP LOCKED
)
UPDATE instances SET updated_at = now(), reconcile_attempts = reconcile_attempts + 1
FROM due WHERE instances.id = due.id
RETURNING instances.id, instances.upload_id, instances.owner, instances.sha256, instances.size,
    instances.sop_class_uid, instances.transfer_syntax_uid, instances.cost_bytes"""  # noqa: S608 (constant text; values are bound)

# SET sees the row before the update: the reason names where the instance was stuck.
_FAIL_SQL = f"""WITH due AS (
    SELECT id FROM instances WHERE {_OVERDUE} AND reconcile_attempts >= $7::int
    ORDER BY updated_at LIMIT $8 FOR UPDATE SKIP LOCKED
)
UPDATE instances SET status = 'failed', updated_at = now(),
    reason = CASE WHEN instances.status = 'received' THEN $9 ELSE $10 END
FROM due WHERE instances.id = due.id
RETURNING instances.id, instances.upload_id, instances.owner, instances.reason"""  # noqa: S608 (as above)


@dataclass(frozen=True)
class Bounds:
    """How long an instance may stay unfinished, and how many times its job is published again."""

    received_after: float
    unfinished_after: float
    max_attempts: int
    large_job_bytes: int

    @classmethod
    def of(cls, settings: ResultsSettings) -> Bounds:
        return cls(
            received_after=settings.reconcile_after_seconds,
            unfinished_after=settings.reconcile_unfinished_after_seconds,
            max_attempts=settings.reconcile_max_attempts,
            large_job_bytes=settings.large_job_bytes,
        )

    def reasons(self) -> tuple[str, str]:
        """What a person reads on an instance the reconciler failed: stuck `received`, stuck later."""
        attempts = f"{self.max_attempts} time{'s' if self.max_attempts != 1 else ''}"
        received = (
            f"Its processing job could not be queued: it was published again {attempts}, "
            f"{_duration(self.received_after)} apart, and the broker never took it. "
            "Check that RabbitMQ is up (the services' /readyz), then upload the file again."
        )
        unfinished = (
            f"Processing never finished: its job was queued again {attempts}, "
            f"{_duration(self.unfinished_after)} apart, with no result. Check that processor_service is "
            "running and ready (/readyz) and look at `dicomflow jobs parked`, then upload the file again."
        )
        return received, unfinished


@dataclass(frozen=True)
class Backlog:
    """Which queues have ready messages now: a wait in one of them is explained, not lost."""

    copies: bool = False
    standard: bool = False
    large: bool = False


@dataclass
class Round:
    """What one round did."""

    republished: list[ProcessJob] = field(default_factory=list)
    failed: list[Transition] = field(default_factory=list)


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} seconds"


def _job(row: Any) -> ProcessJob:
    """The instance's job as ingest built it: the estimate is the one stored when it was registered."""
    return build_job(
        instance_id=row["id"],
        upload_id=row["upload_id"],
        owner=row["owner"],
        sha256=row["sha256"],
        size=row["size"],
        sop_class_uid=row["sop_class_uid"],
        transfer_syntax_uid=row["transfer_syntax_uid"],
        cost_bytes=row["cost_bytes"],
    )


async def read_backlog(connection: AbstractConnection, topology: Topology) -> Backlog:
    """Whether `P.queued` and the two jobs queues have ready messages now."""
    names = topology.names
    copies, standard, large = [
        (await read_queue(connection, name))[0] > 0 for name in (names.queued, names.jobs, names.jobs_large)
    ]
    return Backlog(copies=copies, standard=standard, large=large)


async def reconcile_round(
    exchange: AbstractExchange, bounds: Bounds, backlog: Backlog, *, limit: int = CLAIM_LIMIT
) -> Round:
    """Fail the overdue instances out of attempts, then publish again the jobs of up to `limit` others.

    Raises (claiming nothing) if the broker did not confirm every job; the failures of the same round
    are committed before, in their own transaction, and returned for announcing."""
    args: list[Any] = [
        bounds.received_after,
        bounds.unfinished_after,
        backlog.copies,
        backlog.standard,
        backlog.large,
        bounds.large_job_bytes,
        bounds.max_attempts,
        limit,
    ]
    outcome = Round()
    async with connections.get("default").acquire_connection() as connection:
        async with connection.transaction():
            rows = await connection.fetch(_FAIL_SQL, *args, *bounds.reasons())
        outcome.failed = [
            Transition(row["id"], row["upload_id"], row["owner"], InstanceStatus.FAILED, row["reason"]) for row in rows
        ]
        async with connection.transaction():
            rows = await connection.fetch(_CLAIM_SQL, *args)
            jobs = [_job(row) for row in rows]
            publishes = (publish_job(exchange, job, bounds.large_job_bytes) for job in jobs)
            await asyncio.wait_for(asyncio.gather(*publishes), PUBLISH_TIMEOUT)
    outcome.republished = jobs
    for job in jobs:
        log.info("job_republished", instance_id=job.instance_id, message_id=job.message_id)
    for transition in outcome.failed:
        log.warning("instance_failed_by_reconciler", instance_id=transition.instance_id, reason=transition.reason)
    return outcome


async def reconcile_once(broker: Broker, bounds: Bounds) -> Round:
    """Rounds until one comes back short: read the backlogs, fail and republish, announce the failures."""
    total = Round()
    while True:
        backlog = await asyncio.wait_for(read_backlog(broker.connection, broker.topology), PUBLISH_TIMEOUT)
        outcome = await reconcile_round(broker.topology.exchange, bounds, backlog)
        if outcome.failed:
            await announce(broker, outcome.failed)
        total.republished += outcome.republished
        total.failed += outcome.failed
        if len(outcome.republished) < CLAIM_LIMIT and len(outcome.failed) < CLAIM_LIMIT:
            return total


async def reconcile_forever(broker: Broker, settings: ResultsSettings) -> None:
    """Reconcile every interval until cancelled."""
    bounds = Bounds.of(settings)
    while True:
        await asyncio.sleep(settings.reconcile_interval_seconds)
        try:
            await reconcile_once(broker, bounds)
        except Exception:  # the task's boundary: a round that failed (database or broker down) is retried next
            log.exception("reconcile_failed")


def reconciler_context(settings: ResultsSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs the reconciler in the background for the app's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(reconcile_forever(app[broker_key], settings))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context
