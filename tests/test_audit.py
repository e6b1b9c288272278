"""The audit trail: append-only in PostgreSQL itself, no patient data in a record, filterable by admins."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from common.schemas.auth import AuditEventIn
from results_service.audit import append_audit
from results_service.main import init_app
from results_service.settings import ResultsSettings
from tests.account_helpers import ADMIN_ID, admin_headers, assert_problem, audit_rows
from tests.service_auth import as_user


@pytest.fixture
async def client(aiohttp_client: Any, database_url: str) -> Any:
    return await aiohttp_client(init_app(ResultsSettings(database_url=database_url)))


def event(**overrides: Any) -> dict[str, Any]:
    base = {"actor_id": "u-1", "action": "instance.read", "outcome": "success", "resource_type": "instance"}
    return {**base, **overrides}


async def test_update_delete_and_truncate_are_refused_by_the_database(client: Any, database_url: str) -> None:
    marker = uuid.uuid4().hex
    row_id = await append_audit(AuditEventIn.model_validate(event(resource_id=marker)))
    conn = await asyncpg.connect(database_url)
    try:
        for sql in (
            "UPDATE audit_events SET outcome = 'failure' WHERE id = $1",
            "DELETE FROM audit_events WHERE id = $1",
        ):
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql, row_id)
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE audit_events")
        row = await conn.fetchrow("SELECT * FROM audit_events WHERE id = $1", row_id)
    finally:
        await conn.close()
    assert (row["outcome"], row["resource_id"]) == ("success", marker)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (event(detail={"patient_name": "DOE^JOHN"}), "detail"),
        (event(detail={"PatientID": "x"}), "detail"),
        (event(detail={"Access-Token": "y"}), "detail"),
        (event(outcome="maybe"), "outcome"),
        (event(action="Bad Action!"), "action"),
        (event(surprise=1), "surprise"),
    ],
)
def test_records_with_patient_data_or_bad_fields_are_refused(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AuditEventIn.model_validate(body)
    assert [error["loc"][0] for error in refused.value.errors()] == [field]


async def test_audit_listing_needs_the_admin_role(client: Any) -> None:
    await assert_problem(await client.get("/api/audit", headers=as_user("u")), 403)


async def test_admin_filters_by_actor_action_resource_outcome_and_time_newest_first(
    client: Any, database_url: str
) -> None:
    actor = str(uuid.uuid4())
    resource = uuid.uuid4().hex
    specs = [
        ("instance.read", "success"),
        ("instance.file.read", "success"),
        ("instance.read", "denied"),
        ("upload.create", "failure"),
    ]
    for action, outcome in specs:
        body = event(actor_id=actor, actor_email="Who@Example.org".lower(), action=action, outcome=outcome)
        await append_audit(AuditEventIn.model_validate({**body, "resource_id": resource}))

    async def query(**params: str) -> dict[str, Any]:
        response = await client.get("/api/audit", params={"resource_id": resource, **params}, headers=admin_headers())
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    everything = await query(actor=actor)
    assert [(i["action"], i["outcome"]) for i in everything["items"]] == list(reversed(specs))
    assert everything["total"] == 4 and everything["next"] is None
    assert (await query(actor="who@example.org"))["total"] == 4
    assert (await query(action="instance.read"))["total"] == 2
    assert (await query(action="instance."))["total"] == 3
    assert [i["action"] for i in (await query(outcome="failure"))["items"]] == ["upload.create"]
    newest = everything["items"][0]["at"]
    assert (await query(since=newest))["total"] >= 1
    assert (await query(until="2000-01-01T00:00:00Z"))["total"] == 0
    page = await query(limit="3")
    assert len(page["items"]) == 3 and page["next"] is not None
    rest = await client.get(page["next"], headers=admin_headers())
    assert [i["id"] for i in (await rest.json())["items"]] == [everything["items"][3]["id"]]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"outcome": "maybe"}, {"since": "yesterday"}, {"nope": "1"}])
async def test_bad_audit_queries_are_422(client: Any, params: dict[str, str]) -> None:
    await assert_problem(await client.get("/api/audit", params=params, headers=admin_headers()), 422)


async def test_reading_the_audit_trail_is_itself_audited(client: Any, database_url: str) -> None:
    marker = uuid.uuid4().hex
    response = await client.get(
        "/api/audit", params={"limit": "1"}, headers={**admin_headers(), "X-Request-ID": marker}
    )
    assert response.status == 200
    [row] = await audit_rows(database_url, "correlation_id = $1", marker)
    assert (row["action"], row["actor_id"], row["outcome"]) == ("audit.read", ADMIN_ID, "success")
