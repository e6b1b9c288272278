"""Registering uploaded files: the one statement behind `POST /internal/registrations` (`register_files`).

A file is keyed by (upload, index) and an instance by (owner, sha256). Each file is registered by
one SQL statement (`REGISTER_SQL`) that decides every case itself, with no second path:

- the upload's row is inserted by its first file; for the others `ON CONFLICT DO UPDATE` (a no-op
  update) locks and returns the existing row, so its owner is known even when a concurrent
  transaction committed it after this statement's snapshot was taken (`DO NOTHING` would return
  nothing, and a plain read in the same statement would not see it). Another owner's upload makes
  the statement write nothing but the `denied` audit record: the answer is a 409;
- an accepted file's instance is inserted, or the owner's instance of the same bytes is locked and
  returned the same way (a twin committed while this statement waited for it included): one
  instance per (owner, sha256) however many uploads of those bytes arrive at once, the others
  answered `duplicate` with the first one's id;
- the file's row is inserted, or on a replay of (upload, index) the recorded row is returned
  unchanged (no instance is made for a replay, and nothing is recorded);
- `(xmax = 0)` tells a row this statement inserted from one it found, and the upload's audit
  records (`upload_audit.append_records`) are written for what it created, in the same statement.

A batch runs its files' statements in one transaction (one commit), in (owner, sha256) order so
that concurrent batches lock the owner's instances in one order; a deadlock that still happens
(e.g. between replays) rolls the transaction back and the same statements run again. An all-or-nothing
upload (`register_all`) is one such transaction holding every file of the upload, which a file of another
owner's upload rolls back whole.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncpg.exceptions import DeadlockDetectedError
from tortoise import connections

from common.app.logs import get_logger
from common.app.problems import Conflict
from common.dicom.cost import estimate_job_cost
from common.schemas.instances import FileRegistered, FileRegistration, FileStatus
from results_service.upload_audit import REGISTRATION_AUDIT, UploadAuditContext, audit_parameters

log = get_logger(__name__)

DEADLOCK_ATTEMPTS = 3
DICOM_COLUMNS = (
    "sop_class_uid",
    "sop_instance_uid",
    "study_instance_uid",
    "series_instance_uid",
    "modality",
    "transfer_syntax_uid",
    "study_date",
    "number_of_frames",
    "rows",
    "columns",
)
_DICOM_NAMES = ", ".join(f'"{column}"' for column in DICOM_COLUMNS)
_DICOM_VALUES = ", ".join(f"${13 + n}" for n in range(len(DICOM_COLUMNS)))
_COST_VALUE = f"${13 + len(DICOM_COLUMNS)}::bigint"

# $1..$5 the audit parameters (upload id, owner, email, client, correlation id), $6 index, $7 name, $8 sha256,
# $9 size, $10 reason, $11 outcome, $12 the new instance's id, then $13.. the DICOM_COLUMNS in that order
# (NULL for a rejected file), then the job's memory estimate. Only module constants are put into the text;
# every value is a parameter.
REGISTER_SQL = f"""WITH upload AS (
    INSERT INTO uploads (id, owner, created_at) VALUES ($1, $2, now())
    ON CONFLICT (id) DO UPDATE SET owner = uploads.owner
    RETURNING owner = $2 AS mine, xmax = 0 AS created
), instance AS (
    INSERT INTO instances (
        id, owner, upload_id, sha256, size, file_name, status, created_at, updated_at, {_DICOM_NAMES}, cost_bytes
    )
    SELECT $12, $2, $1, $8, $9, $7, 'received', now(), now(), {_DICOM_VALUES}, {_COST_VALUE}
    FROM upload
    WHERE mine AND $11::text = 'accepted'
        AND NOT EXISTS (SELECT FROM upload_files WHERE upload_id = $1 AND "index" = $6)
    ON CONFLICT (owner, sha256) DO UPDATE SET owner = instances.owner
    RETURNING id, xmax = 0 AS created
), file AS (
    INSERT INTO upload_files (upload_id, "index", name, sha256, size, status, reason, instance_id, created_at)
    SELECT $1, $6, $7, $8, $9,
        CASE WHEN instance.created THEN 'accepted' WHEN instance.id IS NOT NULL THEN 'duplicate' ELSE 'rejected' END,
        $10, instance.id, now()
    FROM upload LEFT JOIN instance ON true
    WHERE mine
    ON CONFLICT (upload_id, "index") DO UPDATE SET name = upload_files.name
    RETURNING status, reason, instance_id, xmax = 0 AS created
), audit AS (
    {REGISTRATION_AUDIT}
)
SELECT upload.mine, file.created, file.status, file.reason, file.instance_id FROM upload LEFT JOIN file ON true"""  # noqa: S608


@dataclass(frozen=True)
class Registration:
    """The answer to one registration and whether this call created the file's row (201) or found it (200)."""

    body: FileRegistered
    created: bool


