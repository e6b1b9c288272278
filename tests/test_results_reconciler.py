"""results_service's reconciler against the real PostgreSQL and RabbitMQ: an instance left unfinished longer
than its bound gets its job again, with every field, once per round however many replicas reconcile; a backlog
excuses a wait; after the attempt limit the instance fails with a reason and the failure is announced."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue
from structlog.testing import capture_logs

from common.messaging.broker import Topology, broker_key
from common.messaging.messages import ProcessJob
from results_service.main import init_app
from results_service.reconciler import Backlog, Bounds, Round, read_backlog, reconcile_once, reconcile_round
from results_service.settings import ResultsSettings
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    accepted,
    announced,
    channel_fixture,
    client_fixture,
    dicom_fields,
    events_fixture,
    fetch,
    get_json,
    owner_fixture,
    publish_jobs,
    register,
    results_settings_fixture,
    sha_of,
    topology_fixture,
    wait_status,
)
from tests.queue_helpers import take
from tests.service_auth import signing

# The run's database is shared by every test: the bound is far longer than any run, and this test's
# instances are made older than it, so a round here claims only them.
BOUND = 50 * 365 * 24 * 3600.0
LARGE = 1024


async def registered(client: Any, owner: str, count: int) -> list[str]:
    return [(await register(client, owner))[1]["instance_id"] for _ in range(count)]


async def set_rows(database_url: str, ids: list[str], *, age: str, status: str = "received", attempts: int = 0) -> None:
    """Put the instances in `status`, last changed `age` ago (a clock set back rather than waited for)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE instances SET status = $2, updated_at = now() - $3::text::interval, reconcile_attempts = $4 "
            "WHERE id = ANY($1::varchar[])",
            ids,
            status,
            age,
            attempts,
        )
    finally:
        await conn.close()


def bounds(*, large_job_bytes: int = LARGE, max_attempts: int = 3) -> Bounds:
    return Bounds(
        received_after=BOUND, unfinished_after=2 * BOUND, max_attempts=max_attempts, large_job_bytes=large_job_bytes
    )


async def run_round(topology: Topology, backlog: Backlog | None = None, **kwargs: Any) -> Round:
    return await reconcile_round(topology.exchange, bounds(**kwargs), backlog or Backlog())


async def round_of(topology: Topology, **kwargs: Any) -> list[ProcessJob]:
    return (await run_round(topology, **kwargs)).republished


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


