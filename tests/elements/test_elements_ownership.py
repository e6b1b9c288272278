"""Elements belong to their creator: ids unique per owner, another's element is a 404, admins see all, all audited."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from tests.elements.helpers import (
    ELEMENTS,
    assert_problem,
    count_rows,
    element,
)


async def test_element_ids_are_unique_per_owner_so_a_taken_id_of_someone_else_is_not_revealed(
    client: Any, others: dict[str, Any], database_url: str
) -> None:
    bob = others["bob"]
    mine = await client.post(ELEMENTS, json=element("shared-id", ["1 2"], "RX 1"))
    theirs = await bob.post(ELEMENTS, json=element("shared-id", ["5 6"], "MRI"))
    assert mine.status == 201 and theirs.status == 201
    assert (await theirs.json())["owner"] == others["bob_id"]
    assert (await (await client.get("/api/elements/shared-id/")).json())["device_name"] == "RX 1"
    assert (await (await bob.get("/api/elements/shared-id/")).json())["device_name"] == "MRI"
    # Each owner still gets a 409 for their own duplicate.
    assert (await bob.post(ELEMENTS, json=element("shared-id"))).status == 409
    assert await count_rows(database_url, "element_id = $1", "shared-id") == 2


async def test_another_users_element_is_404_exactly_like_a_missing_one_for_every_method(
    client: Any, others: dict[str, Any], database_url: str
) -> None:
    bob = others["bob"]
    assert (await client.post(ELEMENTS, json=element("private1"))).status == 201
    for element_id in ("private1", "never-made"):
        path = f"/api/elements/{element_id}/"
        answers = [
            await bob.get(path),
            await bob.patch(path, json={"device_name": "MRI"}),
            await bob.put(path, json={"id": "stolen"}),
            await bob.delete(path),
        ]
        for answer in answers:
            problem = await assert_problem(answer, 404)
            assert problem["detail"] == f"No element has the id {element_id!r}."
    # Naming the owner does not help another user either.
    await assert_problem(await bob.get(f"/api/elements/private1/?owner={others['bob_id']}"), 404)
    stored = await (await client.get("/api/elements/private1/")).json()
    assert stored["device_name"] == "RX 1" and stored["id"] == "private1"
    assert await count_rows(database_url) == 1


async def test_lists_are_filtered_to_the_caller_in_sql(client: Any, others: dict[str, Any]) -> None:
    bob, carol = others["bob"], others["carol"]
    await client.post(ELEMENTS, json={str(n): element(f"a{n}") for n in range(3)})
    await bob.post(ELEMENTS, json={str(n): element(f"b{n}") for n in range(2)})
    mine = await (await client.get(f"{ELEMENTS}?limit=2")).json()
    assert mine["total"] == 3 and [i["id"] for i in mine["items"]] == ["a0", "a1"]
    assert mine["next"] == "/api/elements/?limit=2&offset=2"
    assert [i["id"] for i in (await (await bob.get(ELEMENTS)).json())["items"]] == ["b0", "b1"]
    assert await (await carol.get(ELEMENTS)).json() == {
        "items": [],
        "total": 0,
        "limit": 100,
        "offset": 0,
        "next": None,
    }
    # A user naming another owner gets nothing (not that owner's rows, not their own).
    peek = await (await carol.get(f"{ELEMENTS}?owner={others['bob_id']}")).json()
    assert peek["total"] == 0 and peek["items"] == []


async def test_admin_sees_every_owner_and_names_one_with_owner_when_an_id_is_ambiguous(
    client: Any, others: dict[str, Any], database_url: str
) -> None:
    bob, admin, bob_id = others["bob"], others["admin"], others["bob_id"]
    await client.post(ELEMENTS, json=element("same", device="RX 1"))
    await bob.post(ELEMENTS, json={"1": element("same", device="MRI"), "2": element("bobs-only", device="CT")})
    everyone = await (await admin.get(ELEMENTS)).json()
    assert everyone["total"] == 3
    assert {(i["id"], i["owner"] == bob_id) for i in everyone["items"]} == {
        ("same", False),
        ("same", True),
        ("bobs-only", True),
    }
    of_bob = await (await admin.get(f"{ELEMENTS}?owner={bob_id}")).json()
    assert [i["id"] for i in of_bob["items"]] == ["same", "bobs-only"]
    # An id only one owner uses resolves without naming the owner.
    assert (await (await admin.get("/api/elements/bobs-only/")).json())["owner"] == bob_id
    ambiguous = await assert_problem(await admin.get("/api/elements/same/"), 409)
    assert "?owner=" in ambiguous["detail"]
    await assert_problem(await admin.delete("/api/elements/same/"), 409)
    changed = await admin.patch(f"/api/elements/same/?owner={bob_id}", json={"device_name": "PET"})
    assert changed.status == 200 and (await changed.json())["owner"] == bob_id
    assert (await (await bob.get("/api/elements/same/")).json())["device_name"] == "PET"
    assert (await (await client.get("/api/elements/same/")).json())["device_name"] == "RX 1"
    assert (await admin.delete(f"/api/elements/same/?owner={bob_id}")).status == 204
    assert await count_rows(database_url) == 2
    # What an admin creates is the admin's own.
    created = await (await admin.post(ELEMENTS, json=element("same"))).json()
    assert created["owner"] == others["admin_id"]


async def test_every_element_call_is_audited_with_its_outcome(
    client: Any, others: dict[str, Any], database_url: str
) -> None:
    bob = others["bob"]
    headers = {"X-Request-ID": f"audit-{uuid.uuid4().hex}"}
    await client.post(ELEMENTS, json=element("au1"), headers=headers)
    await client.post(ELEMENTS, json={"1": element("au2"), "2": element("au3")}, headers=headers)
    await client.get(ELEMENTS, headers=headers)
    await client.get("/api/elements/au1/", headers=headers)
    await client.patch("/api/elements/au1/", json={"id": "au9"}, headers=headers)
    await client.delete("/api/elements/au9/", headers=headers)
    await bob.get("/api/elements/au2/", headers=headers)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT actor_id, action, resource_type, resource_id, outcome, detail FROM audit_events"
            " WHERE correlation_id = $1 ORDER BY id",
            headers["X-Request-ID"],
        )
    finally:
        await conn.close()
    got = [(r["action"], r["resource_id"], r["outcome"], r["actor_id"] == others["bob_id"]) for r in rows]
    assert got == [
        ("element.create", "au1", "success", False),
        ("element.create", None, "success", False),
        ("element.list", None, "success", False),
        ("element.read", "au1", "success", False),
        ("element.update", "au1", "success", False),
        ("element.delete", "au9", "success", False),
        ("element.read", "au2", "failure", True),
    ]
    assert all(r["resource_type"] == "element" for r in rows)
    assert json.loads(rows[1]["detail"]) == {"count": 2} and json.loads(rows[-1]["detail"]) == {"status": 404}
