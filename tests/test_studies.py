"""`GET /api/studies`: the caller's instances grouped by study, counted per state, paged by PostgreSQL
(oldest first arrival, then UID; `total` and a `next` link), never showing another owner's studies."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from common.messaging.messages import InstanceStatus
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    fetch,
    get_json,
    owner_fixture,
    register,
    results_settings_fixture,
    topology_fixture,
)

STATES = [status.value for status in InstanceStatus]
ADMIN = {"role": "admin"}


@dataclass
class Study:
    """What one study of a test owner should look like in the API."""

    uid: str
    modalities: set[str] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)

    def expected(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.uid,
            "modalities": sorted(self.modalities),
            "series": len(self.series),
            "instances": sum(self.counts.values()),
            "counts": {state: self.counts[state] for state in STATES},
        }


async def make_studies(client: Any, database_url: str, owner: str, how_many: int) -> list[Study]:
    """`how_many` studies of `owner`, in the order their first instance arrives.

    Study i has 1 + i % 3 instances in up to two series; every first instance is registered before
    any later one, and later ones in reverse study order, so the order is the first arrival and not
    the last. Each instance is put in a state of its own (the state machine is tested elsewhere;
    here the counts are what matters).
    """
    prefix = f"2.25.{uuid.uuid4().int}"
    studies = [Study(f"{prefix}.{i}") for i in range(how_many)]
    plan = [(i, 0) for i in range(how_many)] + [(i, k) for i in reversed(range(how_many)) for k in range(1, 1 + i % 3)]
    upload_id = uuid.uuid4().hex
    for index, (i, k) in enumerate(plan):
        study = studies[i]
        series, modality = f"{study.uid}.{k % 2}", ("MR", "CT", "")[(i + k) % 3]
        _, body = await register(
            client, owner, upload_id=upload_id, index=index, study=study.uid, series=series, modality=modality
        )
        state = STATES[(i + k) % len(STATES)]
        await fetch(database_url, "UPDATE instances SET status = $1 WHERE id = $2", state, body["instance_id"])
        study.series.add(series)
        if modality:
            study.modalities.add(modality)
        study.counts[state] += 1
    return studies


async def walk(client: Any, user: str, first: str, **headers: str) -> list[dict[str, Any]]:
    """Every page from `first` on, following `next` links; asserts what each page says of the whole."""
    pages: list[dict[str, Any]] = []
    path: str | None = first
    while path is not None:
        status, page = await get_json(client, path, user, **headers)
        assert status == 200, page
        pages.append(page)
        path = page["next"]
        assert len(pages) < 1000, "next links never end"
    return pages


def summary(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in ("study_instance_uid", "modalities", "series", "instances", "counts")}


@pytest.fixture(name="other_owner")
def other_owner_fixture() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_pages_are_disjoint_ordered_and_complete_with_exact_totals_and_counts(
    client: Any, database_url: str, owner: str, other_owner: str
) -> None:
    mine = await make_studies(client, database_url, owner, 23)
    theirs = await make_studies(client, database_url, other_owner, 7)

    pages = await walk(client, owner, "/api/studies?limit=5")
    assert [len(p["items"]) for p in pages] == [5, 5, 5, 5, 3]
    assert [p["offset"] for p in pages] == [0, 5, 10, 15, 20]
    assert all(p["total"] == 23 and p["limit"] == 5 for p in pages)
    assert [p["next"] is None for p in pages] == [False, False, False, False, True]
    listed = [summary(item) for p in pages for item in p["items"]]
    assert listed == [s.expected() for s in mine]  # each once, in first-arrival order, exact counts

    their_pages = await walk(client, other_owner, "/api/studies?limit=1000")
    assert [summary(i) for p in their_pages for i in p["items"]] == [s.expected() for s in theirs]
    assert their_pages[0]["total"] == 7
    assert not {s.uid for s in mine} & {i["study_instance_uid"] for p in their_pages for i in p["items"]}


async def test_an_admin_sees_every_owners_studies(client: Any, database_url: str, owner: str, other_owner: str) -> None:
    mine = await make_studies(client, database_url, owner, 4)
    theirs = await make_studies(client, database_url, other_owner, 3)
    [row] = await fetch(database_url, "SELECT count(DISTINCT study_instance_uid) AS n FROM instances")
    pages = await walk(client, "root", "/api/studies?limit=7", **ADMIN)
    assert all(p["total"] == row["n"] for p in pages)
    listed = {i["study_instance_uid"]: summary(i) for p in pages for i in p["items"]}
    assert len(listed) == row["n"]  # disjoint and complete across pages
    for study in [*mine, *theirs]:
        assert listed[study.uid] == study.expected()
    uids = list(listed)
    assert uids.index(mine[-1].uid) < uids.index(theirs[0].uid)  # first arrival across owners


async def test_studies_that_arrived_at_the_same_instant_are_ordered_by_uid_in_byte_order(
    client: Any, database_url: str, owner: str
) -> None:
    prefix = f"2.25.{uuid.uuid4().int}"
    uids = [f"{prefix}.9", f"{prefix}.10", f"{prefix}.1"]
    for uid in uids:
        await register(client, owner, study=uid)
    await fetch(database_url, "UPDATE instances SET created_at = '2020-01-01T00:00:00Z' WHERE owner = $1", owner)
    _, page = await get_json(client, "/api/studies", owner)
    assert [i["study_instance_uid"] for i in page["items"]] == sorted(uids)


@pytest.mark.parametrize("admin", [False, True])
async def test_a_page_past_the_end_is_empty_and_still_has_the_total(
    client: Any, database_url: str, owner: str, admin: bool
) -> None:
    await make_studies(client, database_url, owner, 3)
    user, headers = ("root", ADMIN) if admin else (owner, {})
    _, whole = await get_json(client, "/api/studies?limit=1000", user, **headers)
    status, page = await get_json(client, "/api/studies?offset=1000", user, **headers)
    assert status == 200 and page["items"] == [] and page["next"] is None
    assert page["total"] == whole["total"] == len(whole["items"]) and (admin or page["total"] == 3)


async def test_an_owner_without_instances_has_no_studies(client: Any, owner: str) -> None:
    status, page = await get_json(client, "/api/studies", owner)
    assert status == 200
    assert page == {"items": [], "total": 0, "limit": 100, "offset": 0, "next": None}


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("limit=0", {"limit"}),
        ("limit=1001", {"limit"}),
        ("limit=ten", {"limit"}),
        ("offset=-1", {"offset"}),
        ("offset=1.5", {"offset"}),
        ("limit=0&offset=-1", {"limit", "offset"}),
        ("page=2", {"page"}),
    ],
)
async def test_bad_paging_parameters_are_422_problems_naming_each_field(
    client: Any, owner: str, query: str, fields: set[str]
) -> None:
    status, problem = await get_json(client, f"/api/studies?{query}", owner)
    assert status == 422 and problem["status"] == 422
    assert {e["field"] for e in problem["errors"]} == fields


async def test_the_openapi_document_describes_the_studies_page_with_its_next_link(aiohttp_client: Any) -> None:
    gateway = await aiohttp_client(init_gateway(GatewaySettings()))
    document = await (await gateway.get("/api/openapi.json")).json()
    reply = document["paths"]["/api/studies"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    page = document["components"]["schemas"][reply["$ref"].rsplit("/", 1)[1]]
    assert {"items", "total", "limit", "offset", "next"} <= set(page["properties"])
    assert "next" in page["required"]
    assert {p["name"] for p in document["paths"]["/api/studies"]["get"]["parameters"]} == {"limit", "offset"}