async def test_younger_instances_and_final_ones_are_left_alone_and_one_republished_waits_another_bound(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    stale, young, *others = await registered(client, owner, 6)
    await set_rows(database_url, [stale], age="100 years")
    await set_rows(database_url, [young], age="10 years")  # received, but younger than the bound
    # queued and processing have a longer bound (100 years here): 75 years is not overdue for them.
    for instance_id, status in zip(others, ["queued", "processing", "done", "failed"], strict=True):
        await set_rows(database_url, [instance_id], age="75 years", status=status)
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


async def test_a_republished_job_carries_ingests_estimate_and_is_routed_by_the_same_cost_rule(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    # 4 x 4 pixels, 1 frame, 3 samples of 16 bits, native: 96 bytes decoded and nothing encoded (common.dicom.cost)
    registration = accepted(owner)
    registration["dicom"].update(rows=4, columns=4, samples_per_pixel=3, bits_allocated=16)
    response = await client.post(
        "/internal/registrations", json={"items": [{"upload_id": "d" * 32, "registration": registration}]}
    )
    [answer] = (await response.json())["items"]
    instance_id = answer["registered"]["instance_id"]
    await set_rows(database_url, [instance_id], age="100 years")
    await round_of(topology, large_job_bytes=95)
    [message] = await take(topology.jobs_large, 1)
    job = ProcessJob.model_validate_json(message.body)
    assert (job.instance_id, job.cost_bytes) == (instance_id, 96)
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
    return results_settings.model_copy(
        update={
            "reconcile_interval_seconds": 0.05,
            "reconcile_after_seconds": BOUND,
            "reconcile_unfinished_after_seconds": 2 * BOUND,
        }
    )


async def test_the_running_app_reconciles_in_the_background(
    reconciling: ResultsSettings, topology: Topology, aiohttp_client: Any, owner: str, database_url: str
) -> None:
    client = await aiohttp_client(init_app(reconciling), middlewares=signing())
    [instance_id] = await registered(client, owner, 1)
    await set_rows(database_url, [instance_id], age="100 years")
    await wait_status(client, owner, instance_id, "queued")
    [message] = await take(topology.jobs, 1)
    assert ProcessJob.model_validate_json(message.body).instance_id == instance_id


async def test_queued_and_processing_instances_past_their_bound_get_their_job_again_and_count_the_attempt(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    queued, processing = await registered(client, owner, 2)
    await set_rows(database_url, [queued], age="300 years", status="queued")
    await set_rows(database_url, [processing], age="300 years", status="processing", attempts=1)
    published = await round_of(topology)
    assert sorted(job.instance_id for job in published) == sorted([queued, processing])
    messages = await take(topology.jobs, 2)
    assert sorted(ProcessJob.model_validate_json(m.body).instance_id for m in messages) == sorted([queued, processing])
    rows = await fetch(
        database_url,
        "SELECT id, status, reconcile_attempts FROM instances WHERE id = ANY($1::varchar[])",
        [queued, processing],
    )
    assert {row["id"]: (row["status"], row["reconcile_attempts"]) for row in rows} == {
        queued: ("queued", 1),
        processing: ("processing", 2),
    }


async def test_a_backlog_in_the_queue_an_instance_waits_in_excuses_its_wait(
    client: Any, channel: AbstractChannel, topology: Topology, owner: str, database_url: str
) -> None:
    received, queued_small, queued_large = await registered(client, owner, 3)
    await set_rows(database_url, [received], age="300 years")
    await set_rows(database_url, [queued_small, queued_large], age="300 years", status="queued")
    await fetch(database_url, "UPDATE instances SET cost_bytes = 100 WHERE id = $1", queued_large)  # estimate over 50
    waiting = Backlog(copies=True, standard=True, large=True)
    assert await round_of(topology, backlog=waiting, large_job_bytes=50) == []
    only_large_waits = Backlog(copies=True, standard=False, large=True)
    [published] = await round_of(topology, backlog=only_large_waits, large_job_bytes=50)
    assert published.instance_id == queued_small
    [message] = await take(topology.jobs, 1)
    assert ProcessJob.model_validate_json(message.body).instance_id == queued_small
    nothing_waits = await read_backlog_after_draining(client, topology)
    published_now = await round_of(topology, backlog=nothing_waits, large_job_bytes=50)
    assert sorted(job.instance_id for job in published_now) == sorted([received, queued_large])


async def read_backlog_after_draining(client: Any, topology: Topology) -> Backlog:
    """The backlog read from the broker once the test's own queues are empty: nothing waits."""
    for queue in (topology.jobs, topology.jobs_large, topology.queued):
        await queue.purge()
    backlog = await read_backlog(client.server.app[broker_key].connection, topology)
    assert backlog == Backlog()
    return backlog


async def test_an_instance_out_of_attempts_fails_with_a_reason_a_person_can_act_on(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    stuck_received, stuck_processing, still_trying = await registered(client, owner, 3)
    await set_rows(database_url, [stuck_received], age="300 years", attempts=3)
    await set_rows(database_url, [stuck_processing], age="300 years", status="processing", attempts=3)
    await set_rows(database_url, [still_trying], age="300 years", status="processing", attempts=2)
    outcome = await run_round(topology, max_attempts=3)
    assert [job.instance_id for job in outcome.republished] == [still_trying]
    assert sorted(t.instance_id for t in outcome.failed) == sorted([stuck_received, stuck_processing])
    rows = await fetch(
        database_url,
        "SELECT id, status, reason FROM instances WHERE id = ANY($1::varchar[])",
        [stuck_received, stuck_processing],
    )
    reasons = {row["id"]: (row["status"], row["reason"]) for row in rows}
    assert reasons[stuck_received][0] == reasons[stuck_processing][0] == "failed"
    assert reasons[stuck_received][1].startswith(
        "Its processing job could not be queued: it was published again 3 times"
    )
    assert "Check that RabbitMQ is up" in reasons[stuck_received][1]
    assert reasons[stuck_processing][1].startswith("Processing never finished: its job was queued again 3 times")
    assert "Check that processor_service is running" in reasons[stuck_processing][1]
    status, body = await get_json(client, f"/api/instances/{stuck_processing}", owner)
    assert (status, body["status"], body["reason"]) == (200, "failed", reasons[stuck_processing][1])
    assert await run_round(topology, max_attempts=3) == Round(republished=[], failed=[])  # final: left alone


async def test_a_full_pass_reads_the_backlog_and_announces_the_failures_for_the_live_feeds(
    client: Any, channel: AbstractChannel, topology: Topology, owner: str, database_url: str, events: AbstractQueue
) -> None:
    [stuck] = await registered(client, owner, 1)
    await set_rows(database_url, [stuck], age="300 years", status="queued", attempts=3)
    await read_backlog_after_draining(client, topology)
    broker = client.server.app[broker_key]  # the app's own: the announcement goes out as the app's would
    outcome = await reconcile_once(broker, bounds(max_attempts=3))
    assert [t.instance_id for t in outcome.failed] == [stuck]
    [event] = await announced(events, 1)
    assert (event.instance_id, event.status, event.owner) == (stuck, "failed", owner)
    assert event.reason is not None and event.reason.startswith("Processing never finished")


async def test_the_backlog_is_read_afresh_every_round(client: Any, topology: Topology, owner: str) -> None:
    """A repeated passive declare on one channel would answer from its first reply: each read must be new."""
    connection = client.server.app[broker_key].connection
    await publish_jobs(topology, owner, ["f" * 32])
    assert (await read_backlog(connection, topology)).standard is True
    await topology.jobs.purge()
    assert (await read_backlog(connection, topology)).standard is False
