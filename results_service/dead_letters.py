"""The dead-letter path: whatever the broker gave up on is read by its kind and acted on, never left silent.

`P.deadletters` receives what any quorum queue dead-lettered: jobs, but also results and status events
(e.g. a delivery limit reached before outages stopped counting). Each is dispatched on its AMQP `type`
(the model's `kind`, or the body's `kind` when a publisher left the property out):

- a job (`process_job`): the broker gave up processing it; its instance fails with a reason a person
  can act on (forward only: a done instance stays done);
- a result (`process_result`): stored like any result (first one wins, forward only), so the work
  done is not lost; if it cannot be stored because of what it holds, its instance fails with a reason;
- a status event (`status_event`): applied forward only, like the live ones (a final status never
  comes from an event; the reconciler catches an instance left behind);
- anything else, or a body that does not read as its kind: logged with its message id and dropped
  from `P.deadletters` (the copy in `P.parked` stays for operators).

`P.deadletters` is a classic queue with no delivery limit, so a failure caused by a message is never
returned to it (it would loop): it is logged and the message acked. Only outages (database, broker)
escape to the consuming edge, which holds the delivery and retries.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel, ValidationError

from common.app.logs import get_logger
from common.messaging.faults import is_infrastructure_error
from common.messaging.messages import ProcessJob, ProcessResult, StatusEvent
from results_service import pipeline_store
from results_service.pipeline_store import Transition

log = get_logger(__name__)

KINDS: dict[str, type[BaseModel]] = {
    "process_job": ProcessJob,
    "process_result": ProcessResult,
    "status_event": StatusEvent,
}
REPLAY_HINT = "parked for operator review (`dicomflow jobs parked`, then `dicomflow jobs replay`)"


def dead_letter_reason(headers: Mapping[str, Any], delivery_limit: int) -> str:
    """Why the broker gave up on a job, in words an operator or a user can act on."""
    deaths = headers.get("x-death") or [{}]
    why = str(deaths[0].get("reason", "unknown")) if isinstance(deaths, list) and deaths else "unknown"
    replay = f"the job is {REPLAY_HINT}"
    if why == "delivery_limit":
        attempts = delivery_limit + 1
        return f"processing failed {attempts} times (the worker timed out or crashed each time); {replay}"
    if why == "rejected":
        return f"the processor could not read the job message (malformed or unknown version); {replay}"
    return f"the job was dead-lettered by the broker ({why}); {replay}"


def _kind(message: AbstractIncomingMessage) -> str | None:
    """The message's kind: its AMQP `type`, else the `kind` field of its JSON body."""
    if message.type:
        return message.type
    try:
        body = json.loads(message.body)
    except ValueError:
        return None
    kind = body.get("kind") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None


class DeadLetters:
    """The consumer handler of `P.deadletters` (see the module docstring)."""

    def __init__(
        self,
        delivery_limit: int,
        announce: Callable[[list[Transition]], Awaitable[None]],
        store_results: Callable[[list[ProcessResult]], Awaitable[None]],
        apply_statuses: Callable[[list[StatusEvent]], Awaitable[None]],
    ) -> None:
        self.delivery_limit = delivery_limit
        self.announce = announce
        self.store_results = store_results
        self.apply_statuses = apply_statuses

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Act on one dead letter; raises only for an outage (the edge holds the delivery and retries)."""
        kind = _kind(message)
        model = KINDS.get(kind or "")
        if model is None:
            log.warning("dead_letter_unreadable", message_id=message.message_id, type=kind, reason="unknown kind")
            return
        try:
            parsed = model.model_validate_json(message.body)
        except ValidationError as exc:
            log.warning("dead_letter_unreadable", message_id=message.message_id, type=kind, reason=str(exc)[:300])
            return
        try:
            await self._apply(parsed, message)
        except Exception as exc:
            if is_infrastructure_error(exc):
                raise
            log.exception("dead_letter_not_applied", message_id=message.message_id, type=kind)

    async def _apply(self, parsed: BaseModel, message: AbstractIncomingMessage) -> None:
        if isinstance(parsed, ProcessJob):
            await self.fail(parsed.instance_id, dead_letter_reason(message.headers or {}, self.delivery_limit))
        elif isinstance(parsed, ProcessResult):
            await self._apply_result(parsed)
        elif isinstance(parsed, StatusEvent):
            await self.apply_statuses([parsed])
            log.warning("status_dead_letter_applied", instance_id=parsed.instance_id, status=parsed.status.value)

    async def fail(self, instance_id: str, reason: str) -> None:
        """Fail the instance (unless already final) and announce it."""
        transition = await pipeline_store.fail_instance(instance_id, reason)
        log.warning("job_dead_lettered", instance_id=instance_id, reason=reason, moved=transition is not None)
        if transition is not None:
            await self.announce([transition])

    async def _apply_result(self, result: ProcessResult) -> None:
        try:
            await self.store_results([result])
        except Exception as exc:
            if is_infrastructure_error(exc):
                raise
            log.exception("result_dead_letter_not_stored", instance_id=result.instance_id)
            await self.fail(
                result.instance_id, f"the processing result could not be stored; the result is {REPLAY_HINT}"
            )
            return
        log.warning("result_dead_letter_applied", instance_id=result.instance_id, status=result.status.value)
