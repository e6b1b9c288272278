"""Uploads through the gateway into the running system: every body type, duplicates, every rejection reason."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pydicom
import pytest

from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_instances
from tests.e2e.conftest import RunningSystem, User

DICOM = "application/dicom"


@pytest.fixture
async def alice(running_system: RunningSystem) -> User:
    return await running_system.create_user("alice")


async def upload(system: RunningSystem, user: User, data: Any, content_type: str | None = None) -> tuple[int, Any]:
    headers = dict(user.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    url = f"{system.gateway_url}/api/uploads"
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as response:
        return response.status, await response.json()


def form(*files: tuple[str, bytes, str]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, content, content_type in files:
        data.add_field("file", io.BytesIO(content), filename=name, content_type=content_type)
    return data


def summary(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["name"], f["status"]) for f in body["files"]]


async def test_single_file_is_registered_and_queued(running_system: RunningSystem, alice: User) -> None:
    data = SAMPLE_01.read_bytes()
    status, body = await upload(running_system, alice, io.BytesIO(data), DICOM)
    assert status == 202, body
    [file] = body["files"]
    assert (file["status"], file["sha256"]) == ("accepted", hashlib.sha256(data).hexdigest())
    found, view = await running_system.results_get(f"/api/uploads/{body['upload_id']}")
    assert found == 200, view
    recorded = [(f["index"], f["status"], f["instance_id"]) for f in view["files"]]
    assert recorded == [(0, "accepted", file["instance_id"])]
    found, instance = await running_system.results_get(f"/api/instances/{file['instance_id']}")
    assert found == 200
    ds = pydicom.dcmread(SAMPLE_01, stop_before_pixels=True)
    identity = (instance["sop_instance_uid"], instance["modality"], instance["size"])
    assert identity == (ds.SOPInstanceUID, "MR", len(data))
    assert (running_system.blob_dir / file["sha256"][:2] / file["sha256"][2:4] / file["sha256"]).is_file()


async def test_multipart_form_data_and_related(running_system: RunningSystem, alice: User) -> None:
    one, two = iter_instances(SAMPLE_01, 2)
    body_parts = form((one[0], one[1], DICOM), ("notes.txt", b"hi\n", "text/plain"))
    status, body = await upload(running_system, alice, body_parts)
    assert status == 202
    assert summary(body) == [(one[0], "accepted"), ("notes.txt", "rejected")]
    writer = aiohttp.MultipartWriter("related")
    writer.append(io.BytesIO(two[1]), {"Content-Type": DICOM, "Content-Location": two[0]})
    content_type = f'multipart/related; type="application/dicom"; boundary={writer.boundary}'
    status, body = await upload(running_system, alice, writer, content_type)
    assert status == 202
    assert summary(body) == [(two[0], "accepted")]


async def test_zip_of_100_generated_instances(running_system: RunningSystem, alice: User) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in iter_instances(SAMPLE_01, 100, group=25):
            zf.writestr(f"batch/{name}", data)
    status, body = await upload(running_system, alice, io.BytesIO(buffer.getvalue()), "application/zip")
    assert status == 202
    assert [f["status"] for f in body["files"]] == ["accepted"] * 100
    found, view = await running_system.results_get(f"/api/uploads/{body['upload_id']}")
    assert found == 200 and view["accepted"] == 100
    assert {f["instance_id"] for f in view["files"]} == {f["instance_id"] for f in body["files"]}


async def test_same_bytes_again_are_a_duplicate_of_the_first_without_a_second_job(
    running_system: RunningSystem, alice: User
) -> None:
    [(name, data)] = iter_instances(SAMPLE_02, 1)
    _, first = await upload(running_system, alice, io.BytesIO(data), DICOM)
    status, second = await upload(running_system, alice, form((name, data, DICOM), ("again.dcm", data, DICOM)))
    assert status == 202
    instance_id = first["files"][0]["instance_id"]
    assert [(f["status"], f["instance_id"]) for f in second["files"]] == [("duplicate", instance_id)] * 2
    published = running_system.log_text("ingest_service").count(f'"instance_id": "{instance_id}", "routing_key"')
    assert published == 1
    bob = await running_system.create_user("bob")
    _, other = await upload(running_system, bob, io.BytesIO(data), DICOM)
    assert other["files"][0]["status"] == "accepted"  # the same bytes from another owner are theirs to process
    assert other["files"][0]["instance_id"] != instance_id


def _variant(tmp_path: Path, change: Any) -> bytes:
    ds = pydicom.dcmread(SAMPLE_01)
    change(ds)
    out = tmp_path / "variant.dcm"
    ds.save_as(out)
    return out.read_bytes()


async def test_every_rejection_reason_is_reported_and_recorded(
    running_system: RunningSystem, alice: User, tmp_path: Path
) -> None:
    good = SAMPLE_01.read_bytes()
    zip_buffer = io.BytesIO()
    with zipfile.ZipFile(zip_buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("../outside.dcm", good)
        zf.writestr("bomb.dcm", b"\0" * (16 * 1024 * 1024))
        zf.writestr("empty.dcm", b"")
        zf.writestr("notes.txt", "not an image\n")
        zf.writestr("truncated.dcm", good[:-5000])
        zf.writestr("no-study.dcm", _variant(tmp_path, lambda ds: delattr(ds, "StudyInstanceUID")))
        zf.writestr("no-sop.dcm", _variant(tmp_path, lambda ds: delattr(ds, "SOPInstanceUID")))
    status, body = await upload(running_system, alice, io.BytesIO(zip_buffer.getvalue()), "application/zip")
    assert status == 202
    reasons = {f["name"]: f["reason"] for f in body["files"]}
    assert all(f["status"] == "rejected" for f in body["files"])
    assert reasons["../outside.dcm"].startswith("unsafe path in zip entry")
    assert reasons["bomb.dcm"].endswith("(zip bomb?)")
    assert reasons["empty.dcm"] == "empty file (0 bytes)"
    assert reasons["notes.txt"] == "not a DICOM file: no DICM marker at byte 128"
    expected = f"truncated: pixel data is {512 * 512 * 2 - 5000} bytes, expected 524288"
    assert reasons["truncated.dcm"].startswith(expected)
    assert reasons["no-study.dcm"] == "missing StudyInstanceUID"
    assert reasons["no-sop.dcm"] == "missing SOPInstanceUID"
    found, view = await running_system.results_get(f"/api/uploads/{body['upload_id']}")
    assert found == 200 and view["rejected"] == 7
    assert {f["name"]: f["reason"] for f in view["files"]} == reasons


@pytest.mark.parametrize(
    ("content_type", "data", "status"),
    [(DICOM, b"", 400), ("text/plain", b"hello", 415), ("application/zip", b"PK-not-really", 400)],
)
async def test_whole_body_refusals(
    running_system: RunningSystem, alice: User, content_type: str, data: bytes, status: int
) -> None:
    got, problem = await upload(running_system, alice, data, content_type)
    assert got == status
    assert problem["status"] == status and problem["detail"]


async def test_body_over_the_limit_is_ingest_413_through_the_gateway(start_system) -> None:
    system: RunningSystem = start_system(UPLOAD_MAX_BYTES="100000")
    user = await system.create_user("carol")
    data = SAMPLE_01.read_bytes()
    status, problem = await upload(system, user, io.BytesIO(data), DICOM)
    assert (status, problem["detail"]) == (413, f"The upload is {len(data)} bytes; the limit is 100000.")

    async def chunks() -> Any:
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    status, problem = await upload(system, user, chunks(), DICOM)
    assert status == 413
    assert "100000" in problem["detail"]


async def test_concurrent_uploads_of_two_users_are_registered_once_each_with_their_own_audit_trail(
    running_system: RunningSystem, database_url: str
) -> None:
    """Files of many concurrent uploads share registration calls: every file still gets its own outcome,
    twins of one owner make one instance, and each upload's audit rows carry that upload's request id."""
    bob, carol = await running_system.create_user("bob"), await running_system.create_user("carol")
    files = [data for _, data in iter_instances(SAMPLE_01, 12, group=4)]
    jobs = [(bob, data, f"bob-{i}") for i, data in enumerate(files)]
    jobs += [(carol, data, f"carol-{i}") for i, data in enumerate(files[:6])]
    jobs += [(bob, files[0], "bob-twin")]  # the same bytes again, concurrently with the first

    async def send(user: User, data: bytes, request_id: str) -> tuple[str, dict[str, Any]]:
        headers = {**user.headers, "Content-Type": DICOM, "X-Request-ID": request_id}
        url = f"{running_system.gateway_url}/api/uploads"
        async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as response:
            assert response.status == 202, await response.text()
            return request_id, await response.json()

    answers = dict(await asyncio.gather(*(send(user, data, rid) for user, data, rid in jobs)))
    first, twin = answers["bob-0"]["files"][0], answers["bob-twin"]["files"][0]
    assert sorted([first["status"], twin["status"]]) == ["accepted", "duplicate"]
    assert first["instance_id"] == twin["instance_id"]
    others = [a["files"][0] for rid, a in answers.items() if rid not in ("bob-0", "bob-twin")]
    assert {f["status"] for f in others} == {"accepted"}
    assert answers["carol-0"]["files"][0]["instance_id"] != first["instance_id"]  # another owner's instance
    conn = await asyncpg.connect(database_url)
    try:
        counts = dict(
            await conn.fetch(
                "SELECT owner, count(*) FROM instances WHERE owner = ANY($1::text[]) GROUP BY owner", [bob.id, carol.id]
            )
        )
        audited = await conn.fetch(
            "SELECT correlation_id, resource_id FROM audit_events WHERE action = 'upload.file' AND actor_id = ANY($1)",
            [bob.id, carol.id],
        )
    finally:
        await conn.close()
    assert counts == {bob.id: 12, carol.id: 6}
    assert sorted(row["correlation_id"] for row in audited) == sorted(answers)
    assert {row["correlation_id"]: row["resource_id"] for row in audited} == {
        rid: answer["upload_id"] for rid, answer in answers.items()
    }
