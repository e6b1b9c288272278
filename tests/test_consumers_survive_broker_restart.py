"""Every consumer is back after a broker restart, with no manual step; readiness says when it is not.

On a private RabbitMQ node (`tests.private_rabbitmq`), never the machine's shared one: results_service and
processor_service run against it, the node is stopped and started again (same ports, same data), and
messages published after the restart must be consumed: rows in PostgreSQL, results on the queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from common.messaging.broker import JOB_STANDARD, Topology, declare_topology, open_channel, publish, status_key
from common.messaging.messages import InstanceStatus, ProcessResult, StatusEvent
from common.storage.blobs import BlobStore
from processor_service.main import init_app as init_processor
from processor_service.settings import ProcessorSettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    LIMIT,
    done_result,
    eventually,
    fetch,
    job_for,
    owner_fixture,
    register,
    wait_status,
)
from tests.private_rabbitmq import PrivateRabbitMQ, private_rabbitmq_fixture  # noqa: F401  (fixture, used by name)
from tests.queue_helpers import take
from tests.service_auth import signing

PREFIX = "heal"  # the node is the test's own: no other test shares its names


@pytest.fixture
async def publisher(private_rabbitmq: PrivateRabbitMQ) -> AsyncIterator[AbstractRobustConnection]:
    """The test's own robust connection to the private node (it reconnects after the restart too)."""
    connection = await aio_pika.connect_robust(private_rabbitmq.url, reconnect_interval=0.2)
    async with connection:
        yield connection


async def topology_on(connection: AbstractRobustConnection, settings: ResultsSettings | ProcessorSettings) -> Topology:
    return await declare_topology(await open_channel(connection), settings)


async def ready_status(client: Any) -> int:
    return int((await client.get("/readyz")).status)


async def restart_broker(node: PrivateRabbitMQ, client: Any) -> None:
    """Stop the node, see the service unready, start it again, see the service ready (consumers back)."""
    await asyncio.to_thread(node.stop)

    async def unready() -> bool:
        return await ready_status(client) == 503

    await eventually(unready)
    await asyncio.to_thread(node.start)

    async def ready() -> bool:
        return await ready_status(client) == 200

    await eventually(ready)


async def test_results_service_consumes_again_after_a_broker_restart(
    private_rabbitmq: PrivateRabbitMQ,
    publisher: AbstractRobustConnection,
    database_url: str,
    owner: str,
    tmp_path: Path,
    aiohttp_client: Any,
) -> None:
    settings = ResultsSettings(
        database_url=database_url,
        amqp_url=private_rabbitmq.url,
        amqp_prefix=PREFIX,
        blob_dir=str(tmp_path / "blobs"),
        job_delivery_limit=LIMIT,
        results_batch_ms=20,
        shutdown_timeout=5,
        amqp_reconnect_interval=0.2,
    )
    client = await aiohttp_client(init_results(settings), middlewares=signing())
    topology = await topology_on(publisher, settings)
    ids = [(await register(client, owner))[1]["instance_id"] for _ in range(5)]
    await publish(topology.exchange, done_result(ids[0], owner), "result.done")
    await wait_status(client, owner, ids[0], "done")
    assert await ready_status(client) == 200

    await restart_broker(private_rabbitmq, client)

    topology = await topology_on(publisher, settings)  # the test's channel was restored as well
    await publish(topology.exchange, done_result(ids[1], owner), "result.done")
    await publish(topology.exchange, job_for(ids[2], owner), JOB_STANDARD)  # its copy goes to P.queued
    processing = StatusEvent(instance_id=ids[3], upload_id="u", owner=owner, status=InstanceStatus.PROCESSING)
    await publish(topology.exchange, processing, status_key("processing"))
    dead = job_for(ids[4], owner)
    await topology.dlx.publish(
        aio_pika.Message(dead.model_dump_json().encode(), type=dead.kind, message_id=dead.message_id), routing_key=""
    )

    expected = {ids[0]: "done", ids[1]: "done", ids[2]: "queued", ids[3]: "processing", ids[4]: "failed"}

    async def all_applied() -> bool:
        rows = await fetch(database_url, "SELECT id, status FROM instances WHERE owner = $1", owner)
        return {row["id"]: row["status"] for row in rows} == expected

    await eventually(all_applied)
    rows = await fetch(database_url, "SELECT instance_id FROM results WHERE instance_id = ANY($1::text[])", ids)
    assert sorted(row["instance_id"] for row in rows) == sorted(ids[:2])


async def test_processor_consumes_jobs_again_after_a_broker_restart(
    private_rabbitmq: PrivateRabbitMQ,
    publisher: AbstractRobustConnection,
    tmp_path: Path,
    samples_dir: Path,
    aiohttp_client: Any,
) -> None:
    settings = ProcessorSettings(
        amqp_url=private_rabbitmq.url,
        amqp_prefix=PREFIX,
        blob_dir=str(tmp_path / "blobs"),
        job_delivery_limit=LIMIT,
        processor_concurrency=1,
        shutdown_timeout=5,
        amqp_reconnect_interval=0.2,
    )
    store = BlobStore(tmp_path / "blobs", settings.keyring())
    sha256 = await store.put_bytes((samples_dir / "sample-01-dicom.dcm").read_bytes())
    client = await aiohttp_client(init_processor(settings))
    assert await ready_status(client) == 200

    await restart_broker(private_rabbitmq, client)

    topology = await topology_on(publisher, settings)
    job = job_for("inst-after-restart", "alice").model_copy(update={"sha256": sha256})
    await publish(topology.exchange, job, JOB_STANDARD)
    [message] = await take(topology.results, 1)
    result = ProcessResult.model_validate_json(message.body)
    assert (result.instance_id, result.status) == ("inst-after-restart", InstanceStatus.DONE)
    await take(topology.jobs, 0)  # acked
    await take(topology.parked, 0)
