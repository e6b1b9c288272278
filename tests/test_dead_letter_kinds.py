"""The dead-letter path reads what it gets by its kind: parked results and status events are applied, the
unreadable is logged and dropped from `P.deadletters` (its copy stays in `P.parked`).

Messages are dead-lettered the way the broker does it: published to `P.dlx`, which routes them to both
`P.parked` and `P.deadletters`.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from structlog.testing import capture_logs

from common.messaging.broker import Topology
from common.messaging.messages import InstanceStatus, StatusEvent
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    done_result,
    eventually,
    fetch,
    get_json,
    owner_fixture,
    register,
    results_settings_fixture,
    status_of,
    topology_fixture,
    wait_status,
)
from tests.queue_helpers import take


async def dead_letter(topology: Topology, body: bytes, *, kind: str | None, message_id: str) -> None:
    """Dead-letter a message as the broker would (it keeps the AMQP properties of the original)."""
    await topology.dlx.publish(aio_pika.Message(body, type=kind, message_id=message_id), routing_key="result.done")


async def test_a_parked_result_is_stored_like_any_result(
    client: Any, topology: Topology, owner: str, database_url: str
) -> None:
    _, body = await register(client, owner)
    instance_id = body["instance_id"]
    result = done_result(instance_id, owner)
    await dead_letter(topology, result.model_dump_json().encode(), kind=result.kind, message_id=result.message_id)
    await wait_status(client, owner, instance_id, "done")
    rows = await fetch(database_url, "SELECT status, message_id FROM results WHERE instance_id = $1", instance_id)
    assert [(row["status"], row["message_id"]) for row in rows] == [("done", result.message_id)]
    _, view = await get_json(client, f"/api/instances/{instance_id}", owner)
    assert view["result"]["note"] == "no pixel data"
    await take(topology.deadletters, 0)  # acked
    await take(topology.parked, 1)  # still there for operators


async def test_a_parked_failed_result_fails_its_instance_with_its_reason(
    client: Any, topology: Topology, owner: str
) -> None:
    _, body = await register(client, owner)
    instance_id = body["instance_id"]
    failed = done_result(instance_id, owner, status=InstanceStatus.FAILED, result=None, reason="pixel data broken")
    await dead_letter(topology, failed.model_dump_json().encode(), kind=failed.kind, message_id=failed.message_id)
    await wait_status(client, owner, instance_id, "failed")
    _, view = await get_json(client, f"/api/instances/{instance_id}", owner)
    assert view["reason"] == "pixel data broken"


async def test_a_parked_status_event_is_applied_forward_only(client: Any, topology: Topology, owner: str) -> None:
    ids = [(await register(client, owner))[1]["instance_id"] for _ in range(2)]
    done = done_result(ids[1], owner)
    await dead_letter(topology, done.model_dump_json().encode(), kind=done.kind, message_id=done.message_id)
    await wait_status(client, owner, ids[1], "done")
    with capture_logs() as logs:
        for instance_id in ids:  # a processing event for a received instance, and one for a done instance
            event = StatusEvent(instance_id=instance_id, upload_id="u", owner=owner, status=InstanceStatus.PROCESSING)
            await dead_letter(topology, event.model_dump_json().encode(), kind=event.kind, message_id=event.message_id)

        async def both_applied() -> bool:
            return {e.get("instance_id") for e in logs if e["event"] == "status_dead_letter_applied"} >= set(ids)

        await eventually(both_applied)
    assert [await status_of(client, owner, instance_id) for instance_id in ids] == ["processing", "done"]
    await take(topology.deadletters, 0)
    await take(topology.parked, 3)


async def test_an_unreadable_dead_letter_is_logged_and_dropped_but_stays_parked(
    client: Any, topology: Topology, owner: str
) -> None:
    with capture_logs() as logs:
        await dead_letter(topology, b"not json", kind=None, message_id="garbage-1")
        await dead_letter(
            topology, b'{"kind": "process_result", "version": 9}', kind="process_result", message_id="odd-2"
        )
        await dead_letter(topology, b"{}", kind="something_else", message_id="other-3")

        async def all_logged() -> bool:
            return {e.get("message_id") for e in logs if e["event"] == "dead_letter_unreadable"} >= {
                "garbage-1",
                "odd-2",
                "other-3",
            }

        await eventually(all_logged)
    await take(topology.deadletters, 0)  # dropped from the dead letters, not requeued
    parked = await take(topology.parked, 3)
    assert [m.message_id for m in parked] == ["garbage-1", "odd-2", "other-3"]
