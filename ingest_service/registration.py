"""The registration call to results_service: one idempotent POST per file of an upload.

It carries the caller's identity headers (user, email, client address) and the correlation id:
results_service writes the upload's audit records in the registration's own transaction.
"""

from __future__ import annotations

import aiohttp
from pydantic import ValidationError

from common.identity import Caller
from common.logs import CORRELATION_HEADER, current_correlation_id
from common.problems import ServiceUnavailable
from common.schemas.instances import FileRegistered, FileRegistration


class ResultsUnavailable(ServiceUnavailable):
    """results_service did not register a file; nothing after it in the upload is taken."""


async def register_file(
    session: aiohttp.ClientSession,
    results_url: str,
    upload_id: str,
    registration: FileRegistration,
    caller: Caller,
    timeout: float,
) -> FileRegistered:
    """POST the registration as the caller; (upload_id, index) makes a retry of the same file harmless."""
    headers = {"Content-Type": "application/json", **caller.headers()}
    correlation_id = current_correlation_id()
    if correlation_id is not None:
        headers[CORRELATION_HEADER] = correlation_id
    url = f"{results_url.rstrip('/')}/internal/uploads/{upload_id}/files"
    try:
        async with session.post(
            url,
            data=registration.model_dump_json(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await response.read()
            if response.status not in (200, 201):
                raise ResultsUnavailable(
                    f"results_service answered {response.status} when registering file {registration.index} "
                    f"({registration.name!r}); retry the files not yet accepted"
                )
            return FileRegistered.model_validate_json(body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ResultsUnavailable(
            f"results_service is unreachable ({type(exc).__name__}); retry the files not yet accepted"
        ) from exc
    except ValidationError as exc:
        raise ResultsUnavailable("results_service answered a registration this service does not understand") from exc
