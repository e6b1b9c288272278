"""results_service's /metrics shows what an operator needs to see trouble coming, read from the real broker and
database at scrape time: queue depths and consumers, the database's state, the unfinished instances and their age."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel
from prometheus_client.parser import text_string_to_metric_families

from common.messaging.broker import Topology
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    fetch,
    owner_fixture,
    register,
    results_settings_fixture,
    topology_fixture,
)

YEAR = 365.25 * 24 * 3600


async def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_queue_depths_and_consumers_are_read_from_the_broker(
    client: Any, channel: AbstractChannel, topology: Topology
) -> None:
    for number in range(3):
        message = aio_pika.Message(body=b"{}", message_id=f"parked-{number}")
        await channel.default_exchange.publish(message, routing_key=topology.names.parked)
    samples = await scrape(client)
    assert samples[("dicomflow_queue_messages", (("queue", "parked"),))] == 3
    assert samples[("dicomflow_queue_consumers", (("queue", "parked"),))] == 0  # operators read it by hand
    for consumed in ("results", "status", "queued", "deadletters"):
        assert samples[("dicomflow_queue_consumers", (("queue", consumed),))] >= 1, consumed
    assert samples[("dicomflow_queue_messages", (("queue", "audit"),))] == 0


async def test_a_deleted_queue_shows_as_minus_one_and_the_scrape_still_answers(
    client: Any, channel: AbstractChannel, topology: Topology
) -> None:
    await channel.queue_delete(topology.names.parked)
    samples = await scrape(client)
    assert samples[("dicomflow_queue_messages", (("queue", "parked"),))] == -1
    assert samples[("dicomflow_queue_messages", (("queue", "jobs"),))] == 0  # the others are still read


async def test_unfinished_instances_are_counted_by_status_with_the_age_of_the_oldest(
    client: Any, owner: str, database_url: str
) -> None:
    _, first = await register(client, owner, content="metrics-old")
    await register(client, owner, content="metrics-new")
    await fetch(
        database_url,
        "UPDATE instances SET created_at = now() - interval '900 years' WHERE id = $1",
        first["instance_id"],
    )
    samples = await scrape(client)
    counts = await fetch(database_url, "SELECT status, count(*) AS n FROM instances GROUP BY status")
    expected = {row["status"]: row["n"] for row in counts}
    for status in ("received", "queued", "processing"):
        assert samples[("dicomflow_unfinished_instances", (("status", status),))] == expected.get(status, 0), status
    oldest = samples[("dicomflow_oldest_unfinished_instance_age_seconds", (("status", "received"),))]
    assert 899 * YEAR < oldest < 901 * YEAR  # a year Python's datetime can still read back
    assert samples[("dicomflow_database_connected", ())] == 1


async def test_the_broker_connection_state_is_reported_per_connection(client: Any) -> None:
    samples = await scrape(client)
    assert samples[("dicomflow_broker_connected", (("connection", "results_service"),))] == 1
