"""Helpers of the registration and upload-audit tests: registration calls (`POST /internal/registrations`) and
the upload's audit rows as PostgreSQL holds them (`accepted` bodies and `register`: pipeline_helpers)."""

from __future__ import annotations

import json
from typing import Any

from tests.pipeline_helpers import fetch

AUDIT_COLUMNS = "action, outcome, actor_id, actor_email, client, correlation_id, resource_type, resource_id, detail"


def rejected(
    owner: str, index: int = 0, *, name: str = "notes.txt", reason: str = "not a DICOM file"
) -> dict[str, Any]:
    """The registration of a rejected file."""
    return {"index": index, "name": name, "owner": owner, "outcome": "rejected", "reason": reason}


def item(upload_id: str, registration: dict[str, Any], correlation_id: str | None = None) -> dict[str, Any]:
    """One item of a registration call, with the identity ingest forwards (`email` and `client` fixed)."""
    return {
        "upload_id": upload_id,
        "registration": registration,
        "email": f"{registration.get('owner', 'nobody')}@example.org",
        "client": "203.0.113.7",
        "correlation_id": correlation_id,
    }


async def post_batch(client: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One registration call; the answers, one per item, in order."""
    response = await client.post("/internal/registrations", json={"items": items})
    assert response.status == 200, await response.text()
    answers: list[dict[str, Any]] = (await response.json())["items"]
    return answers


async def register_one(
    client: Any, upload_id: str, registration: dict[str, Any], correlation_id: str | None = None
) -> dict[str, Any]:
    """A registration call of one file; its answer (`status`, `registered`, `detail`)."""
    [answer] = await post_batch(client, [item(upload_id, registration, correlation_id)])
    return answer


async def upload_records(database_url: str, upload_id: str) -> list[dict[str, Any]]:
    """The audit rows naming this upload, oldest first, with `detail` decoded."""
    rows = await fetch(
        database_url,
        f"SELECT {AUDIT_COLUMNS} FROM audit_events WHERE resource_type = 'upload' AND resource_id = $1 ORDER BY id",
        upload_id,
    )
    return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]


def who(records: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """The distinct (actor id, email, client, correlation id) of these records."""
    return {(r["actor_id"], r["actor_email"], r["client"], r["correlation_id"]) for r in records}
