"""The consuming edge: one delivery turned into ack, reject or hold, and consumers that outlive the broker.

`handle_delivery` applies the house rules to one delivery (see its docstring and
`common.messaging.faults`). `ConsumerSet` opens a channel per consumer on the service's robust
connection and *declares* each queue there: aio-pika's robust channel restores only the queues and
consumers it declared itself, so a queue merely looked up (`get_queue(..., ensure=False)`) loses its
consumer for good when the broker restarts. Declared, every consumer is re-declared and re-attached
after a restart or a failover to a new node. `ConsumerSet.ready` is its readiness check: every channel
open and every consumer attached right now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from aiohttp import web
from pydantic import BaseModel, ValidationError

from common.app.logs import bind_correlation_id, get_logger
from common.app.settings import BaseServiceSettings
from common.messaging.broker import BROKER_ERRORS, CORRELATION_AMQP_HEADER, declare_queue, open_channel
from common.messaging.faults import MAX_RETRY_DELAY, DeliveryLost, retry_through_outage

log = get_logger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[M, AbstractIncomingMessage], Awaitable[None]]
RawHandler = Callable[[AbstractIncomingMessage], Awaitable[None]]


class RejectMessage(Exception):
    """Raised by a handler for a message that can never succeed: reject it to the dead-letter exchange."""


def parse_message(message: AbstractIncomingMessage, model_cls: type[M]) -> M:
    """The message body as `model_cls`; raise RejectMessage when it is not one (or not this version)."""
    try:
        return model_cls.model_validate_json(message.body)
    except ValidationError as exc:
        raise RejectMessage(f"not a valid {model_cls.__name__}: {exc.error_count()} error(s)") from exc


def typed(handler: Handler[M], model_cls: type[M]) -> RawHandler:
    """A handler of raw deliveries that parses the body as `model_cls` first (RejectMessage if it is not)."""

    async def handle(message: AbstractIncomingMessage) -> None:
        await handler(parse_message(message, model_cls), message)

    return handle


async def handle_delivery(
    message: AbstractIncomingMessage, handler: RawHandler, *, max_delay: float = MAX_RETRY_DELAY
) -> None:
    """Run one delivery through `handler` with the edge's rules.

    Success acks (the handler returns only once its effect is durable; it may also ack itself).
    RejectMessage rejects without requeue, so the message goes to the dead-letter exchange.
    An infrastructure error never returns the message: the handler runs again with backoff while the
    delivery is held, until it succeeds; if the delivery's channel closes meanwhile, the broker
    redelivers it and nothing is settled here. Any other exception is the message's: reject with
    requeue, which the broker counts against the delivery limit.
    """
    header = (message.headers or {}).get(CORRELATION_AMQP_HEADER)
    bind_correlation_id(header if isinstance(header, str) else None)
    try:
        await retry_through_outage(
            lambda: handler(message),
            what=f"message {message.type or 'untyped'}",
            max_delay=max_delay,
            still_wanted=lambda: not message.channel.is_closed,
        )
    except RejectMessage as exc:
        log.warning("message_rejected", message_id=message.message_id, type=message.type, reason=str(exc))
        await _settle(message, ack=False, requeue=False)
    except DeliveryLost:
        log.warning("delivery_lost", message_id=message.message_id, type=message.type)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise  # left unsettled: closing the channel gives it back
    except Exception:
        log.exception("message_failed", message_id=message.message_id, type=message.type)
        await _settle(message, ack=False, requeue=True)
    else:
        await _settle(message, ack=True)


async def _settle(message: AbstractIncomingMessage, *, ack: bool, requeue: bool = False) -> None:
    """Ack or reject unless the handler already did; on a closed channel the broker redelivers anyway."""
    if message.processed:
        return
    try:
        await (message.ack() if ack else message.reject(requeue=requeue))
    except BROKER_ERRORS as exc:
        log.warning("settle_failed", message_id=message.message_id, type=message.type, error=repr(exc))


async def consume(
    queue: AbstractQueue, handler: Handler[M], model_cls: type[M], *, max_delay: float = MAX_RETRY_DELAY
) -> str:
    """Start consuming `queue`; every delivery goes through `handle_delivery`. Returns the consumer tag."""
    return await consume_raw(queue, typed(handler, model_cls), max_delay=max_delay)


async def consume_raw(queue: AbstractQueue, handler: RawHandler, *, max_delay: float = MAX_RETRY_DELAY) -> str:
    """Like `consume`, for a handler that reads the delivery itself (e.g. by its `type`)."""

    async def on_message(message: AbstractIncomingMessage) -> None:
        await handle_delivery(message, handler, max_delay=max_delay)

    return await queue.consume(on_message)


@dataclass
class Consumer:
    """One consumer of a ConsumerSet: its own channel, the queue declared on it, its tag."""

    channel: AbstractChannel
    queue: AbstractQueue
    tag: str

    def attached(self) -> bool:
        """The channel is open and the broker has confirmed this consumer on it (after any restore)."""
        underlay = getattr(self.channel, "_channel", None)  # aio-pika keeps no public, non-blocking view
        if self.channel.is_closed or underlay is None:
            return False
        return self.tag in underlay.channel.consumers


class ConsumerSet:
    """The consumers of one service on its robust connection, restored with it, and their readiness."""

    def __init__(self, connection: AbstractRobustConnection, settings: BaseServiceSettings, name: str) -> None:
        self.connection = connection
        self.settings = settings
        self.name = name
        self.consumers: list[Consumer] = []

    async def add(self, queue_name: str, handler: RawHandler, *, prefetch: int) -> Consumer:
        """Open a channel with `prefetch`, declare `queue_name` on it (topology arguments) and consume it."""
        channel = await open_channel(self.connection, prefetch=prefetch)
        queue = await declare_queue(channel, self.settings, queue_name)
        tag = await consume_raw(queue, handler, max_delay=self.settings.retry_max_delay)
        consumer = Consumer(channel, queue, tag)
        self.consumers.append(consumer)
        return consumer

    async def add_typed(self, queue_name: str, handler: Handler[M], model_cls: type[M], *, prefetch: int) -> Consumer:
        """`add` for a handler of one message model."""
        return await self.add(queue_name, typed(handler, model_cls), prefetch=prefetch)

    async def ready(self, _: web.Application | None = None) -> None:
        """Readiness check: the connection is up and every consumer is attached; raises ConnectionError if not."""
        if self.connection.is_closed or not self.connection.connected.is_set():
            raise ConnectionError(f"{self.name}: no connection to RabbitMQ")
        detached = [c.queue.name for c in self.consumers if not c.attached()]
        if detached:
            raise ConnectionError(f"{self.name}: not consuming {', '.join(detached)}")

    async def stop_consuming(self) -> None:
        """Cancel every consumer (deliveries in hand are still settled on their channels)."""
        for consumer in self.consumers:
            with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                await asyncio.wait_for(consumer.queue.cancel(consumer.tag), self.settings.shutdown_timeout)

    async def close(self) -> None:
        """Close every channel."""
        for consumer in self.consumers:
            with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                await consumer.channel.close()
