"""Privacy in the running system: the samples go through every patient-data route, then no service's
log holds a patient name or id or the bearer token, and the upload's write is in the audit trail."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pydicom

from samples.make_instances import SAMPLE_01, SAMPLE_02
from tests.e2e.conftest import SERVICES, RunningSystem


def identifying_strings() -> set[str]:
    """Every spelling of the samples' patient names, ids and birth dates that could end up in a line."""
    found: set[str] = set()
    for path in (SAMPLE_01, SAMPLE_02):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
            element = header.data_element(keyword)
            if element is None or not element.value:
                continue
            value = str(element.value)
            found |= {value, value.replace("^", " "), value.replace(" ", "^")}
    assert {"Rubo DEMO", "556342B", "Anon474899"} <= found  # what the samples hold, checked by hand
    return found


async def test_patient_data_and_tokens_never_reach_a_log_line_and_uploads_are_audited(
    start_system: Callable[..., RunningSystem], database_url: str
) -> None:
    system = start_system()  # its own: its services are stopped before their logs are read
    user = await system.create_user("privacy")
    correlation = f"privacy-{uuid.uuid4().hex}"
    headers = {**user.headers, "X-Request-ID": correlation}
    token = user.headers["Authorization"].removeprefix("Bearer ")
    async with aiohttp.ClientSession(base_url=system.gateway_url) as session:
        form = aiohttp.FormData()
        for path in (SAMPLE_01, SAMPLE_02):
            form.add_field("file", io.BytesIO(path.read_bytes()), filename=path.name, content_type="application/dicom")
        async with session.post("/api/uploads", data=form, headers=headers) as response:
            receipt: dict[str, Any] = await response.json()
            assert response.status == 202, receipt
        ids = [f["instance_id"] for f in receipt["files"]]
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            async with session.get("/api/instances?limit=1000", headers=headers) as response:
                views = {v["id"]: v["status"] for v in (await response.json())["items"]}
            if all(views.get(i) in ("done", "failed") for i in ids):
                break
            assert asyncio.get_running_loop().time() < deadline, views
            await asyncio.sleep(0.25)
        paths = [f"/api/uploads/{receipt['upload_id']}", "/api/studies"]
        for instance_id in ids:
            paths += [f"/api/instances/{instance_id}", f"/api/instances/{instance_id}/preview.png"]
            paths += [f"/api/instances/{instance_id}/file", f"/api/instances/{instance_id}/file?deidentified=true"]
        for path in paths:
            async with session.get(path, headers=headers) as response:
                assert response.status == 200, path
                await response.read()
        async with session.get(f"/api/instances/{ids[1]}", headers=headers) as response:
            assert (await response.json())["patient"]["name"] == "Rubo DEMO"  # the API does show it to its owner
        async with session.post("/api/auth/logout", headers=headers) as response:
            assert response.status == 204
        async with session.get("/api/instances", headers=headers) as response:
            assert response.status == 401  # the revoked token, refused (and not logged)
    for name in reversed(SERVICES):
        system.stop(name)  # SIGTERM: each process flushes its last lines and exits, so the logs are whole
    logs = {name: system.log_text(name) for name in SERVICES}
    assert all(correlation in logs[name] for name in ("gateway", "results_service", "ingest_service"))
    for name, text in logs.items():
        for secret in identifying_strings() | {token, user.password}:
            assert secret not in text, f"{name} logged {secret[:12]!r}…"
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT action, resource_type, resource_id, outcome, actor_id, detail::text FROM audit_events"
            " WHERE correlation_id = $1 AND action LIKE 'upload.%' ORDER BY id",
            correlation,
        )
    finally:
        await conn.close()
    # written by results_service in each registration's transaction: the upload, then each file
    assert {(r["resource_type"], r["resource_id"], r["actor_id"]) for r in rows} == {
        ("upload", receipt["upload_id"], user.id)
    }
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("upload.create", "success"),
        ("upload.file", "success"),
        ("upload.file", "success"),
        ("upload.read", "success"),
    ]
    for row, file in zip(rows[1:3], receipt["files"], strict=True):
        assert f'"instance_id": "{file["instance_id"]}"' in row["detail"] and '"status": "accepted"' in row["detail"]
    assert not any(path.name in row["detail"] for row in rows for path in (SAMPLE_01, SAMPLE_02))
