"""This replica's consumer of `P.events`: every announced status change, handed to the hub.

The queue is this replica's own (exclusive, auto-delete), declared at start-up and bound only
while a socket is open (`gateway.feed.binding`). Live events are worthless after a while, so the
queue of a stuck replica is bounded in age and length.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import WSCloseCode, web
from pamqp.common import FieldTable

from common.app.logs import get_logger
from common.messaging.broker import TopologyNames, connect, open_channel
from common.messaging.consuming import consume
from common.messaging.messages import StatusChanges
from gateway.feed.binding import FeedBinding
from gateway.keys import event_hub_key, feed_binding_key, feed_connection_key, settings_key

log = get_logger(__name__)

QUEUE_ARGUMENTS: FieldTable = {"x-message-ttl": 60_000, "x-max-length": 100_000, "x-overflow": "drop-head"}


def _replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def feed_consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Consume `P.events` through this replica's own exclusive queue; close every socket on the way out."""
    settings, hub = app[settings_key], app[event_hub_key]
    names = TopologyNames(settings.amqp_prefix)
    replica = _replica_name()
    connection = await connect(settings, f"gateway-events-{replica}")
    try:
        channel = await open_channel(connection, prefetch=256)
        exchange = await channel.declare_exchange(names.events, aio_pika.ExchangeType.FANOUT, durable=True)
        queue = await channel.declare_queue(
            f"{names.events}.gateway.{replica}", exclusive=True, auto_delete=True, arguments=QUEUE_ARGUMENTS
        )
        app[feed_binding_key] = FeedBinding(queue, exchange)  # bound while a socket is open

        async def handle_changes(changes: StatusChanges, _: AbstractIncomingMessage) -> None:
            for event in changes.events:
                hub.dispatch(event)

        await consume(queue, handle_changes, StatusChanges)
        app[feed_connection_key] = connection
        log.info("events_feed_started", queue=queue.name)
        yield
    finally:
        await hub.close_all(WSCloseCode.GOING_AWAY, b"server shutdown")
        await connection.close()


async def close_sockets(app: web.Application) -> None:
    """on_shutdown: close the sockets before the server waits for handlers to finish."""
    await app[event_hub_key].close_all(WSCloseCode.GOING_AWAY, b"server shutdown")


async def feed_ready(app: web.Application) -> None:
    """Readiness: the feed's RabbitMQ connection is open."""
    if app[feed_connection_key].is_closed:
        raise ConnectionError("the events feed's RabbitMQ connection is closed")
