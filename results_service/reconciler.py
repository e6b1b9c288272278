"""The reconciler: no instance stays `received` after any one process dies, whoever dies when.

An instance is `received` from its registration until results_service consumes the broker's copy
of its job (`P.queued`). If ingest dies after the registration committed but before the broker had
the job (or the broker refused it), nobody else would ever publish it. So every
`reconcile_interval_seconds` each replica claims the instances `received` for longer than
`reconcile_after_seconds`, publishes their jobs again, confirmed, with the message id and routing
of ingest's (`common.messaging.jobs`), and bumps their `updated_at` in the same transaction, so a
republished instance waits another bound before the next attempt. `FOR UPDATE SKIP LOCKED` keeps two
replicas from claiming the same row in one round; a publish that fails rolls the claim back for the
next round. A job published twice is harmless: processing keeps one result per instance and
pipeline version, and the copy moves the instance forward only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aio_pika.abc import AbstractExchange
from aiohttp import web
from tortoise import connections

from common.app.logs import get_logger
from common.messaging.broker import broker_key
from common.messaging.jobs import job_message_id, publish_job
from common.messaging.messages import InstanceStatus, ProcessJob
from results_service.settings import ResultsSettings

log = get_logger(__name__)

CLAIM_LIMIT = 500
PUBLISH_TIMEOUT = 30.0

# Every field of the job is a column of the instance row: the reconciler needs nothing ingest remembered.
_CLAIM_SQL = """WITH due AS (
    SELECT id FROM instances
    WHERE status = $1 AND updated_at < now() - make_interval(secs => $2)
    ORDER BY updated_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE instances SET updated_at = now() FROM due WHERE instances.id = due.id
RETURNING instances.id, instances.upload_id, instances.owner, instances.sha256, instances.size,
    instances.sop_class_uid, instances.transfer_syntax_uid"""


def _job(row: Any) -> ProcessJob:
    return ProcessJob(
        message_id=job_message_id(row["id"]),
        instance_id=row["id"],
        upload_id=row["upload_id"],
        owner=row["owner"],
        sha256=row["sha256"],
        size=row["size"],
        sop_class_uid=row["sop_class_uid"],
        transfer_syntax_uid=row["transfer_syntax_uid"],
    )


async def republish_stale(
    exchange: AbstractExchange, *, after_seconds: float, large_job_bytes: int, limit: int = CLAIM_LIMIT
) -> list[ProcessJob]:
    """One round: publish again the jobs of up to `limit` instances `received` for longer than `after_seconds`;
    returns the jobs published (raises, claiming nothing, if the broker did not confirm them all)."""
    async with connections.get("default").acquire_connection() as connection, connection.transaction():
        rows = await connection.fetch(_CLAIM_SQL, InstanceStatus.RECEIVED.value, after_seconds, limit)
        jobs = [_job(row) for row in rows]
        publishes = (publish_job(exchange, job, large_job_bytes) for job in jobs)
        await asyncio.wait_for(asyncio.gather(*publishes), PUBLISH_TIMEOUT)
    for job in jobs:
        log.info("job_republished", instance_id=job.instance_id, message_id=job.message_id)
    return jobs


async def reconcile_forever(exchange: AbstractExchange, settings: ResultsSettings) -> None:
    """Run a round every interval (at once again while rounds come back full) until cancelled."""
    while True:
        await asyncio.sleep(settings.reconcile_interval_seconds)
        try:
            full = True
            while full:
                jobs = await republish_stale(
                    exchange, after_seconds=settings.reconcile_after_seconds, large_job_bytes=settings.large_job_bytes
                )
                full = len(jobs) == CLAIM_LIMIT
        except Exception:  # the task's boundary: a round that failed (database or broker down) is retried next
            log.exception("reconcile_failed")


def reconciler_context(settings: ResultsSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs the reconciler in the background for the app's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(reconcile_forever(app[broker_key].topology.exchange, settings))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context
