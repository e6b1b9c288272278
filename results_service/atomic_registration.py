"""`POST /internal/registrations/atomic`: every file of one all-or-nothing upload in one transaction, or none.

ingest calls it once per all-or-nothing upload, after every file of it was validated and its blob committed.
The files are registered by the same statement as any registration (`pipeline_registration`), so an upload's
audit records, duplicates and replays behave the same; only the transaction spans the whole upload. A file of
another owner's upload makes the call a 409 that registered nothing.
"""

from __future__ import annotations

from aiohttp import web

from common.app.bodies import read_model
from common.app.logs import get_logger
from common.schemas.registrations import (
    ATOMIC_BYTES_PER_FILE,
    ATOMIC_MAX_FILES,
    AtomicRegistration,
    AtomicRegistrationAnswer,
)
from results_service import pipeline_registration
from results_service.upload_audit import UploadAuditContext

log = get_logger(__name__)

ATOMIC_MAX_BYTES = ATOMIC_MAX_FILES * ATOMIC_BYTES_PER_FILE


async def handle_register_upload(request: web.Request) -> web.Response:
    """Register every file of the upload in one transaction; 200 with one answer per file, in order (409: none)."""
    upload = await read_model(request, AtomicRegistration, max_bytes=ATOMIC_MAX_BYTES)
    context = UploadAuditContext(email=upload.email, client=upload.client, correlation_id=upload.correlation_id)
    registered = await pipeline_registration.register_all([(upload.upload_id, file, context) for file in upload.files])
    log.info("upload_registered_whole", upload_id=upload.upload_id, files=len(registered))
    body = AtomicRegistrationAnswer(files=[outcome.body for outcome in registered]).model_dump_json().encode()
    return web.Response(body=body, content_type="application/json")
