"""`POST /internal/registrations`: the batched registration call of ingest (see common/schemas/registrations).

Every item gets its own answer: 201 registered now, 200 a replay of a registered (upload, index),
409 a file for another owner's upload (audited as denied, with that item's identity, by the
registration statement itself); a 409 does not stop the others.
"""

from __future__ import annotations

from aiohttp import web

from common.app.bodies import read_model
from common.app.logs import get_logger
from common.app.problems import Conflict
from common.schemas.registrations import (
    MAX_BATCH,
    RegistrationAnswer,
    RegistrationBatch,
    RegistrationBatchAnswer,
    RegistrationItem,
)
from results_service import pipeline_registration
from results_service.pipeline_registration import Registration
from results_service.upload_audit import UploadAuditContext

log = get_logger(__name__)

BATCH_MAX_BYTES = MAX_BATCH * 8 * 1024


def _context(item: RegistrationItem) -> UploadAuditContext:
    return UploadAuditContext(email=item.email, client=item.client, correlation_id=item.correlation_id)


def _answer(outcome: Registration | Conflict) -> RegistrationAnswer:
    if isinstance(outcome, Registration):
        return RegistrationAnswer(status=201 if outcome.created else 200, registered=outcome.body)
    return RegistrationAnswer(status=409, detail=outcome.detail)


async def handle_register_files(request: web.Request) -> web.Response:
    """Register every item of the batch; 200 with one answer per item, in order."""
    batch = await read_model(request, RegistrationBatch, max_bytes=BATCH_MAX_BYTES)
    outcomes = await pipeline_registration.register_files(
        [(item.upload_id, item.registration, _context(item)) for item in batch.items]
    )
    answers = [_answer(outcome) for outcome in outcomes]
    log.debug("registrations_batch", size=len(answers))
    body = RegistrationBatchAnswer(items=answers).model_dump_json().encode()
    return web.Response(body=body, content_type="application/json")
