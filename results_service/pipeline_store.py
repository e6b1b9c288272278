"""The write side of the pipeline after registration (`pipeline_registration`): moving instances forward,
storing results.

Every write here is idempotent, because every caller (redelivered AMQP messages) may repeat itself:
a result is keyed by (instance, pipeline version); an instance's status only ever moves forward.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise import connections
from tortoise.transactions import in_transaction

from common.app.logs import get_logger
from common.messaging.messages import InstanceStatus, ProcessResult
from results_service.models.pipeline import Instance, Result

log = get_logger(__name__)


@dataclass(frozen=True)
class Transition:
    """An instance that moved to a new status in a committed transaction (to be announced)."""

    instance_id: str
    upload_id: str
    owner: str
    status: InstanceStatus
    reason: str | None


def earlier_statuses(new: InstanceStatus) -> list[InstanceStatus]:
    """The statuses an instance may move to `new` from (forward only)."""
    return [status for status in InstanceStatus if status.can_move_to(new)]


async def apply_status(instance_id: str, status: InstanceStatus, reason: str | None = None) -> bool:
    """Move an instance forward to `status`; False (nothing changed) for a late or duplicate event."""
    changed = await Instance.filter(id=instance_id, status__in=earlier_statuses(status)).update(
        status=status, reason=reason, updated_at=datetime.now(UTC)
    )
    return changed > 0


_ADVANCE_SQL = """UPDATE instances SET status = $1, reason = NULL, updated_at = now()
WHERE id = ANY($2::varchar[]) AND status = ANY($3::varchar[])
RETURNING id, upload_id, owner"""


async def advance_statuses(moves: Mapping[InstanceStatus, Collection[str]]) -> list[Transition]:
    """Move many instances forward at once (earlier statuses first), in one transaction; return those that moved.

    Late or repeated moves change nothing; ids are sorted so concurrent batches lock rows in one order.
    """
    moved: list[Transition] = []
    async with connections.get("default").acquire_connection() as connection, connection.transaction():
        for status in sorted(moves, key=lambda s: s.rank):
            if not moves[status]:
                continue
            earlier = [s.value for s in earlier_statuses(status)]
            rows = await connection.fetch(_ADVANCE_SQL, status.value, sorted(set(moves[status])), earlier)
            moved += [Transition(row["id"], row["upload_id"], row["owner"], status, None) for row in rows]
    return moved


async def save_results(results: Sequence[ProcessResult]) -> list[Transition]:
    """Store a batch of results in one transaction; return the instances now final, to be announced.

    A result already stored for (instance, pipeline version) is kept (first one wins, like the
    status); results of instances that do not exist are dropped with a warning.
    """
    unique = {(r.instance_id, r.pipeline_version): r for r in results}
    ids = {instance_id for instance_id, _ in unique}
    async with in_transaction():
        known = {str(value) for value in await Instance.filter(id__in=ids).values_list("id", flat=True)}
        for instance_id in ids - known:
            log.warning("result_for_unknown_instance", instance_id=instance_id)
        batch = [r for r in unique.values() if r.instance_id in known]
        await Result.bulk_create([_result_row(r) for r in batch], ignore_conflicts=True)
        done = [r.instance_id for r in batch if r.status is InstanceStatus.DONE]
        if done:
            await Instance.filter(id__in=done, status__in=earlier_statuses(InstanceStatus.DONE)).update(
                status=InstanceStatus.DONE, reason=None, updated_at=datetime.now(UTC)
            )
        for result in batch:
            if result.status is InstanceStatus.FAILED:
                await apply_status(result.instance_id, result.status, result.reason)
        final = await Instance.filter(id__in=[r.instance_id for r in batch]).values(
            "id", "upload_id", "owner", "status", "reason"
        )
    return [_transition(row) for row in final if InstanceStatus(row["status"]).rank == InstanceStatus.DONE.rank]


def _result_row(result: ProcessResult) -> Result:
    return Result(
        instance_id=result.instance_id,
        pipeline_version=result.pipeline_version,
        status=result.status,
        data=result.result.model_dump(mode="json") if result.result is not None else None,
        reason=result.reason,
        message_id=result.message_id,
    )


def _transition(row: dict[str, object]) -> Transition:
    return Transition(
        instance_id=str(row["id"]),
        upload_id=str(row["upload_id"]),
        owner=str(row["owner"]),
        status=InstanceStatus(str(row["status"])),
        reason=None if row["reason"] is None else str(row["reason"]),
    )


async def fail_instance(instance_id: str, reason: str) -> Transition | None:
    """Mark an instance failed (unless already final); the transition to announce, if it moved."""
    if not await apply_status(instance_id, InstanceStatus.FAILED, reason):
        return None
    row = await Instance.get(id=instance_id).values("id", "upload_id", "owner", "status", "reason")
    return _transition(row)
