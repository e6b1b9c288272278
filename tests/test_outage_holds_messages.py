"""A database outage costs no message a delivery attempt: results_service holds them, retries, and stores them.

results_service runs against a private PostgreSQL cluster (`tests.private_postgres`) that the test stops
while results and status events are on their way, and starts again. The delivery limit is 1 (a message
returned twice is parked), so a consumer that returned messages during the outage would park them. The
test waits until the held batch has been retried more times than the limit allows, then brings the
database back: every row must be there and nothing parked or dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from structlog.testing import capture_logs

from common.messaging.broker import Topology, declare_topology, delete_topology, open_channel, publish, status_key
from common.messaging.messages import InstanceStatus, StatusEvent
from results_service.main import init_app
from results_service.settings import ResultsSettings
from tests.pipeline_helpers import LIMIT, done_result, eventually, fetch, owner_fixture, register  # noqa: F401
from tests.private_postgres import PrivatePostgres
from tests.queue_helpers import take
from tests.service_auth import as_user, signing

HELD_RETRIES = LIMIT + 3  # more tries than the delivery limit would allow returns


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as cluster:
        yield cluster


@pytest.fixture
async def settings(postgres: PrivatePostgres, amqp_prefix: str, tmp_path: Path) -> ResultsSettings:
    return ResultsSettings(
        database_url=await postgres.create_database("dicomflow"),
        amqp_prefix=amqp_prefix,
        blob_dir=str(tmp_path / "blobs"),
        job_delivery_limit=LIMIT,
        results_batch_ms=20,
        shutdown_timeout=5,
        retry_max_delay=0.2,
    )


@pytest.fixture
async def channel(settings: ResultsSettings) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect_robust(settings.amqp_url)
    async with connection:
        channel = await open_channel(connection)
        yield channel
        await delete_topology(channel, settings.amqp_prefix)


async def test_results_and_status_events_published_during_a_database_outage_are_stored_after_it(
    postgres: PrivatePostgres, settings: ResultsSettings, channel: AbstractChannel, owner: str, aiohttp_client: Any
) -> None:
    topology: Topology = await declare_topology(channel, settings)
    client = await aiohttp_client(init_app(settings), middlewares=signing())
    ids = [(await register(client, owner))[1]["instance_id"] for _ in range(11)]

    await asyncio.to_thread(postgres.stop)
    with capture_logs() as logs:
        for instance_id in ids[:10]:
            await publish(topology.exchange, done_result(instance_id, owner), "result.done")
        event = StatusEvent(instance_id=ids[10], upload_id="u", owner=owner, status=InstanceStatus.PROCESSING)
        await publish(topology.exchange, event, status_key("processing"))

        def retries(work: str) -> int:
            return max((e["attempt"] for e in logs if e["event"] == "outage_retry" and e["work"] == work), default=0)

        async def held_long_enough() -> bool:
            return retries("batch results") >= HELD_RETRIES and retries("batch statuses") >= HELD_RETRIES

        await eventually(held_long_enough)
        await asyncio.to_thread(postgres.start)

        async def all_stored() -> bool:
            rows = await fetch(settings.database_url, "SELECT id, status FROM instances WHERE owner = $1", owner)
            return {row["id"]: row["status"] for row in rows} == {
                **dict.fromkeys(ids[:10], "done"),
                ids[10]: "processing",
            }

        await eventually(all_stored)
        assert any(e["event"] == "outage_recovered" and e["work"] == "batch results" for e in logs)
    rows = await fetch(
        settings.database_url, "SELECT instance_id FROM results WHERE instance_id = ANY($1::text[])", ids
    )
    assert sorted(row["instance_id"] for row in rows) == sorted(ids[:10])
    await take(topology.results, 0)  # every result acked
    await take(topology.status, 0)
    await take(topology.parked, 0)  # none returned past the limit
    await take(topology.deadletters, 0)


async def test_a_request_during_a_database_outage_is_a_503_with_retry_after_not_a_500(
    postgres: PrivatePostgres, settings: ResultsSettings, channel: AbstractChannel, owner: str, aiohttp_client: Any
) -> None:
    await declare_topology(channel, settings)
    client = await aiohttp_client(init_app(settings), middlewares=signing())
    await asyncio.to_thread(postgres.stop)
    try:
        response = await client.get("/api/instances", headers=as_user(owner))
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        body = await response.json()
        assert body["detail"].startswith("A service this request needs (database, file store or message broker)")
    finally:
        await asyncio.to_thread(postgres.start)
