"""The write side of the pipeline: registering uploaded files, moving instances forward, storing results.

Every write here is idempotent, because every caller (HTTP retries, redelivered AMQP messages)
may repeat itself: a file is keyed by (upload, index), an instance by (owner, sha256), a result by
(instance, pipeline version); an instance's status only ever moves forward.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from common.logs import get_logger
from common.messages import InstanceStatus, ProcessResult
from common.problems import Conflict
from common.schemas.instances import FileRegistered, FileRegistration, FileStatus
from results_service.models.pipeline import Instance, Result, Upload, UploadFile

log = get_logger(__name__)


@dataclass(frozen=True)
class Registration:
    """The answer to one registration and whether this call created the file's row (201) or found it (200)."""

    body: FileRegistered
    created: bool


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


async def _answer(file: UploadFile) -> FileRegistered:
    instance = await Instance.get_or_none(id=file.instance_id) if file.instance_id is not None else None
    return FileRegistered(
        instance_id=instance.id if instance else None,
        status=file.status,
        instance_status=instance.status if instance else None,
        reason=file.reason,
    )


async def register_file(upload_id: str, registration: FileRegistration) -> Registration:
    """Record one file of an upload; accepted bytes the owner already has answer `duplicate` (the first id)."""
    existing = await UploadFile.get_or_none(upload_id=upload_id, index=registration.index)
    if existing is None:
        try:
            async with in_transaction():
                await _claim_upload(upload_id, registration.owner)
                file = await _create_file(upload_id, registration)
            return Registration(await _answer(file), created=True)
        except IntegrityError:  # the same (upload, index) registered concurrently: answer what won
            existing = await UploadFile.get(upload_id=upload_id, index=registration.index)
    upload = await Upload.get(id=upload_id)
    if upload.owner != registration.owner:
        raise Conflict(f"Upload {upload_id} belongs to another owner.")
    return Registration(await _answer(existing), created=False)


async def _claim_upload(upload_id: str, owner: str) -> None:
    upload, _ = await Upload.get_or_create(id=upload_id, defaults={"owner": owner})
    if upload.owner != owner:
        raise Conflict(f"Upload {upload_id} belongs to another owner.")


async def _create_file(upload_id: str, registration: FileRegistration) -> UploadFile:
    fields: dict[str, Any] = {
        "upload_id": upload_id,
        "index": registration.index,
        "name": registration.name,
        "sha256": registration.sha256,
        "size": registration.size,
        "reason": registration.reason,
    }
    if registration.outcome is FileStatus.REJECTED:
        return await UploadFile.create(status=FileStatus.REJECTED, **fields)
    instance, created = await _instance_for(upload_id, registration)
    status = FileStatus.ACCEPTED if created else FileStatus.DUPLICATE
    return await UploadFile.create(status=status, instance=instance, **fields)


async def _instance_for(upload_id: str, registration: FileRegistration) -> tuple[Instance, bool]:
    """The owner's instance of these bytes: a new one, or the first one (unique (owner, sha256))."""
    dicom = registration.dicom
    assert dicom is not None and registration.sha256 is not None and registration.size is not None  # validated
    found = await Instance.get_or_none(owner=registration.owner, sha256=registration.sha256)
    if found is not None:
        return found, False
    try:
        async with in_transaction():  # a savepoint: a concurrent twin makes only this insert fail
            instance = await Instance.create(
                id=uuid.uuid4().hex,
                owner=registration.owner,
                upload_id=upload_id,
                sha256=registration.sha256,
                size=registration.size,
                file_name=registration.name,
                status=InstanceStatus.RECEIVED,
                **dicom.model_dump(),
            )
        return instance, True
    except IntegrityError:
        return await Instance.get(owner=registration.owner, sha256=registration.sha256), False


async def apply_status(instance_id: str, status: InstanceStatus, reason: str | None = None) -> bool:
    """Move an instance forward to `status`; False (nothing changed) for a late or duplicate event."""
    changed = await Instance.filter(id=instance_id, status__in=earlier_statuses(status)).update(
        status=status, reason=reason, updated_at=datetime.now(UTC)
    )
    return changed > 0


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
