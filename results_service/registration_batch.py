"""`POST /internal/registrations`: the batched registration call of ingest (see common/schemas/registrations).

Every item is answered as the single-file call would answer it; a file for another owner's upload
is a 409 item (audited as denied, with that item's identity) and does not stop the others.
"""

from __future__ import annotations

from aiohttp import web

from common.app.bodies import read_model
from common.app.logs import get_logger
from common.app.problems import Conflict
from common.schemas.auth import Outcome
from common.schemas.registrations import (
    MAX_BATCH,
    RegistrationAnswer,
    RegistrationBatch,
    RegistrationBatchAnswer,
    RegistrationItem,
)
from results_service import pipeline_registration
from results_service.audit import append_audit
from results_service.pipeline_registration import Registration
from results_service.upload_audit import UPLOAD_FILE, UploadAuditContext

log = get_logger(__name__)

BATCH_MAX_BYTES = MAX_BATCH * 8 * 1024


def _context(item: RegistrationItem) -> UploadAuditContext:
    return UploadAuditContext(email=item.email, client=item.client, correlation_id=item.correlation_id)


async def _answer(item: RegistrationItem, outcome: Registration | Conflict) -> RegistrationAnswer:
    if isinstance(outcome, Registration):
        return RegistrationAnswer(status=201 if outcome.created else 200, registered=outcome.body)
    detail: dict[str, object] = {"index": item.registration.index, "status": 409}
    denied = _context(item).event(
        UPLOAD_FILE, Outcome.DENIED, upload_id=item.upload_id, owner=item.registration.owner, detail=detail
    )
    await append_audit(denied)
    return RegistrationAnswer(status=409, detail=outcome.detail)


async def handle_register_files(request: web.Request) -> web.Response:
    """Register every item of the batch; 200 with one answer per item, in order."""
    batch = await read_model(request, RegistrationBatch, max_bytes=BATCH_MAX_BYTES)
    outcomes = await pipeline_registration.register_files(
        [(item.upload_id, item.registration, _context(item)) for item in batch.items]
    )
    answers = [await _answer(item, outcome) for item, outcome in zip(batch.items, outcomes, strict=True)]
    log.debug("registrations_batch", size=len(answers))
    body = RegistrationBatchAnswer(items=answers).model_dump_json().encode()
    return web.Response(body=body, content_type="application/json")
