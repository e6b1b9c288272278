"""results_service's reconciler against the real PostgreSQL and RabbitMQ: an instance left `received` longer
than the bound gets its job again, with every field, once per round however many replicas reconcile."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from common.messaging.broker import Topology
from common.messaging.messages import ProcessJob
from results_service.main import init_app
from results_service.reconciler import republish_stale
from results_service.settings import ResultsSettings
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    dicom_fields,
    fetch,
    owner_fixture,
    register,
    results_settings_fixture,
    sha_of,
    topology_fixture,
    wait_status,
)
from tests.queue_helpers import take

# The run's database is shared by every test: the bound is far longer than any run, and this test's
# instances are made older than it, so a round here claims only them.
BOUND = 50 * 365 * 24 * 3600.0
LARGE = 1024


async def registered(client: Any, owner: str, count: int) -> list[str]:
    return [(await register(client, owner))[1]["instance_id"] for _ in range(count)]


async def set_rows(database_url: str, ids: list[str], *, age: str, status: str = "received") -> None:
    """Put the instances in `status`, last changed `age` ago (a clock set back rather than waited for)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE instances SET status = $2, updated_at = now() - $3::text::interval WHERE id = ANY($1::varchar[])",
            ids,
            status,
            age,
        )
    finally:
        await conn.close()


async def round_of(topology: Topology, *, large_job_bytes: int = LARGE) -> list[ProcessJob]:
    return await republish_stale(topology.exchange, after_seconds=BOUND, large_job_bytes=large_job_bytes)


async def test_an_instance_received_longer_than_the_bound_gets_its_job_again_with_every_field(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    _, body = await register(client, owner, content="stale", upload_id="c" * 32)
    instance_id = body["instance_id"]
    await set_rows(database_url, [instance_id], age="100 years")
    with capture_logs() as logs:
        [published] = await round_of(topology)
    [message] = await take(topology.jobs, 1)
    job = ProcessJob.model_validate_json(message.body)
    assert job == published
    assert message.message_id == job.message_id == f"{instance_id}.job.1"
    expected = dicom_fields()
    assert (
        job.instance_id,
        job.upload_id,
        job.owner,
        job.sha256,
        job.size,
        job.sop_class_uid,
        job.transfer_syntax_uid,
    ) == (
        instance_id,
        "c" * 32,
        owner,
        sha_of("stale"),
        10,
        expected["sop_class_uid"],
        expected["transfer_syntax_uid"],
    )
    assert [(e["event"], e["instance_id"]) for e in logs if e["event"] == "job_republished"] == [
        ("job_republished", instance_id)
    ]
    await wait_status(client, owner, instance_id, "queued")  # the copy beside the job moved it
    await take(topology.jobs_large, 0)


async def test_younger_instances_and_other_states_are_left_alone_and_one_republished_waits_another_bound(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    stale, young, *others = await registered(client, owner, 6)
    await set_rows(database_url, [stale], age="100 years")
    await set_rows(database_url, [young], age="10 years")  # received, but younger than the bound
    for instance_id, status in zip(others, ["queued", "processing", "done", "failed"], strict=True):
        await set_rows(database_url, [instance_id], age="100 years", status=status)
    [published] = await round_of(topology)  # the round ran: it took the stale one
    assert published.instance_id == stale
    [message] = await take(topology.jobs, 1)
    assert ProcessJob.model_validate_json(message.body).instance_id == stale
    assert await round_of(topology) == []  # just republished: not again before another bound
    await take(topology.jobs, 0)
    rows = await fetch(database_url, "SELECT id, status FROM instances WHERE id = ANY($1::varchar[])", others)
    assert {row["id"]: row["status"] for row in rows} == dict(
        zip(others, ["queued", "processing", "done", "failed"], strict=True)
    )


async def test_a_republished_job_is_routed_by_the_same_size_rule_as_ingests(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    [instance_id] = await registered(client, owner, 1)  # 10 bytes
    await set_rows(database_url, [instance_id], age="100 years")
    await round_of(topology, large_job_bytes=9)
    [message] = await take(topology.jobs_large, 1)
    assert ProcessJob.model_validate_json(message.body).instance_id == instance_id
    await take(topology.jobs, 0)


async def test_two_reconcilers_at_once_publish_one_job_per_instance(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    ids = await registered(client, owner, 40)
    await set_rows(database_url, ids, age="100 years")
    first, second = await asyncio.gather(round_of(topology), round_of(topology))
    claimed = [job.instance_id for job in first + second]
    assert sorted(claimed) == sorted(ids)  # each once, between the two replicas
    messages = await take(topology.jobs, len(ids))
    assert sorted(ProcessJob.model_validate_json(m.body).instance_id for m in messages) == sorted(ids)


@pytest.fixture
def reconciling(results_settings: ResultsSettings) -> ResultsSettings:
    return results_settings.model_copy(update={"reconcile_interval_seconds": 0.05, "reconcile_after_seconds": BOUND})


async def test_the_running_app_reconciles_in_the_background(
    reconciling: ResultsSettings, topology: Topology, aiohttp_client: Any, owner: str, database_url: str
) -> None:
    client = await aiohttp_client(init_app(reconciling))
    [instance_id] = await registered(client, owner, 1)
    await set_rows(database_url, [instance_id], age="100 years")
    await wait_status(client, owner, instance_id, "queued")
    [message] = await take(topology.jobs, 1)
    assert ProcessJob.model_validate_json(message.body).instance_id == instance_id
