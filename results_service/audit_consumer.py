"""`P.audit`: the audit records that could not be written when they happened, written now, once each.

ingest reports an upload it answered with a problem straight to `POST /internal/uploads/{id}/stop`; when
that call fails (this service or PostgreSQL down, or no answer in time) it publishes the same record,
confirmed, to `P.audit` (`common.messaging.messages.UploadStopRecord`), where the broker keeps it until
this consumer writes it through `results_service.upload_audit.write_stop`, the records' one writer.

- Once: the upload id is the record's key (one stop per upload, a unique index), so a redelivered record,
  or one that also reached the direct call, is one row.
- Nothing is lost to an outage: a database error holds the delivery and retries it with backoff
  (`common.messaging.faults`), it is never returned to the queue, so it spends none of its delivery
  attempts; only a record that can never be written (not an upload id) is rejected and parked.
- In order per request: a request has one queued record, its stop, and ingest publishes it only after
  every registration of the request was answered, so its create/file records are committed before it
  (or were never written). The record keeps the time the upload stopped, not the time it was written.
  A prefetch of one also writes a replica's records in the order the broker holds them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from common.app.logs import get_logger
from common.app.settings import BaseServiceSettings
from common.app.web import readiness_checks_key
from common.messaging.broker import broker_key
from common.messaging.consuming import ConsumerSet, RejectMessage
from common.messaging.messages import UploadStopRecord
from common.schemas.uploads import UploadStopped
from results_service.upload_audit import UnknownUpload, write_stop

log = get_logger(__name__)

AUDIT_PREFETCH = 1
STOP_FIELDS = set(UploadStopped.model_fields)


async def handle_upload_stop_record(record: UploadStopRecord, _: AbstractIncomingMessage) -> None:
    """Write the record's `upload.stop` row (a second copy writes nothing); reject an id no upload can have."""
    stop = UploadStopped.model_validate(record.model_dump(include=STOP_FIELDS))
    try:
        written = await write_stop(record.upload_id, stop, at=record.created_at)
    except UnknownUpload as exc:
        raise RejectMessage(f"not an upload id: {str(exc)[:80]!r}") from exc
    log.info("audit_record_written" if written else "audit_record_duplicate", upload_id=record.upload_id)


def audit_consumer_context(settings: BaseServiceSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Consume `P.audit` for the app's lifetime (on its own robust channel, one of the readiness checks)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        broker = app[broker_key]
        consumers = ConsumerSet(broker.connection, settings, "results_service.audit")
        try:
            await consumers.add_typed(
                broker.topology.names.audit, handle_upload_stop_record, UploadStopRecord, prefetch=AUDIT_PREFETCH
            )
            app[readiness_checks_key].append(consumers.ready)
            yield
        finally:
            with contextlib.suppress(ValueError):
                app[readiness_checks_key].remove(consumers.ready)
            await consumers.stop_consuming()
            await consumers.close()

    return context
