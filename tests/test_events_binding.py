"""A replica's events queue is bound only while one of its sockets is open, against the real RabbitMQ.

Whether an announcement reaches any queue is read from RabbitMQ itself: published `mandatory` on a
channel that raises for returned messages, it fails exactly when no queue is bound to `P.events`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.exceptions import DeliveryError

from common.messaging.broker import TopologyNames, to_amqp
from common.messaging.messages import InstanceStatus, StatusChanges
from tests.feed_helpers import GatewayFactory, event, next_status, open_feed, token_for
from tests.pipeline_helpers import eventually


@pytest.fixture
async def strict_events(amqp_prefix: str) -> AsyncIterator[aio_pika.abc.AbstractExchange]:
    """`P.events` on a channel where a message routed to no queue raises DeliveryError."""
    connection = await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    name = TopologyNames(amqp_prefix).events
    yield await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
    await channel.exchange_delete(name)
    await connection.close()


async def routed(exchange: aio_pika.abc.AbstractExchange, owner: str = "alice") -> bool:
    """True when RabbitMQ put an announcement in at least one queue."""
    try:
        await exchange.publish(
            to_amqp(StatusChanges(events=[event(owner, InstanceStatus.DONE)])), routing_key="", mandatory=True
        )
    except DeliveryError:
        return False
    return True


async def becomes_unrouted(exchange: aio_pika.abc.AbstractExchange) -> None:
    """The unbind follows the socket's close on the server side: wait for it."""

    async def unrouted() -> bool:
        return not await routed(exchange)

    await eventually(unrouted)


async def test_with_no_socket_open_announcements_reach_no_queue(
    make_gateway: GatewayFactory, strict_events: Any
) -> None:
    await make_gateway()
    await make_gateway()
    assert not await routed(strict_events)


async def test_the_first_socket_binds_before_ready_and_the_last_one_unbinds(
    make_gateway: GatewayFactory, strict_events: Any
) -> None:
    gateway = await make_gateway()
    alice = await open_feed(gateway, token_for("alice"))
    assert await routed(strict_events)  # bound by the time `ready` arrived: nothing after it is missed
    assert (await next_status(alice))["status"] == "done"

    bob = await open_feed(gateway, token_for("bob"))
    await alice.close()
    assert await routed(strict_events, owner="bob")  # Bob's socket still holds the binding
    assert (await next_status(bob))["owner"] == "bob"

    await bob.close()
    await becomes_unrouted(strict_events)

    carol = await open_feed(gateway, token_for("carol"))  # and bound again for the next one
    assert await routed(strict_events, owner="carol")
    assert (await next_status(carol))["owner"] == "carol"


async def test_a_replica_without_sockets_does_not_hold_a_binding_for_the_others(
    make_gateway: GatewayFactory, strict_events: Any
) -> None:
    watched, idle = await make_gateway(), await make_gateway()
    ws = await open_feed(watched, token_for("alice"))
    assert await routed(strict_events)
    await ws.close()
    await becomes_unrouted(strict_events)  # the idle replica never bound
    await idle.close()
