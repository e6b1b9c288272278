"""results_service's pipeline HTTP side: the owner-scoped read API (registration: test_results_registration)."""

from __future__ import annotations

import uuid
from typing import Any

from common.messaging.broker import Topology, publish
from common.messaging.messages import ImageResult, InstanceStatus, ProcessResult, Statistics
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    fetch,
    get_json,
    instance_moved_to,
    owner_fixture,
    register,
    results_settings_fixture,
    sha_of,
    status_of,
    topology_fixture,
    wait_status,
)


async def _done(client: Any, topology: Topology, owner: str, body: dict[str, Any], mean: float = 2.0) -> None:
    stats = Statistics(min=0, max=4, mean=mean, std=1)
    image = ImageResult(has_pixel_data=True, rows=1, columns=1, original=stats, processing_ms=1, worker="w:1")
    result = ProcessResult(
        instance_id=body["instance_id"], upload_id="u", owner=owner, status=InstanceStatus.DONE, result=image
    )
    await publish(topology.exchange, result, "result.done")


async def test_read_api_lists_filters_and_pages_the_callers_instances(
    client: Any, topology: Topology, owner: str
) -> None:
    upload_id = uuid.uuid4().hex
    bodies = []
    for index, (study, modality) in enumerate([("9.1", "MR"), ("9.1", "MR"), ("9.2", "CT")]):
        _, body = await register(client, owner, upload_id=upload_id, index=index, study=study, modality=modality)
        bodies.append(body)
    await _done(client, topology, owner, bodies[0])
    await wait_status(client, owner, bodies[0]["instance_id"], "done")
    status, page = await get_json(client, "/api/instances?limit=2", owner)
    assert (
        status == 200
        and page["total"] == 3
        and [i["id"] for i in page["items"]] == [b["instance_id"] for b in bodies[:2]]
    )
    assert page["next"] == "/api/instances?limit=2&offset=2"
    _, rest = await get_json(client, page["next"], owner)
    assert [i["id"] for i in rest["items"]] == [bodies[2]["instance_id"]] and rest["next"] is None
    _, mr = await get_json(client, "/api/instances?modality=MR&limit=1", owner)
    assert mr["next"] == "/api/instances?modality=MR&limit=1&offset=1"  # the filters are kept
    _, done = await get_json(client, "/api/instances?status=done", owner)
    assert [i["id"] for i in done["items"]] == [bodies[0]["instance_id"]]
    assert done["items"][0]["result"]["original"]["mean"] == 2.0
    _, ct = await get_json(client, "/api/instances?modality=CT", owner)
    assert [i["study_instance_uid"] for i in ct["items"]] == ["9.2"]
    _, study = await get_json(client, "/api/instances?study=9.1", owner)
    assert study["total"] == 2
    status, problem = await get_json(client, "/api/instances?status=nope&limit=0", owner)
    assert status == 422 and {e["field"] for e in problem["errors"]} == {"status", "limit"}

    _, studies = await get_json(client, "/api/studies", owner)
    assert studies["total"] == 2
    first, second = studies["items"]
    assert first["study_instance_uid"] == "9.1" and first["modalities"] == ["MR"] and first["instances"] == 2
    assert first["counts"] == {"received": 1, "queued": 0, "processing": 0, "done": 1, "failed": 0}
    assert second["counts"]["received"] == 1 and second["series"] == 1

    status, upload = await get_json(client, f"/api/uploads/{upload_id}", owner)
    assert status == 200 and upload["accepted"] == 3
    assert [f["instance_status"] for f in upload["files"]] == ["done", "received", "received"]
    assert upload["counts"]["done"] == 1 and upload["counts"]["received"] == 2


async def test_another_owners_resources_are_not_found(client: Any, owner: str) -> None:
    upload_id = uuid.uuid4().hex
    _, body = await register(client, owner, upload_id=upload_id)
    instance_id = body["instance_id"]
    for path in (
        f"/api/instances/{instance_id}",
        f"/api/uploads/{upload_id}",
        f"/api/instances/{instance_id}/preview.png",
    ):
        status, problem = await get_json(client, path, "somebody-else")
        assert status == 404 and "not found" in problem["detail"]
    _, page = await get_json(client, "/api/instances", "somebody-else")
    assert instance_id not in {i["id"] for i in page["items"]}
    status, admin_view = await get_json(client, f"/api/instances/{instance_id}", "root", role="admin")
    assert status == 200 and admin_view["id"] == instance_id


async def test_preview_of_an_unprocessed_instance_is_a_404_problem(client: Any, owner: str) -> None:
    _, body = await register(client, owner)
    status, problem = await get_json(client, f"/api/instances/{body['instance_id']}/preview.png", owner)
    assert status == 404 and "no preview" in problem["detail"]
    status, _ = await get_json(client, "/api/instances/not-a-real-id", owner)
    assert status == 404


async def test_status_events_move_an_instance_forward(client: Any, topology: Topology, owner: str) -> None:
    instance_id, _ = await instance_moved_to(client, topology, owner, InstanceStatus.QUEUED)
    assert await status_of(client, owner, instance_id) == "queued"
