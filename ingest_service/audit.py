"""The audit record of an upload that ended with a problem, appended through results_service.

The records of what an upload wrote (`upload.create`, one `upload.file` per file) are written by
results_service inside each file's registration transaction, so a 202 needs no call of its own.
A request that ends with a problem (413 over the limit, 400 without files, 503 when results_service
or RabbitMQ failed) appends one `upload.stop` record here, off the accept path: who, the upload id,
the status, the correlation id and the counts per outcome (never file names, which may carry patient
names). The files taken before the problem are recorded already, so a record that cannot be written
is logged as an error rather than turning the answer into another failure.
"""

from __future__ import annotations

from collections import Counter

import aiohttp

from common.app.logs import CORRELATION_HEADER, current_correlation_id, get_logger
from common.auth.identity import Caller
from common.schemas.auth import AuditEventIn, Outcome
from common.schemas.uploads import UploadedFile

log = get_logger(__name__)


async def audit_upload_stop(
    session: aiohttp.ClientSession,
    results_url: str,
    caller: Caller,
    upload_id: str,
    files: list[UploadedFile],
    status: int,
    timeout: float,
) -> None:
    """Append the `upload.stop` record of an upload answered with the problem `status`."""
    outcomes = Counter(str(f.status) for f in files)
    event = AuditEventIn(
        actor_id=caller.user_id,
        actor_email=caller.email,
        action="upload.stop",
        resource_type="upload",
        resource_id=upload_id,
        outcome=Outcome.FAILURE,
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
