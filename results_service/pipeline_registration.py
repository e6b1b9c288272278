"""Registering uploaded files: the idempotent writes behind `POST /internal/uploads/{id}/files` (one file)
and `POST /internal/registrations` (a batch of files gathered by ingest, `register_files`).

A file is keyed by (upload, index) and an instance by (owner, sha256). The usual case, a file
seen for the first time, is one SQL statement in one transaction (one round trip between BEGIN
and COMMIT): it inserts the upload if new, the instance if new (`ON CONFLICT DO NOTHING` on the
unique (owner, sha256), so concurrent twins make one instance), and the file pointing at the new
or the first instance. Anything unusual — a replay of the same (upload, index), an upload of
another owner, or a twin committed while this statement waited for it (not in its snapshot) —
rolls that transaction back and takes the careful path below, which reads what is there.
Either way the upload's audit records (`upload_audit`) are written in the same transaction, so a
registered file is never missing from the audit trail and no audit call is needed. A batch runs
its files' statements in one transaction, so it pays one commit; if any of them is unusual, the
batch is rolled back and every file is registered on its own as above.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncpg.exceptions import DeadlockDetectedError
from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from common.app.logs import get_logger
from common.app.problems import Conflict
from common.messaging.messages import InstanceStatus
from common.schemas.instances import FileRegistered, FileRegistration, FileStatus
from results_service.models.pipeline import Instance, Upload, UploadFile
from results_service.upload_audit import AUDIT_CTE, UploadAuditContext, append_upload_records

log = get_logger(__name__)

DICOM_COLUMNS = (
    "sop_class_uid",
    "sop_instance_uid",
    "study_instance_uid",
    "series_instance_uid",
    "modality",
    "transfer_syntax_uid",
    "patient_name",
    "patient_id",
    "study_date",
    "number_of_frames",
    "rows",
    "columns",
)
# $1 upload id, $2 owner, $3 index, $4 name, $5 sha256, $6 size, $7 reason, $8..$10 the audit context
# (AUDIT_CTE), then for an accepted file $11 the new instance id and $12..$23 the DICOM_COLUMNS in that order.
# A file's upload row is made by its first file. Only module constants are put into the text (noqa S608);
# every value is a parameter.
ACCEPTED_SQL = f"""WITH new_upload AS (
    INSERT INTO uploads (id, owner, created_at) VALUES ($1, $2, now()) ON CONFLICT (id) DO NOTHING RETURNING owner
), new_instance AS (
    INSERT INTO instances (
        id, owner, upload_id, sha256, size, file_name, status, created_at, updated_at,
        sop_class_uid, sop_instance_uid, study_instance_uid, series_instance_uid, modality, transfer_syntax_uid,
        patient_name, patient_id, study_date, number_of_frames, "rows", "columns"
    )
    VALUES (
        $11, $2, $1, $5, $6, $4, 'received', now(), now(),
        $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23
    )
    ON CONFLICT (owner, sha256) DO NOTHING
    RETURNING id, status
), instance AS (
    SELECT id, status, true AS created FROM new_instance
    UNION ALL
    SELECT id, status, false FROM instances WHERE owner = $2 AND sha256 = $5
    LIMIT 1
), new_file AS (
    INSERT INTO upload_files (upload_id, "index", name, sha256, size, status, reason, instance_id, created_at)
    SELECT $1, $3, $4, $5, $6, CASE WHEN created THEN 'accepted' ELSE 'duplicate' END, $7, id, now() FROM instance
    ON CONFLICT (upload_id, "index") DO NOTHING
    RETURNING status, instance_id
){AUDIT_CTE}
SELECT (SELECT owner FROM new_upload UNION ALL SELECT owner FROM uploads WHERE id = $1 LIMIT 1) AS upload_owner,
    (SELECT status FROM new_file) AS file_status,
    (SELECT instance_id FROM new_file) AS instance_id,
    (SELECT status FROM instance) AS instance_status"""  # noqa: S608

REJECTED_SQL = f"""WITH new_upload AS (
    INSERT INTO uploads (id, owner, created_at) VALUES ($1, $2, now()) ON CONFLICT (id) DO NOTHING RETURNING owner
), new_file AS (
    INSERT INTO upload_files (upload_id, "index", name, sha256, size, status, reason, instance_id, created_at)
    VALUES ($1, $3, $4, $5, $6, 'rejected', $7, NULL, now())
    ON CONFLICT (upload_id, "index") DO NOTHING
    RETURNING status, instance_id
){AUDIT_CTE}
SELECT (SELECT owner FROM new_upload UNION ALL SELECT owner FROM uploads WHERE id = $1 LIMIT 1) AS upload_owner,
    (SELECT status FROM new_file) AS file_status,
    NULL::varchar AS instance_id,
    NULL::varchar AS instance_status"""  # noqa: S608


@dataclass(frozen=True)
class Registration:
    """The answer to one registration and whether this call created the file's row (201) or found it (200)."""

    body: FileRegistered
    created: bool


