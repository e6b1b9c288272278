"""results_service's consumers against the real RabbitMQ and PostgreSQL: batched idempotent results,
forward-only status events and job copies, dead-lettered jobs failing their instance with a reason.

A test that a message changed nothing first proves the consumer took it: a witness published after it on
the same queue has been applied (`consumed_through_witness`), or the consumer logged its handling.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aio_pika.abc import AbstractQueue
from structlog.testing import capture_logs

from common.messaging.broker import JOB_STANDARD, Topology, publish, status_key
from common.messaging.messages import InstanceStatus, ProcessJob, StatusEvent
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    LIMIT,
    announced,
    channel_fixture,
    client_fixture,
    consumed_through_witness,
    done_result,
    events_fixture,
    eventually,
    fetch,
    get_json,
    instance_moved_to,
    job_for,
    owner_fixture,
    publish_jobs,
    register,
    results_settings_fixture,
    status_of,
    topology_fixture,
    wait_status,
)
from tests.queue_helpers import take


async def test_the_same_result_twice_is_stored_once_and_announced(
    client: Any, topology: Topology, events: AbstractQueue, owner: str, database_url: str
) -> None:
    _, body = await register(client, owner)
    instance_id = body["instance_id"]
    result = done_result(instance_id, owner)
    await publish(topology.exchange, result, "result.done")
    await publish(topology.exchange, result, "result.done")
    await publish(topology.exchange, done_result(instance_id, owner), "result.done")  # another message id
    witness = await consumed_through_witness(client, topology, owner, "results")  # all three were taken
    await take(topology.results, 0)  # and acked, none requeued
    rows = await fetch(database_url, "SELECT status, data FROM results WHERE instance_id = $1", instance_id)
    assert len(rows) == 1 and rows[0]["status"] == "done"
    _, view = await get_json(client, f"/api/instances/{instance_id}", owner)
    assert view["result"]["note"] == "no pixel data" and view["result"]["worker"] == "host:1"
    announcements = await announced(events, 2)  # the instance once, then the witness
    assert [(e.instance_id, e.status) for e in announcements] == [
        (instance_id, InstanceStatus.DONE),
        (witness, InstanceStatus.DONE),
    ]


async def test_a_batch_of_results_is_stored_in_one_go(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    ids = [(await register(client, owner))[1]["instance_id"] for _ in range(30)]
    await asyncio.gather(*(publish(topology.exchange, done_result(i, owner), "result.done") for i in ids))

    async def all_done() -> bool:
        rows = await fetch(database_url, "SELECT count(*) FROM instances WHERE owner = $1 AND status = 'done'", owner)
        return bool(rows[0][0] == 30)

    await eventually(all_done)
    rows = await fetch(database_url, "SELECT count(*) FROM results WHERE instance_id = ANY($1::text[])", ids)
    assert rows[0][0] == 30


async def test_a_late_processing_event_after_done_changes_nothing(client: Any, topology: Topology, owner: str) -> None:
    instance_id, _ = await instance_moved_to(client, topology, owner, InstanceStatus.PROCESSING)
    await publish(topology.exchange, done_result(instance_id, owner), "result.done")
    await wait_status(client, owner, instance_id, "done")
    for status in (InstanceStatus.PROCESSING, InstanceStatus.QUEUED, InstanceStatus.FAILED):
        late = StatusEvent(instance_id=instance_id, upload_id="u", owner=owner, status=status)
        await publish(topology.exchange, late, status_key(status.value))
    await consumed_through_witness(client, topology, owner, "status")
    await take(topology.status, 0)  # acked, none requeued
    assert await status_of(client, owner, instance_id) == "done"


async def test_a_failed_result_fails_the_instance_with_its_reason(client: Any, topology: Topology, owner: str) -> None:
    _, body = await register(client, owner)
    instance_id = body["instance_id"]
    failed = done_result(instance_id, owner, status=InstanceStatus.FAILED, result=None, reason="pixel data broken")
    await publish(topology.exchange, failed, "result.failed")
    await wait_status(client, owner, instance_id, "failed")
    _, view = await get_json(client, f"/api/instances/{instance_id}", owner)
    assert view["reason"] == "pixel data broken" and view["result"] is None
    await publish(topology.exchange, done_result(instance_id, owner), "result.done")  # too late: stays failed
    await consumed_through_witness(client, topology, owner, "results")
    await take(topology.results, 0)
    assert await status_of(client, owner, instance_id) == "failed"


async def test_a_result_for_an_unknown_instance_is_dropped(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    await publish(topology.exchange, done_result("f" * 32, "nobody"), "result.done")
    await consumed_through_witness(client, topology, owner, "results")
    await take(topology.results, 0)  # acked, not requeued
    assert (await fetch(database_url, "SELECT count(*) FROM results WHERE instance_id = $1", "f" * 32))[0][0] == 0


async def test_a_job_past_its_delivery_limit_fails_its_instance_with_a_reason(
    client: Any, topology: Topology, events: AbstractQueue, owner: str
) -> None:
    _, body = await register(client, owner)
    instance_id = body["instance_id"]
    await publish_jobs(topology, owner, [instance_id])
    await wait_status(client, owner, instance_id, "queued")  # its copy was consumed
    for _ in range(LIMIT + 1):  # a worker that dies each time
        message = await topology.jobs.get(timeout=5)
        await message.reject(requeue=True)
    await wait_status(client, owner, instance_id, "failed")
    _, view = await get_json(client, f"/api/instances/{instance_id}", owner)
    assert view["reason"].startswith(f"processing failed {LIMIT + 1} times")
    assert "dicomflow jobs replay" in view["reason"]
    assert [e.status for e in await announced(events, 2)] == [InstanceStatus.QUEUED, InstanceStatus.FAILED]
    [parked] = await take(topology.parked, 1)
    assert ProcessJob.model_validate_json(parked.body).instance_id == instance_id


async def test_a_rejected_job_fails_its_instance_but_never_a_done_one(
    client: Any, topology: Topology, owner: str
) -> None:
    ids = [(await register(client, owner))[1]["instance_id"] for _ in range(2)]
    await publish(topology.exchange, done_result(ids[1], owner), "result.done")
    await wait_status(client, owner, ids[1], "done")
    with capture_logs() as logs:
        for instance_id in ids:
            await publish(topology.exchange, job_for(instance_id, owner), JOB_STANDARD)
            message = await topology.jobs.get(timeout=5)
            await message.reject(requeue=False)
        await wait_status(client, owner, ids[0], "failed")

        async def both_handled() -> bool:  # dead letters are handled concurrently: no witness, its log line
            handled = {entry["instance_id"] for entry in logs if entry["event"] == "job_dead_lettered"}
            return handled >= set(ids)

        await eventually(both_handled)
    _, view = await get_json(client, f"/api/instances/{ids[0]}", owner)
    assert "could not read the job" in view["reason"]
    await take(topology.deadletters, 0)
    assert await status_of(client, owner, ids[1]) == "done"


async def test_the_copy_of_a_published_job_moves_its_instance_to_queued_and_is_announced_once(
    client: Any, topology: Topology, events: AbstractQueue, owner: str, database_url: str
) -> None:
    ids = [(await register(client, owner))[1]["instance_id"] for _ in range(30)]
    rows = await fetch(database_url, "SELECT DISTINCT status FROM instances WHERE owner = $1", owner)
    assert [row["status"] for row in rows] == ["received"]  # a registration alone queues nothing
    await publish_jobs(topology, owner, ids)
    queued = await announced(events, 30)
    assert sorted(e.instance_id for e in queued) == sorted(ids)
    assert {(e.status, e.owner) for e in queued} == {(InstanceStatus.QUEUED, owner)}
    rows = await fetch(database_url, "SELECT id, status FROM instances WHERE owner = $1", owner)
    assert {row["id"]: row["status"] for row in rows} == dict.fromkeys(ids, "queued")
    await publish_jobs(topology, owner, ids)  # published again (the reconciler): nothing moves, nothing announced
    witness = await consumed_through_witness(client, topology, owner, "queued")
    [only] = await announced(events, 1)
    assert (only.instance_id, only.status) == (witness, InstanceStatus.QUEUED)
    await take(topology.queued, 0)  # every copy acked, none requeued
    rows = await fetch(database_url, "SELECT id, status FROM instances WHERE owner = $1 AND id <> $2", owner, witness)
    assert {row["id"]: row["status"] for row in rows} == dict.fromkeys(ids, "queued")


async def test_a_late_job_copy_never_moves_an_instance_back(
    client: Any, topology: Topology, events: AbstractQueue, owner: str, database_url: str
) -> None:
    processing, _ = await instance_moved_to(client, topology, owner, InstanceStatus.PROCESSING)
    done, _ = await instance_moved_to(client, topology, owner, InstanceStatus.PROCESSING)
    await publish(topology.exchange, done_result(done, owner), "result.done")
    await wait_status(client, owner, done, "done")
    _, body = await register(client, owner)
    witness = body["instance_id"]
    await publish_jobs(topology, owner, [processing, done, witness])  # the late copies, then one that moves
    await wait_status(client, owner, witness, "queued")  # the copies before it were consumed too (one queue)
    await take(topology.queued, 0)
    rows = await fetch(database_url, "SELECT id, status FROM instances WHERE owner = $1", owner)
    assert {row["id"]: row["status"] for row in rows} == {processing: "processing", done: "done", witness: "queued"}
    announcements = await announced(events, 4)  # processing twice, done, then the witness's queued only
    assert [(e.instance_id, e.status) for e in announcements][-1] == (witness, InstanceStatus.QUEUED)


async def test_a_job_copy_for_an_unknown_instance_is_acked_and_changes_nothing(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    await publish_jobs(topology, owner, ["f" * 32])
    await consumed_through_witness(client, topology, owner, "queued")
    await take(topology.queued, 0)  # acked, not redelivered
    assert (await fetch(database_url, "SELECT count(*) FROM instances WHERE id = $1", "f" * 32))[0][0] == 0


async def test_a_workers_processing_event_is_announced_once_applied(
    client: Any, topology: Topology, events: AbstractQueue, owner: str
) -> None:
    instance_id, event = await instance_moved_to(client, topology, owner, InstanceStatus.PROCESSING)
    [moved] = await announced(events, 1)
    assert (moved.instance_id, moved.status, moved.owner) == (instance_id, InstanceStatus.PROCESSING, owner)
    assert moved.message_id != event.message_id  # results_service's own announcement, after its commit


async def test_what_is_announced_on_the_events_exchange_never_reaches_results_service(
    client: Any, topology: Topology, events: AbstractQueue, owner: str
) -> None:
    _, body = await register(client, owner)
    instance_id = body["instance_id"]
    announcement = StatusEvent(instance_id=instance_id, upload_id="u", owner=owner, status=InstanceStatus.PROCESSING)
    await publish(topology.events, announcement, "")
    await take(events, 1)  # the live feeds got it
    await consumed_through_witness(client, topology, owner, "status")  # had it reached P.status, it was applied
    assert await status_of(client, owner, instance_id) == "received"


async def test_status_changes_are_applied_when_no_live_feed_listens(
    client: Any, topology: Topology, owner: str
) -> None:
    """No gateway replica bound to the events exchange: the announcements go nowhere and nothing is retried."""
    ids = [(await register(client, owner))[1]["instance_id"] for _ in range(3)]
    await publish_jobs(topology, owner, ids)
    instance_id, _ = await instance_moved_to(client, topology, owner, InstanceStatus.PROCESSING)
    for queued in ids:
        await wait_status(client, owner, queued, "queued")
    assert await status_of(client, owner, instance_id) == "processing"
    await take(topology.status, 0)  # nothing left behind or requeued
    await take(topology.queued, 0)
