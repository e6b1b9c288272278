"""A service started before its broker waits for it: the first connection is retried with jittered backoff.

On a private RabbitMQ node (`tests.private_rabbitmq`) that is not running yet when `connect` starts.
"""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from common.app.settings import BaseServiceSettings
from common.messaging.broker import connect
from tests.private_rabbitmq import PrivateRabbitMQ
from tests.queue_helpers import LIVENESS


async def test_the_first_connection_waits_for_a_broker_that_starts_later() -> None:
    node = PrivateRabbitMQ()
    try:
        settings = BaseServiceSettings(amqp_url=node.url, amqp_connect_timeout=120, retry_max_delay=0.5)
        with capture_logs() as logs:
            connecting = asyncio.create_task(connect(settings, "early-bird"))

            async def retried() -> None:
                while not any(e["event"] == "broker_connect_retry" for e in logs):
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(retried(), LIVENESS)
            assert not connecting.done()
            await asyncio.to_thread(node.start)
            connection = await asyncio.wait_for(connecting, LIVENESS)
        try:
            assert not connection.is_closed
            channel = await connection.channel()
            await channel.declare_queue(exclusive=True)
        finally:
            await connection.close()
    finally:
        await asyncio.to_thread(node.close)


async def test_start_up_gives_up_after_the_connect_timeout() -> None:
    node = PrivateRabbitMQ()  # never started: its port refuses
    try:
        settings = BaseServiceSettings(amqp_url=node.url, amqp_connect_timeout=1, retry_max_delay=0.2)
        with capture_logs() as logs, pytest.raises(ConnectionError):
            await connect(settings, "gives-up")
        assert [e["event"] for e in logs][-1] == "broker_unreachable"
    finally:
        node.close()