RegistrationRequest = tuple[str, FileRegistration, UploadAuditContext]
"""(upload id, the file, who asked): one file of a batch."""


class _Unusual(Exception):
    """The one-statement path met something it does not decide: roll back, take the careful path."""


async def register_file(
    upload_id: str, registration: FileRegistration, context: UploadAuditContext | None = None
) -> Registration:
    """Record one file of an upload and its audit records; accepted bytes the owner already has answer
    `duplicate` (the first id)."""
    context = context or UploadAuditContext()
    try:
        return await _register_in_one_statement(upload_id, registration, context)
    except _Unusual:
        return await _register_carefully(upload_id, registration, context)


def _parameters(upload_id: str, registration: FileRegistration, context: UploadAuditContext) -> list[Any]:
    common = [
        upload_id,
        registration.owner,
        registration.index,
        registration.name,
        registration.sha256,
        registration.size,
        registration.reason,
        *context.parameters(),
    ]
    if registration.outcome is FileStatus.REJECTED:
        return common
    assert registration.dicom is not None  # validated by FileRegistration
    dicom = registration.dicom.model_dump()
    return [*common, uuid.uuid4().hex, *(dicom[column] for column in DICOM_COLUMNS)]


async def register_files(items: Sequence[RegistrationRequest]) -> list[Registration | Conflict]:
    """Record many files (of any uploads) with one commit: each file's one statement, all in one
    transaction. Returns the answers, in order.

    If any file is unusual (see the module docstring), or the batch deadlocks with a concurrent one on
    twin instances, the whole transaction is rolled back and every file takes `register_file` on its
    own, so each answer is exactly what the single-file call gives; a file of another owner's upload
    is answered with its Conflict, the others still registered.
    """
    try:
        async with connections.get("default").acquire_connection() as connection, connection.transaction():
            return [await _register_on(connection, *item) for item in items]
    except (_Unusual, DeadlockDetectedError) as exc:
        log.info("registration_batch_split", size=len(items), why=type(exc).__name__)
    answers: list[Registration | Conflict] = []
    for item in items:
        try:
            answers.append(await register_file(*item))
        except Conflict as exc:
            answers.append(exc)
    return answers


async def _register_in_one_statement(
    upload_id: str, registration: FileRegistration, context: UploadAuditContext
) -> Registration:
    async with connections.get("default").acquire_connection() as connection, connection.transaction():
        return await _register_on(connection, upload_id, registration, context)


async def _register_on(
    connection: Any, upload_id: str, registration: FileRegistration, context: UploadAuditContext
) -> Registration:
    """The one statement, inside the caller's transaction; raises _Unusual (which rolls it back) when it
    did not decide the file."""
    sql = REJECTED_SQL if registration.outcome is FileStatus.REJECTED else ACCEPTED_SQL
    row = await connection.fetchrow(sql, *_parameters(upload_id, registration, context))
    if row["upload_owner"] != registration.owner or row["file_status"] is None:
        raise _Unusual
    if registration.outcome is FileStatus.ACCEPTED and row["instance_id"] is None:
        raise _Unusual
    body = FileRegistered(
        instance_id=row["instance_id"],
        status=FileStatus(row["file_status"]),
        instance_status=InstanceStatus(row["instance_status"]) if row["instance_status"] else None,
        reason=registration.reason,
    )
    return Registration(body, created=True)


async def _answer(file: UploadFile) -> FileRegistered:
    instance = await Instance.get_or_none(id=file.instance_id) if file.instance_id is not None else None
    return FileRegistered(
        instance_id=instance.id if instance else None,
        status=file.status,
        instance_status=instance.status if instance else None,
        reason=file.reason,
    )


async def _register_carefully(
    upload_id: str, registration: FileRegistration, context: UploadAuditContext
) -> Registration:
    """Step by step: a replay answers what was recorded; a concurrent first registration wins once."""
    existing = await UploadFile.get_or_none(upload_id=upload_id, index=registration.index)
    if existing is None:
        try:
            async with in_transaction():
                upload_created = await _claim_upload(upload_id, registration.owner)
                file = await _create_file(upload_id, registration)
                await append_upload_records(
                    context,
                    upload_id=upload_id,
                    owner=registration.owner,
                    index=registration.index,
                    status=FileStatus(file.status),
                    instance_id=file.instance_id,
                    upload_created=upload_created,
                )
            return Registration(await _answer(file), created=True)
        except IntegrityError:  # the same (upload, index) registered concurrently: answer what won
            existing = await UploadFile.get(upload_id=upload_id, index=registration.index)
    upload = await Upload.get(id=upload_id)
    if upload.owner != registration.owner:
        raise Conflict(f"Upload {upload_id} belongs to another owner.")
    return Registration(await _answer(existing), created=False)


async def _claim_upload(upload_id: str, owner: str) -> bool:
    """The upload is the owner's (made now: True, or found); someone else's is a conflict."""
    upload, created = await Upload.get_or_create(id=upload_id, defaults={"owner": owner})
    if upload.owner != owner:
        raise Conflict(f"Upload {upload_id} belongs to another owner.")
    return bool(created)


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
