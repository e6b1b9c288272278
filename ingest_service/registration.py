"""Registering files with results_service, batched: one `POST /internal/registrations` carries every file
that arrived while the previous calls were in flight.

No file waits for a timer: a file registered when a call slot is free goes at once (alone, when
the service is quiet); under load, files gather while `max_in_flight` calls are out and leave
together in the next, so results_service pays one request and one commit for many files. Each
item carries the caller's identity and the correlation id of the upload that brought it, since
results_service writes that upload's audit records in the registration's own transaction.
(upload_id, index) keeps a retried registration harmless. The registrar holds only the files
waiting for a call: nothing in it decides an instance's state.
"""

from __future__ import annotations

import asyncio
import io
import math
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from common.app.logs import CORRELATION_HEADER, current_correlation_id, get_logger
from common.app.problems import ServiceUnavailable
from common.auth.identity import Caller
from common.auth.service_tokens import ServiceSigner
from common.schemas.instances import FileRegistered, FileRegistration
from common.schemas.registrations import (
    MAX_BATCH,
    AtomicRegistration,
    AtomicRegistrationAnswer,
    RegistrationBatch,
    RegistrationBatchAnswer,
    RegistrationItem,
)

log = get_logger(__name__)

AnswerT = TypeVar("AnswerT", bound=BaseModel)
LARGE_BODY_BYTES = 1024**2


class ResultsUnavailable(ServiceUnavailable):
    """results_service did not register a file; nothing after it in the upload is taken."""


@dataclass
class _Pending:
    item: RegistrationItem
    answer: asyncio.Future[FileRegistered]


class Registrar:
    """Gathers concurrent registrations into batch calls (at most `max_in_flight` calls at a time)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        results_url: str,
        timeout: float,
        signer: ServiceSigner,
        *,
        max_in_flight: int = 1,
    ) -> None:
        self.session = session
        self.signer = signer
        self.url = f"{results_url.rstrip('/')}/internal/registrations"
        self.atomic_url = f"{self.url}/atomic"
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self._waiting: list[_Pending] = []
        self._calls: set[asyncio.Task[None]] = set()

    async def register(self, upload_id: str, registration: FileRegistration, caller: Caller) -> FileRegistered:
        """Register one file as `caller`; raises ResultsUnavailable when results_service did not."""
        item = RegistrationItem(
            upload_id=upload_id,
            registration=registration,
            email=caller.email[:320] if caller.email else None,
            client=caller.client[:128] if caller.client else None,
            correlation_id=current_correlation_id(),
        )
        pending = _Pending(item, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        self._send_waiting()
        # Cancelling this wait (the client went away) cancels only this file's future, not the call.
        return await pending.answer

    def _send_waiting(self) -> None:
        """Start calls while slots are free, each with up to MAX_BATCH of the files waiting."""
        while self._waiting and len(self._calls) < self.max_in_flight:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            task = asyncio.create_task(self._call(batch))
            self._calls.add(task)
            task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        self._send_waiting()

    async def _call(self, batch: list[_Pending]) -> None:
        """One call; every file of it is settled, with its answer or with ResultsUnavailable."""
        try:
            answers = await self._post([pending.item for pending in batch])
        except Exception as exc:  # ResultsUnavailable, or a bug: fail these files, never leave them waiting
            failure = exc
            if not isinstance(exc, ResultsUnavailable):
                log.exception("registration_batch_failed", size=len(batch))
                failure = ResultsUnavailable("registering the file failed; retry it")
            for pending in batch:
                _settle(pending.answer, failure)
            return
        for pending, answer in zip(batch, answers.items, strict=True):
            if answer.registered is not None:
                _settle(pending.answer, answer.registered)
            else:
                registration = pending.item.registration
                _settle(
                    pending.answer,
                    ResultsUnavailable(
                        f"results_service answered {answer.status} when registering file {registration.index} "
                        f"({registration.name!r}): {answer.detail}; retry the files not yet accepted"
                    ),
                )

    async def register_all(
        self, upload_id: str, registrations: list[FileRegistration], caller: Caller
    ) -> list[FileRegistered]:
        """Register every file of an all-or-nothing upload in one call and one transaction of results_service, with
        the time of one batch call per MAX_BATCH files; ResultsUnavailable when it did not (then nothing is
        registered, unless the answer was lost after the commit: the reconciler publishes those instances' jobs)."""
        upload = AtomicRegistration(
            upload_id=upload_id,
            files=registrations,
            email=caller.email[:320] if caller.email else None,
            client=caller.client[:128] if caller.client else None,
            correlation_id=current_correlation_id(),
        )
        timeout = self.timeout * math.ceil(len(registrations) / MAX_BATCH)
        answer = await self._send(
            self.atomic_url,
            upload.model_dump_json(),
            AtomicRegistrationAnswer,
            len(registrations),
            timeout,
            upload.correlation_id,
        )
        if len(answer.files) != len(registrations):
            raise ResultsUnavailable("results_service answered a different number of registrations than it was sent")
        return answer.files

    async def _post(self, items: list[RegistrationItem]) -> RegistrationBatchAnswer:
        body = RegistrationBatch(items=items).model_dump_json()
        correlation_id = items[0].correlation_id if len(items) == 1 else None
        answers = await self._send(self.url, body, RegistrationBatchAnswer, len(items), self.timeout, correlation_id)
        if len(answers.items) != len(items):
            raise ResultsUnavailable("results_service answered a different number of registrations than it was sent")
        return answers

    async def _send(
        self, url: str, body: str, answer: type[AnswerT], files: int, timeout: float, correlation_id: str | None
    ) -> AnswerT:
        """One registration call; any failure, an answer other than 200 included, is ResultsUnavailable."""
        # A batch mixes callers (each item names its own): the token vouches for ingest_service alone.
        headers = {"Content-Type": "application/json", **self.signer.headers("results_service")}
        if correlation_id is not None:
            headers[CORRELATION_HEADER] = correlation_id
        encoded = body.encode()
        # aiohttp writes a large bytes body in one go (and warns); an all-or-nothing upload's may be megabytes.
        data: bytes | io.BytesIO = io.BytesIO(encoded) if len(encoded) > LARGE_BODY_BYTES else encoded
        try:
            async with self.session.post(
                url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                payload = await response.read()
                if response.status != 200:
                    raise ResultsUnavailable(
                        f"results_service answered {response.status} when registering {files} file(s); "
                        "retry the files not yet accepted"
                    )
            return answer.model_validate_json(payload)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ResultsUnavailable(
                f"results_service is unreachable ({type(exc).__name__}); retry the files not yet accepted"
            ) from exc
        except ValidationError as exc:
            raise ResultsUnavailable(
                "results_service answered a registration this service does not understand"
            ) from exc

    async def close(self) -> None:
        """Wait for the calls in flight, so no registration is cut off half-way."""
        while self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)


def _settle(future: asyncio.Future[FileRegistered], outcome: FileRegistered | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
