"""The audit records of an upload, and the one statement shape that writes every one of them.

An upload writes patient data, so it must be in the audit trail. Every record of an upload names
the upload as the resource, the owner (the uploader the registration or stop names) as the actor,
and carries the caller's email, client address and correlation id; never a file name or reason
(either may quote patient names). `append_records` is the only SQL that inserts them:

- inside the registration statement (`REGISTRATION_AUDIT`, in `pipeline_registration`), so a
  registered file is never missing from the trail and a record is never written for a file that was
  not: `upload.create`
  (success) when the statement creates the upload's row (its first file); `upload.file` for every
  file it creates (success for `accepted` and `duplicate`, failure for `rejected`, the detail
  holding the file's index, status and instance id); `upload.file` denied (detail: index, 409) for
  a file of another owner's upload. A replay creates nothing, so it records nothing;
- alone, for `upload.stop` (`write_stop`): ingest reports an upload it answered with a problem
  (`POST /internal/uploads/{upload_id}/stop`), with the problem's status and the counts per outcome;
  when that call fails (this service or PostgreSQL down), ingest publishes the same record to `P.audit`
  and `results_service.audit_consumer` writes it here later, with the time ingest stopped the upload.
  An upload stops once, so its id is the record's idempotency key: a unique index
  (`audit_events_upload_stop_once`) and `ON CONFLICT DO NOTHING` make a redelivered record, or one that
  came both ways (the call committed but its answer was lost), a single row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from tortoise import connections

from common.app.bodies import read_model
from common.app.problems import NotFound
from common.schemas.instances import ID_PATTERN
from common.schemas.uploads import UploadStopped

UPLOAD_CREATE = "upload.create"
UPLOAD_FILE = "upload.file"
UPLOAD_STOP = "upload.stop"
STOP_MAX_BYTES = 4096
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class UploadAuditContext:
    """Who registers (besides the owner, which the registration names) and under which correlation id."""

    email: str | None = None
    client: str | None = None
    correlation_id: str | None = None


def audit_parameters(upload_id: str, owner: str, context: UploadAuditContext) -> list[str | None]:
    """The values of `append_records`' placeholders $1 to $5, which every statement using it starts with."""
    return [upload_id, owner, context.email, context.client, context.correlation_id]


def append_records(records: str, at: str = "now()") -> str:
    """An INSERT of one upload audit record per row of `records` (a query of `action`, `outcome`, `detail`),
    binding $1 upload id, $2 owner, $3 email, $4 client, $5 correlation id; `at` is the records' time (an
    expression). Usable as a data-modifying CTE: PostgreSQL runs it to completion whether or not the query
    reads it, and a rollback takes it back too."""
    return f"""INSERT INTO audit_events (
        at, actor_id, actor_email, action, resource_type, resource_id, outcome, correlation_id, client, detail
    )
    SELECT {at}, left($2, 64), $3, record.action, 'upload', $1, record.outcome, $5, $4, record.detail
    FROM ({records}) AS record"""  # noqa: S608  (only the callers' constant text is put in; values are parameters)


# The records of one registration statement, which must define `upload` (`mine`: the upload is the owner's;
# `created`: this statement inserted it) and `file` (`created`, `status`, `instance_id` of the file's row),
# and bind $6 the file's index.
REGISTRATION_AUDIT = append_records(
    f"""SELECT '{UPLOAD_CREATE}' AS action, 'success' AS outcome, '{{}}'::jsonb AS detail FROM upload WHERE created
    UNION ALL
    SELECT '{UPLOAD_FILE}', CASE WHEN status = 'rejected' THEN 'failure' ELSE 'success' END,
        jsonb_strip_nulls(jsonb_build_object('index', $6::integer, 'status', status, 'instance_id', instance_id))
    FROM file WHERE created
    UNION ALL
    SELECT '{UPLOAD_FILE}', 'denied', jsonb_build_object('index', $6::integer, 'status', 409)
    FROM upload WHERE NOT mine"""  # noqa: S608
)
# $6 the detail, $7 when the upload stopped (NULL: now). One row per upload, whichever way the record came.
STOP_SQL = (
    append_records(
        f"SELECT '{UPLOAD_STOP}' AS action, 'failure' AS outcome, $6::jsonb AS detail",
        at="coalesce($7::timestamptz, now())",
    )
    + f" ON CONFLICT (resource_id) WHERE action = '{UPLOAD_STOP}' DO NOTHING RETURNING id"
)


class UnknownUpload(ValueError):
    """An upload id that no upload can have (so no record is written for it)."""


async def write_stop(upload_id: str, stop: UploadStopped, *, at: datetime | None = None) -> bool:
    """Write the `upload.stop` record of `upload_id` (failure: the problem's status, the number of files taken and
    their counts per outcome) unless it is written already; True when this call wrote it."""
    if not _ID.match(upload_id):
        raise UnknownUpload(upload_id)
    counts = {"accepted": stop.accepted, "duplicate": stop.duplicate, "rejected": stop.rejected}
    detail = {"status": stop.status, "files": sum(counts.values())} | {key: n for key, n in counts.items() if n}
    context = UploadAuditContext(stop.email, stop.client, stop.correlation_id)
    rows = await connections.get("default").execute_query_dict(
        STOP_SQL, [*audit_parameters(upload_id, stop.owner, context), json.dumps(detail), at]
    )
    return bool(rows)


async def handle_upload_stop(request: web.Request) -> web.Response:
    """POST /internal/uploads/{upload_id}/stop: ingest answered this upload with a problem; record `upload.stop`
    (once: a repeated report changes nothing). 204."""
    upload_id = request.match_info["upload_id"]
    if not _ID.match(upload_id):
        raise NotFound(f"Upload {upload_id} was not found.")
    stop = await read_model(request, UploadStopped, max_bytes=STOP_MAX_BYTES)
    await write_stop(upload_id, stop)
    return web.Response(status=204)