RegistrationRequest = tuple[str, FileRegistration, UploadAuditContext]
"""(upload id, the file, who asked): one file of a batch."""


def _parameters(upload_id: str, registration: FileRegistration, context: UploadAuditContext) -> list[Any]:
    dicom = registration.dicom.model_dump() if registration.dicom is not None else {}
    return [
        *audit_parameters(upload_id, registration.owner, context),
        registration.index,
        registration.name,
        registration.sha256,
        registration.size,
        registration.reason,
        registration.outcome.value,
        uuid.uuid4().hex,
        *(dicom.get(column) for column in DICOM_COLUMNS),
        _cost_bytes(registration),
    ]


def _cost_bytes(registration: FileRegistration) -> int | None:
    """The job's memory estimate, by the rule ingest applies to the job it publishes (stored for the reconciler)."""
    if registration.dicom is None or registration.size is None:
        return None
    return estimate_job_cost(registration.dicom, registration.size).memory_bytes


def _outcome(upload_id: str, row: Any) -> Registration | Conflict:
    if not row["mine"]:
        return Conflict(f"Upload {upload_id} belongs to another owner.")
    body = FileRegistered(
        instance_id=row["instance_id"],
        status=FileStatus(row["status"]),
        reason=row["reason"],
    )
    return Registration(body, created=row["created"])


async def register_files(items: Sequence[RegistrationRequest]) -> list[Registration | Conflict]:
    """Register many files (of any uploads) with one commit; the answers, in the order of `items`.

    A file of another owner's upload is answered with its Conflict (and audited as denied); the others
    are registered all the same.
    """
    rows = await _run_with_retries(items, all_or_nothing=False)
    return [_outcome(items[n][0], rows[n]) for n in range(len(items))]


async def register_all(items: Sequence[RegistrationRequest]) -> list[Registration]:
    """Register every file of an all-or-nothing upload in one transaction, or none: a file of another owner's upload
    raises its Conflict and rolls every statement of the call back (its `denied` audit record included)."""
    rows = await _run_with_retries(items, all_or_nothing=True)
    return [outcome for n in range(len(items)) if isinstance(outcome := _outcome(items[n][0], rows[n]), Registration)]


async def _run_with_retries(items: Sequence[RegistrationRequest], *, all_or_nothing: bool) -> dict[int, Any]:
    order = sorted(range(len(items)), key=lambda n: (items[n][1].owner, items[n][1].sha256 or ""))
    attempt = 1
    while True:
        try:
            return await _run(items, order, all_or_nothing)
        except DeadlockDetectedError:
            if attempt == DEADLOCK_ATTEMPTS:
                raise
            log.info("registration_batch_deadlock", size=len(items), attempt=attempt)
            attempt += 1


async def _run(items: Sequence[RegistrationRequest], order: list[int], all_or_nothing: bool) -> dict[int, Any]:
    """Each item's statement, in `order`, in one transaction; the rows by item position. All or nothing: the first
    file of another owner's upload raises its Conflict, which rolls the transaction back."""
    async with connections.get("default").acquire_connection() as connection, connection.transaction():
        rows: dict[int, Any] = {}
        for n in order:
            row = await connection.fetchrow(REGISTER_SQL, *_parameters(*items[n]))
            if all_or_nothing and not row["mine"]:
                raise Conflict(f"Upload {items[n][0]} belongs to another owner.")
            rows[n] = row
        return rows
