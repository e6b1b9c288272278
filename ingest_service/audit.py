"""Reporting an upload that ended with a problem, for its `upload.stop` audit record, so that none is lost.

The records of what an upload wrote (`upload.create`, one `upload.file` per file) are written by
results_service inside each file's registration statement, so a 202 needs no report. A request that
ends with a problem (413 over the limit, 400 without files, 503 when results_service, RabbitMQ or the
blob store failed) is reported here: who, the upload id, the status, the correlation id and the counts
per outcome (never file names, which may carry patient names).

A report goes one of three ways, the first that works:

1. straight to results_service (`POST /internal/uploads/{upload_id}/stop`), which writes the record
   before the problem is answered: what an operator sees when everything is up;
2. when that call fails (results_service or PostgreSQL down, no answer in time), to `P.audit` as an
   `UploadStopRecord`, confirmed by the broker, which keeps it until results_service writes it
   (`results_service.audit_consumer`); the queue's depth is the number of records waiting;
3. when the broker does not confirm either, held by this process and tried again both ways with
   jittered backoff until one works; only a record still held when ingest stops (or dies) in such a
   double outage is lost, and it is logged as `audit_record_lost` with its upload id.

results_service writes a record once per upload (the upload id is its key), so a report that reaches
both ways (the call committed but its answer was lost) is still one row.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import aiohttp
from aio_pika.abc import AbstractExchange

from common.app.logs import CORRELATION_HEADER, current_correlation_id, get_logger
from common.auth.identity import Caller
from common.auth.service_tokens import ServiceSigner
from common.messaging.backoff import backoff_delays
from common.messaging.broker import BROKER_ERRORS, publish
from common.messaging.messages import AUDIT_UPLOAD_STOP, UploadStopRecord
from common.schemas.instances import FileStatus
from common.schemas.uploads import UploadedFile, UploadStopped

log = get_logger(__name__)


def stop_report(caller: Caller, files: list[UploadedFile], status: int) -> UploadStopped:
    """The report of an upload answered with `status`, after `files` were taken."""
    outcomes = Counter(f.status for f in files)
    correlation_id = current_correlation_id()
    return UploadStopped(
        owner=caller.user_id,
        status=status,
        accepted=outcomes[FileStatus.ACCEPTED],
        duplicate=outcomes[FileStatus.DUPLICATE],
        rejected=outcomes[FileStatus.REJECTED],
        email=caller.email[:320] if caller.email else None,
        client=caller.client[:128] if caller.client else None,
        correlation_id=correlation_id[:128] if correlation_id else None,
    )


class StopReporter:
    """Delivers stop reports (direct call, else `P.audit`, else held and retried); `close` at shutdown."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        signer: ServiceSigner,
        results_url: str,
        exchange: AbstractExchange,
        *,
        timeout: float,
        max_delay: float,
    ) -> None:
        self.session = session
        self.signer = signer
        self.results_url = results_url.rstrip("/")
        self.exchange = exchange
        self.timeout = timeout
        self.max_delay = max_delay
        self._held: dict[asyncio.Task[None], str] = {}

    @property
    def held(self) -> int:
        """Reports neither results_service nor the broker has taken yet."""
        return len(self._held)

    async def report(self, caller: Caller, upload_id: str, files: list[UploadedFile], status: int) -> None:
        """Report the upload answered with the problem `status`; returns once the report is durable or held."""
        stop = stop_report(caller, files, status)
        # Built now: its message id and time (when the upload stopped) stay the same through every retry.
        record = UploadStopRecord(upload_id=upload_id, **stop.model_dump())
        if await self._deliver(caller, record, stop):
            return
        log.warning("audit_record_held", upload_id=upload_id)
        task = asyncio.create_task(self._keep_trying(caller, record, stop))
        self._held[task] = upload_id
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._held.pop(task, None)

    async def _deliver(self, caller: Caller, record: UploadStopRecord, stop: UploadStopped) -> bool:
        return await self._call(caller, record.upload_id, stop) or await self._publish(record)

    async def _call(self, caller: Caller, upload_id: str, stop: UploadStopped) -> bool:
        """The direct report; True once results_service answered 204 (the record is written)."""
        headers = {"Content-Type": "application/json", **self.signer.headers("results_service", caller)}
        if stop.correlation_id:
            headers[CORRELATION_HEADER] = stop.correlation_id
        try:
            async with self.session.post(
                f"{self.results_url}/internal/uploads/{upload_id}/stop",
                data=stop.model_dump_json(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                if response.status == 204:
                    return True
                log.warning("upload_stop_refused", upload_id=upload_id, status=response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upload_stop_unreachable", upload_id=upload_id, error=type(exc).__name__)
        return False

    async def _publish(self, record: UploadStopRecord) -> bool:
        """The record to `P.audit`; True once the broker confirmed it."""
        try:
            await asyncio.wait_for(publish(self.exchange, record, AUDIT_UPLOAD_STOP), self.timeout)
        except BROKER_ERRORS as exc:
            log.warning("upload_stop_unpublished", upload_id=record.upload_id, error=type(exc).__name__)
            return False
        log.info("audit_record_queued", upload_id=record.upload_id, message_id=record.message_id)
        return True

    async def _keep_trying(self, caller: Caller, record: UploadStopRecord, stop: UploadStopped) -> None:
        for delay in backoff_delays(self.max_delay):
            await asyncio.sleep(delay)
            if await self._deliver(caller, record, stop):
                log.info("audit_record_delivered", upload_id=record.upload_id)
                return

    async def close(self, grace: float) -> None:
        """Give the held reports up to `grace` seconds, then give up on them, each logged as lost."""
        if not self._held:
            return
        held = dict(self._held)
        _, pending = await asyncio.wait(held, timeout=grace)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.error("audit_record_lost", upload_id=held[task])
