"""The audit records of an upload, written in the same transaction as the registration they describe.

An upload writes patient data, so it must be in the audit trail, and a record written after the
registration commits could be lost while the file stays. So `pipeline_registration` appends them
inside its own transaction (or statement), without another round trip:

- `upload.create` (success) when a registration creates the upload's row (its first file);
- `upload.file` for every file it registers: success for `accepted` and `duplicate`, failure for
  `rejected`, the detail holding the file's index, status and instance id.

Both name the upload as the resource, the owner as the actor, and carry the caller's email, client
address and correlation id; never a file name or reason (either may quote patient names). A replay
writes nothing, so it records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from common.app.logs import current_correlation_id
from common.app.web import correlation_id_key
from common.auth.identity import caller_from_headers
from common.schemas.auth import AuditEventIn, Outcome
from common.schemas.instances import FileStatus
from results_service.audit import append_audit

UPLOAD_CREATE = "upload.create"
UPLOAD_FILE = "upload.file"


@dataclass(frozen=True)
class UploadAuditContext:
    """Who registers (besides the owner, which the registration names) and under which correlation id."""

    email: str | None = None
    client: str | None = None
    correlation_id: str | None = None

    @classmethod
    def of(cls, request: web.Request) -> UploadAuditContext:
        """The identity headers ingest forwards from the gateway, and the request's correlation id."""
        caller = caller_from_headers(request.headers)
        correlation_id = request.get(correlation_id_key) or current_correlation_id()
        return cls(
            email=caller.email[:320] if caller.email else None,
            client=caller.client[:128] if caller.client else None,
            correlation_id=correlation_id[:128] if correlation_id else None,
        )

    def event(
        self, action: str, outcome: Outcome, *, upload_id: str, owner: str, detail: dict[str, object]
    ) -> AuditEventIn:
        """A record of this upload: the owner as the actor, with this context's email, client and id."""
        return AuditEventIn(
            actor_id=owner[:64],
            actor_email=self.email,
            action=action,
            resource_type="upload",
            resource_id=upload_id,
            outcome=outcome,
            correlation_id=self.correlation_id,
            client=self.client,
            detail=detail,
        )

    def parameters(self) -> list[str | None]:
        """The values of AUDIT_CTE's placeholders $8, $9 and $10."""
        return [self.email, self.client, self.correlation_id]


# Appends both records inside a registration statement, which must define `new_upload` (a row only when
# it created the upload) and `new_file` (`status`, `instance_id` of the file it inserted), and bind
# $1 upload id, $2 owner, $3 index, $8 email, $9 client, $10 correlation id. PostgreSQL runs a
# data-modifying CTE to completion whether or not the query reads it; a rollback takes it back too.
AUDIT_CTE = """, upload_audit AS (
    INSERT INTO audit_events (
        at, actor_id, actor_email, action, resource_type, resource_id, outcome, correlation_id, client, detail
    )
    SELECT now(), left($2, 64), $8, 'upload.create', 'upload', $1, 'success', $10, $9, '{}'::jsonb
    FROM new_upload
    UNION ALL
    SELECT now(), left($2, 64), $8, 'upload.file', 'upload', $1,
        CASE WHEN status = 'rejected' THEN 'failure' ELSE 'success' END, $10, $9,
        jsonb_strip_nulls(jsonb_build_object('index', $3::integer, 'status', status, 'instance_id', instance_id))
    FROM new_file
)"""


def file_outcome(status: FileStatus) -> Outcome:
    """A rejected file is a failed write; an accepted or duplicate one succeeded."""
    return Outcome.FAILURE if status is FileStatus.REJECTED else Outcome.SUCCESS


async def append_upload_records(
    context: UploadAuditContext,
    *,
    upload_id: str,
    owner: str,
    index: int,
    status: FileStatus,
    instance_id: str | None,
    upload_created: bool,
) -> None:
    """The careful path's records, appended with the ORM: call it inside the registration's transaction."""
    if upload_created:
        await append_audit(context.event(UPLOAD_CREATE, Outcome.SUCCESS, upload_id=upload_id, owner=owner, detail={}))
    detail: dict[str, object] = {"index": index, "status": status.value}
    if instance_id is not None:
        detail["instance_id"] = instance_id
    await append_audit(
        context.event(UPLOAD_FILE, file_outcome(status), upload_id=upload_id, owner=owner, detail=detail)
    )
