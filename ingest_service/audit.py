"""Reporting an upload that ended with a problem to results_service, which records its `upload.stop`.

The records of what an upload wrote (`upload.create`, one `upload.file` per file) are written by
results_service inside each file's registration statement, so a 202 needs no call of its own.
A request that ends with a problem (413 over the limit, 400 without files, 503 when results_service
or RabbitMQ failed) is reported here, off the accept path: who, the upload id, the status, the
correlation id and the counts per outcome (never file names, which may carry patient names);
results_service turns the report into the record. The files taken before the problem are recorded
already, so a report that cannot be delivered is logged as an error rather than turning the answer
into another failure.
"""

from __future__ import annotations

from collections import Counter

import aiohttp

from common.app.logs import CORRELATION_HEADER, current_correlation_id, get_logger
from common.auth.identity import Caller
from common.auth.service_tokens import ServiceSigner
from common.schemas.instances import FileStatus
from common.schemas.uploads import UploadedFile, UploadStopped

log = get_logger(__name__)


async def report_upload_stop(
    session: aiohttp.ClientSession,
    signer: ServiceSigner,
    results_url: str,
    caller: Caller,
    upload_id: str,
    files: list[UploadedFile],
    status: int,
    timeout: float,
) -> None:
    """Report the upload answered with the problem `status` (`POST /internal/uploads/{upload_id}/stop`)."""
    outcomes = Counter(f.status for f in files)
    correlation_id = current_correlation_id()
    stop = UploadStopped(
        owner=caller.user_id,
        status=status,
        accepted=outcomes[FileStatus.ACCEPTED],
        duplicate=outcomes[FileStatus.DUPLICATE],
        rejected=outcomes[FileStatus.REJECTED],
        email=caller.email[:320] if caller.email else None,
        client=caller.client[:128] if caller.client else None,
        correlation_id=correlation_id[:128] if correlation_id else None,
    )
    headers = {"Content-Type": "application/json", **signer.headers("results_service", caller)}
    if stop.correlation_id:
        headers[CORRELATION_HEADER] = stop.correlation_id
    try:
        async with session.post(
            f"{results_url.rstrip('/')}/internal/uploads/{upload_id}/stop",
            data=stop.model_dump_json(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status != 204:
                log.error("upload_stop_refused", upload_id=upload_id, status=response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.error("upload_stop_lost", upload_id=upload_id, error=type(exc).__name__)
