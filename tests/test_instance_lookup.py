"""POST /api/instances/lookup on the real results_service (this run's database): the uploader's resume check
answers only the caller's own instances, admins included, and refuses bad bodies with problems."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from common.app.problems import PROBLEM_CONTENT_TYPE
from tests.ingest_rig import IngestRig, gateway_with_user, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    fetch,
    owner_fixture,
    register,
    results_settings_fixture,
    sha_of,
    topology_fixture,
)
from tests.service_auth import as_user

PATH = "/api/instances/lookup"


async def lookup(client: Any, caller: str, body: Any, role: str = "user") -> tuple[int, Any]:
    response = await client.post(PATH, json=body, headers=as_user(caller, role))
    return response.status, await response.json(content_type=None)


async def test_lookup_lists_the_callers_instances_of_the_digests_in_the_order_asked(client: Any, owner: str) -> None:
    upload_id = uuid.uuid4().hex
    _, first = await register(client, owner, upload_id=upload_id, index=0, content="one")
    _, second = await register(client, owner, upload_id=upload_id, index=1, content="two")
    status, body = await lookup(
        client, owner, {"sha256": [sha_of("two"), sha_of("nothing"), sha_of("one").upper(), sha_of("two")]}
    )
    assert status == 200
    assert body == {
        "known": [
            {
                "sha256": sha_of("two"),
                "instance_id": second["instance_id"],
                "status": "received",
                "upload_id": upload_id,
            },
            {
                "sha256": sha_of("one"),
                "instance_id": first["instance_id"],
                "status": "received",
                "upload_id": upload_id,
            },
        ]
    }


@pytest.mark.parametrize("role", ["user", "admin"])
async def test_lookup_never_answers_about_anyone_elses_files(client: Any, owner: str, role: str) -> None:
    await register(client, owner, content="theirs")
    status, body = await lookup(client, f"someone-{uuid.uuid4().hex[:8]}", {"sha256": [sha_of("theirs")]}, role)
    assert (status, body) == (200, {"known": []})


async def test_lookup_is_audited_with_counts_only(client: Any, owner: str, database_url: str) -> None:
    await register(client, owner, content="audited")
    status, _ = await lookup(client, owner, {"sha256": [sha_of("audited"), sha_of("unknown")]})
    assert status == 200
    rows = await fetch(
        database_url,
        "SELECT outcome, detail FROM audit_events WHERE action = 'instance.lookup' AND actor_id = $1",
        owner,
    )
    assert [(row["outcome"], json.loads(row["detail"])) for row in rows] == [("success", {"asked": 2, "known": 1})]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sha256": []}, "sha256"),
        ({"sha256": ["g" * 64]}, "sha256.0"),
        ({"sha256": ["ab" * 31]}, "sha256.0"),
        ({"sha256": ["a" * 64] * 1001}, "sha256"),
        ({"digests": ["a" * 64]}, "sha256"),
    ],
    ids=["empty", "not-hex", "short", "over-1000", "no-field"],
)
async def test_a_bad_list_is_a_422_naming_the_field(client: Any, owner: str, body: Any, field: str) -> None:
    status, problem = await lookup(client, owner, body)
    assert status == 422
    assert field in {error["field"] for error in problem["errors"]}


async def test_a_body_that_is_not_json_is_a_400_problem(client: Any, owner: str) -> None:
    response = await client.post(
        PATH, data=b"sha256=abc", headers={**as_user(owner), "Content-Type": "application/json"}
    )
    assert response.status == 400 and response.content_type == PROBLEM_CONTENT_TYPE


async def test_lookup_through_the_gateway_answers_the_users_own_upload(
    rig: IngestRig, aiohttp_client: Any, sample_01: bytes
) -> None:
    gateway = await gateway_with_user(rig, aiohttp_client)
    upload = await gateway.post(
        "/api/uploads", data=sample_01, headers={**gateway.headers, "Content-Type": "application/dicom"}
    )
    assert upload.status == 202, await upload.text()
    receipt = await upload.json()
    [file] = receipt["files"]
    response = await gateway.post(PATH, json={"sha256": [file["sha256"], "0" * 64]}, headers=gateway.headers)
    assert response.status == 200
    [known] = (await response.json())["known"]
    assert (known["sha256"], known["instance_id"], known["upload_id"]) == (
        file["sha256"],
        file["instance_id"],
        receipt["upload_id"],
    )
    assert known["status"] in ("received", "queued")
    too_large = await gateway.post(
        PATH, data=b"[" + b" " * 200_000 + b"]", headers={**gateway.headers, "Content-Type": "application/json"}
    )
    assert too_large.status == 413 and too_large.content_type == PROBLEM_CONTENT_TYPE
