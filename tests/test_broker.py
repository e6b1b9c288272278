"""The broker topology and its helpers, against the real RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aio_pika.exceptions import PublishError

from common.app.logs import bind_correlation_id, current_correlation_id
from common.app.settings import BaseServiceSettings
from common.messaging.broker import (
    CORRELATION_AMQP_HEADER,
    JOB_STANDARD,
    Topology,
    declare_topology,
    delete_topology,
    open_channel,
    publish,
)
from common.messaging.consuming import RejectMessage, consume
from common.messaging.messages import ProcessJob
from tests.queue_helpers import LIVENESS, take

LIMIT = 2


@pytest.fixture
def settings(amqp_prefix: str) -> BaseServiceSettings:
    return BaseServiceSettings(amqp_prefix=amqp_prefix, job_delivery_limit=LIMIT)


@pytest.fixture
async def channel(settings: BaseServiceSettings) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect_robust(settings.amqp_url)
    async with connection:
        channel = await open_channel(connection)
        yield channel
        await delete_topology(channel, settings.amqp_prefix)


@pytest.fixture
async def topology(channel: AbstractChannel, settings: BaseServiceSettings) -> Topology:
    return await declare_topology(channel, settings)


def make_job(**overrides: object) -> ProcessJob:
    fields: dict[str, object] = {
        "instance_id": "i-1",
        "upload_id": "u-1",
        "owner": "local",
        "sha256": "a" * 64,
        "size": 10,
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
    }
    fields.update(overrides)
    return ProcessJob.model_validate(fields)


async def test_published_job_is_consumed_with_its_correlation_id(topology: Topology) -> None:
    job = make_job()
    bind_correlation_id("corr-42")
    await publish(topology.exchange, job, JOB_STANDARD)
    received: asyncio.Queue[tuple[ProcessJob, str | None, AbstractIncomingMessage]] = asyncio.Queue()

    async def handler(model: ProcessJob, message: AbstractIncomingMessage) -> None:
        await received.put((model, current_correlation_id(), message))

    bind_correlation_id("someone-else")
    await consume(topology.jobs, handler, ProcessJob)
    model, correlation_id, message = await asyncio.wait_for(received.get(), LIVENESS)
    assert model == job
    assert correlation_id == "corr-42"
    assert message.headers[CORRELATION_AMQP_HEADER] == "corr-42"
    assert message.message_id == job.message_id
    assert message.type == "process_job"
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_failing_handler_parks_the_job_after_the_delivery_limit(topology: Topology) -> None:
    job = make_job()
    attempts: list[str] = []

    async def handler(model: ProcessJob, message: AbstractIncomingMessage) -> None:
        attempts.append(model.message_id)
        raise RuntimeError("worker crashed")

    await consume(topology.jobs, handler, ProcessJob)
    await publish(topology.exchange, job, JOB_STANDARD)
    [parked] = await take(topology.parked, 1)
    [dead] = await take(topology.deadletters, 1)
    assert attempts == [job.message_id] * (LIMIT + 1)
    assert ProcessJob.model_validate_json(parked.body) == job
    assert dead.body == parked.body
    assert parked.headers["x-death"][0]["routing-keys"] == [JOB_STANDARD]
    assert parked.headers["x-death"][0]["reason"] == "delivery_limit"


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"kind": "process_job", "version": 2}'],
    ids=["unparseable", "unknown-version"],
)
async def test_unreadable_message_goes_straight_to_the_dead_letters(topology: Topology, body: bytes) -> None:
    calls: list[ProcessJob] = []

    async def handler(model: ProcessJob, message: AbstractIncomingMessage) -> None:
        calls.append(model)

    await consume(topology.jobs, handler, ProcessJob)
    await topology.exchange.publish(aio_pika.Message(body=body, message_id="bad-1"), routing_key=JOB_STANDARD)
    await take(topology.parked, 1)
    [dead] = await take(topology.deadletters, 1)
    assert calls == []
    assert dead.body == body
    assert dead.headers["x-death"][0]["reason"] == "rejected"


async def test_handler_reject_dead_letters_without_retry(topology: Topology) -> None:
    attempts: list[str] = []

    async def handler(model: ProcessJob, message: AbstractIncomingMessage) -> None:
        attempts.append(model.message_id)
        raise RejectMessage("blob is missing")

    await consume(topology.jobs, handler, ProcessJob)
    job = make_job()
    await publish(topology.exchange, job, JOB_STANDARD)
    await take(topology.parked, 1)
    assert attempts == [job.message_id]


async def test_topology_declaration_is_idempotent(
    channel: AbstractChannel, topology: Topology, settings: BaseServiceSettings
) -> None:
    await publish(topology.exchange, make_job(), JOB_STANDARD)
    again = await declare_topology(channel, settings)
    assert again.names == topology.names
    await take(again.jobs, 1)


async def test_unroutable_publish_raises(topology: Topology) -> None:
    with pytest.raises(PublishError):
        await publish(topology.exchange, make_job(), "nowhere.bound")
