"""`POST /internal/registrations`: many files in one call and one commit, each answered as the single-file
call would, checked on the rows and audit records left in PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

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
)


def item(owner: str, upload_id: str, index: int, content: str, *, who: str = "a@example.org") -> dict[str, Any]:
    return {
        "upload_id": upload_id,
        "email": who,
        "client": "10.0.0.7",
        "correlation_id": f"corr-{upload_id}-{index}",
        "registration": {
            "index": index,
            "name": f"{content}.dcm",
            "owner": owner,
            "sha256": sha_of(content),
            "size": 10,
            "outcome": "accepted",
            "dicom": dicom_fields(),
        },
    }


async def post_batch(client: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.post("/internal/registrations", json={"items": items})
    assert response.status == 200, await response.text()
    answers: list[dict[str, Any]] = (await response.json())["items"]
    return answers


async def test_a_batch_registers_files_of_several_uploads_with_their_own_audit_identity(
    client: Any, owner: str, database_url: str
) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    items = [
        item(owner, first, 0, "b1"),
        item(owner, second, 0, "b2", who="b@example.org"),
        item(owner, first, 1, "b3"),
    ]
    answers = await post_batch(client, items)
    assert [(a["status"], a["registered"]["status"]) for a in answers] == [(201, "accepted")] * 3
    instances = await fetch(database_url, "SELECT id, upload_id, sha256 FROM instances WHERE owner = $1", owner)
    assert {(r["upload_id"], r["sha256"]) for r in instances} == {
        (first, sha_of("b1")),
        (second, sha_of("b2")),
        (first, sha_of("b3")),
    }
    assert {r["id"] for r in instances} == {a["registered"]["instance_id"] for a in answers}
    audit = await fetch(
        database_url,
        "SELECT action, resource_id, actor_email, correlation_id, client FROM audit_events WHERE actor_id = $1",
        owner,
    )
    files = sorted(
        (r["resource_id"], r["correlation_id"], r["actor_email"]) for r in audit if r["action"] == "upload.file"
    )
    assert files == sorted(
        [
            (first, f"corr-{first}-0", "a@example.org"),
            (first, f"corr-{first}-1", "a@example.org"),
            (second, f"corr-{second}-0", "b@example.org"),
        ]
    )
    assert sorted(r["resource_id"] for r in audit if r["action"] == "upload.create") == sorted([first, second])
    assert {r["client"] for r in audit} == {"10.0.0.7"}


async def test_twins_in_one_batch_make_one_instance_and_a_duplicate(client: Any, owner: str, database_url: str) -> None:
    answers = await post_batch(
        client, [item(owner, uuid.uuid4().hex, 0, "twin"), item(owner, uuid.uuid4().hex, 0, "twin")]
    )
    first, second = (a["registered"] for a in answers)
    assert (first["status"], second["status"]) == ("accepted", "duplicate")
    assert first["instance_id"] == second["instance_id"]
    rows = await fetch(database_url, "SELECT count(*) FROM instances WHERE owner = $1", owner)
    assert rows[0][0] == 1


async def test_a_replay_in_a_batch_answers_200_with_the_recorded_file_and_the_others_are_registered(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id = uuid.uuid4().hex
    _, recorded = await register(client, owner, upload_id=upload_id, index=0, content="replayed")
    answers = await post_batch(client, [item(owner, upload_id, 0, "replayed"), item(owner, upload_id, 1, "fresh")])
    assert answers[0] == {"status": 200, "registered": recorded, "detail": None}
    assert (answers[1]["status"], answers[1]["registered"]["status"]) == (201, "accepted")
    files = await fetch(database_url, 'SELECT "index" FROM upload_files WHERE upload_id = $1 ORDER BY 1', upload_id)
    assert [r["index"] for r in files] == [0, 1]


async def test_a_file_for_another_owners_upload_is_a_409_item_audited_as_denied_and_the_rest_is_registered(
    client: Any, owner: str, database_url: str
) -> None:
    theirs = uuid.uuid4().hex
    await register(client, f"{owner}-other", upload_id=theirs)
    mine = uuid.uuid4().hex
    answers = await post_batch(client, [item(owner, theirs, 1, "intruding"), item(owner, mine, 0, "own")])
    assert answers[0]["status"] == 409 and answers[0]["registered"] is None and "another owner" in answers[0]["detail"]
    assert (answers[1]["status"], answers[1]["registered"]["status"]) == (201, "accepted")
    files = await fetch(database_url, 'SELECT "index" FROM upload_files WHERE upload_id = $1', theirs)
    assert [r["index"] for r in files] == [0]
    denied = await fetch(
        database_url,
        "SELECT resource_id, correlation_id FROM audit_events WHERE actor_id = $1 AND outcome = 'denied'",
        owner,
    )
    assert [(r["resource_id"], r["correlation_id"]) for r in denied] == [(theirs, f"corr-{theirs}-1")]


async def test_a_malformed_batch_is_a_problem_and_registers_nothing(client: Any, owner: str, database_url: str) -> None:
    good = item(owner, uuid.uuid4().hex, 0, "never")
    bad = item(owner, "bad id!", 0, "bad")
    for body in ({"items": []}, {"items": [good, bad]}, {"items": [good], "extra": 1}):
        response = await client.post("/internal/registrations", json=body)
        assert response.status == 422
        assert response.content_type == "application/problem+json"
    rows = await fetch(database_url, "SELECT count(*) FROM instances WHERE owner = $1", owner)
    assert rows[0][0] == 0


async def test_a_registration_leaves_its_instance_received_and_carries_no_queued_reports(
    client: Any, owner: str, database_url: str
) -> None:
    """Only the broker's copy of the job moves an instance to `queued`: a registration call cannot."""
    [answer] = await post_batch(client, [item(owner, uuid.uuid4().hex, 0, "no-report")])
    instance_id = answer["registered"]["instance_id"]
    body = {"items": [item(owner, uuid.uuid4().hex, 0, "with-report")], "queued": [instance_id]}
    response = await client.post("/internal/registrations", json=body)
    assert response.status == 422 and response.content_type == "application/problem+json"
    rows = await fetch(database_url, "SELECT status FROM instances WHERE owner = $1", owner)
    assert [row["status"] for row in rows] == ["received"]
