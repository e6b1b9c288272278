"""`POST /internal/registrations` as a batch: many files of several uploads in one call and one commit,
each with its own audit identity, checked on the rows and audit records left in PostgreSQL (the
cases of one file, and a batch mixing them: test_results_registration)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    accepted,
    channel_fixture,
    client_fixture,
    fetch,
    owner_fixture,
    results_settings_fixture,
    sha_of,
    topology_fixture,
)
from tests.registration_helpers import item, post_batch


async def test_a_batch_registers_files_of_several_uploads_with_their_own_audit_identity(
    client: Any, owner: str, database_url: str
) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    items = [
        item(first, accepted(owner, 0, "b1"), f"corr-{first}-0"),
        {**item(second, accepted(owner, 0, "b2"), f"corr-{second}-0"), "email": "b@example.org"},
        item(first, accepted(owner, 1, "b3"), f"corr-{first}-1"),
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
            (first, f"corr-{first}-0", f"{owner}@example.org"),
            (first, f"corr-{first}-1", f"{owner}@example.org"),
            (second, f"corr-{second}-0", "b@example.org"),
        ]
    )
    assert sorted(r["resource_id"] for r in audit if r["action"] == "upload.create") == sorted([first, second])
    assert {r["client"] for r in audit} == {"203.0.113.7"}


async def test_twins_in_one_batch_make_one_instance_and_the_later_item_is_the_duplicate(
    client: Any, owner: str, database_url: str
) -> None:
    answers = await post_batch(
        client, [item(uuid.uuid4().hex, accepted(owner, 0, "twin")), item(uuid.uuid4().hex, accepted(owner, 0, "twin"))]
    )
    first, second = (a["registered"] for a in answers)
    assert (first["status"], second["status"]) == ("accepted", "duplicate")
    assert first["instance_id"] == second["instance_id"]
    rows = await fetch(database_url, "SELECT count(*) FROM instances WHERE owner = $1", owner)
    assert rows[0][0] == 1


async def test_a_registration_leaves_its_instance_received_and_carries_no_queued_reports(
    client: Any, owner: str, database_url: str
) -> None:
    """Only the broker's copy of the job moves an instance to `queued`: a registration call cannot."""
    [answer] = await post_batch(client, [item(uuid.uuid4().hex, accepted(owner, 0, "no-report"))])
    instance_id = answer["registered"]["instance_id"]
    body = {"items": [item(uuid.uuid4().hex, accepted(owner, 0, "with-report"))], "queued": [instance_id]}
    response = await client.post("/internal/registrations", json=body)
    assert response.status == 422 and response.content_type == "application/problem+json"
    rows = await fetch(database_url, "SELECT status FROM instances WHERE owner = $1", owner)
    assert [row["status"] for row in rows] == ["received"]
