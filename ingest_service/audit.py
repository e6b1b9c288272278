"""The audit record of an upload (a write of patient data), appended through results_service.

ingest has no database: it sends one `upload.create` record per upload to `POST /internal/audit`
once the upload has ended, with who, the upload id, the outcome, the correlation id and the
counts per outcome (never file names, which may carry patient names). The files are stored by
then, so a record that cannot be written is logged as an error rather than failing an upload
whose files are already taken (a retry would only upload them again).
"""

from __future__ import annotations

from collections import Counter

import aiohttp

from common.identity import Caller
from common.logs import CORRELATION_HEADER, current_correlation_id, get_logger
from common.schemas.auth import AuditEventIn, Outcome
from common.schemas.uploads import UploadedFile

log = get_logger(__name__)


async def audit_upload(
    session: aiohttp.ClientSession,
    results_url: str,
    caller: Caller,
    upload_id: str,
    files: list[UploadedFile],
    status: int,
    timeout: float,
) -> None:
    """Append the `upload.create` record of one upload (success for a 202, failure otherwise)."""
    outcomes = Counter(str(f.status) for f in files)
    event = AuditEventIn(
        actor_id=caller.user_id,
        actor_email=caller.email,
        action="upload.create",
        resource_type="upload",
        resource_id=upload_id,
        outcome=Outcome.SUCCESS if status == 202 else Outcome.FAILURE,
        correlation_id=current_correlation_id(),
        client=caller.client,
        detail={"status": status, "files": len(files), **outcomes},
    )
    headers = {"Content-Type": "application/json"}
    if event.correlation_id:
        headers[CORRELATION_HEADER] = event.correlation_id
    try:
        async with session.post(
            f"{results_url.rstrip('/')}/internal/audit",
            data=event.model_dump_json(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status != 201:
                log.error("audit_record_refused", upload_id=upload_id, status=response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.error("audit_record_lost", upload_id=upload_id, error=type(exc).__name__)
