"""The audit records of uploads, checked on the rows PostgreSQL holds: written by results_service in the
registration statement itself (`upload.create` with the upload's row, one `upload.file` per file it
creates), and `upload.stop` when ingest reports an upload it answered with a problem."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.ingest_rig import IngestRig, rig_fixture, uploader  # noqa: F401  (fixture, used by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    accepted,
    channel_fixture,
    owner_fixture,
    results_settings_fixture,
)
from tests.registration_helpers import item, register_one, rejected, upload_records, who


def accepted_duplicate_rejected(instance_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, outcome, detail) of an upload whose files were accepted, a duplicate of it, then rejected."""
    return [
        ("upload.create", "success", {}),
        ("upload.file", "success", {"index": 0, "status": "accepted", "instance_id": instance_id}),
        ("upload.file", "success", {"index": 1, "status": "duplicate", "instance_id": instance_id}),
        ("upload.file", "failure", {"index": 2, "status": "rejected"}),
    ]


def identity(owner: str, correlation: str) -> set[tuple[str, str, str, str]]:
    return {(owner, f"{owner}@example.org", "203.0.113.7", correlation)}


async def test_registrations_record_the_upload_and_each_file_with_who_and_the_correlation_id(
    rig: IngestRig, owner: str
) -> None:
    upload_id, correlation = uuid.uuid4().hex, f"c-{uuid.uuid4().hex}"
    registrations = [
        accepted(owner, 0, "first", name="Doe^Jane 1.dcm"),
        accepted(owner, 1, "first", name="Doe^Jane 2.dcm"),
        rejected(owner, 2, name="Doe^Jane.txt", reason="Doe^Jane.txt is not DICOM"),
    ]
    answers = [await register_one(rig.results, upload_id, r, correlation) for r in registrations]
    assert [(a["status"], a["registered"]["status"]) for a in answers] == [
        (201, "accepted"),
        (201, "duplicate"),
        (201, "rejected"),
    ]
    records = await upload_records(rig.database_url, upload_id)
    instance_id = answers[0]["registered"]["instance_id"]
    assert [(r["action"], r["outcome"], r["detail"]) for r in records] == accepted_duplicate_rejected(instance_id)
    assert who(records) == identity(owner, correlation)
    assert not any("Doe" in str(r) or "DICOM" in str(r) for r in records)  # no file name, no reason


async def test_an_upload_whose_first_file_is_rejected_is_created_and_recorded(rig: IngestRig, owner: str) -> None:
    upload_id = uuid.uuid4().hex
    assert (await register_one(rig.results, upload_id, rejected(owner, 0), "c-rej"))["status"] == 201
    records = await upload_records(rig.database_url, upload_id)
    assert [(r["action"], r["outcome"]) for r in records] == [("upload.create", "success"), ("upload.file", "failure")]


async def test_a_batch_whose_audit_record_cannot_be_written_registers_none_of_its_files(
    rig: IngestRig, owner: str
) -> None:
    """Atomic both ways: an audit insert that fails takes the uploads, instances and files of the call with it."""
    marker = f"c-refuse-{uuid.uuid4().hex[:12]}"
    function = f"refuse_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(rig.database_url)
    try:
        await conn.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.correlation_id = '{marker}' THEN RAISE EXCEPTION 'audit refused'; END IF; RETURN NEW; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER {function} BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
        fine, refused = uuid.uuid4().hex, uuid.uuid4().hex
        items = [item(fine, accepted(owner, 0, "fine"), "c-fine"), item(refused, accepted(owner, 0, "refused"), marker)]
        response = await rig.results.post("/internal/registrations", json={"items": items})
        assert response.status == 500
    finally:
        await conn.execute(f"DROP TRIGGER IF EXISTS {function} ON audit_events")
        await conn.execute(f"DROP FUNCTION IF EXISTS {function}()")
        await conn.close()
    assert await rig.rows("SELECT 1 FROM uploads WHERE id = ANY($1::varchar[])", [fine, refused]) == []
    assert await rig.rows("SELECT 1 FROM instances WHERE owner = $1", owner) == []
    assert await upload_records(rig.database_url, fine) == []


async def test_upload_records_stay_append_only(rig: IngestRig, owner: str) -> None:
    upload_id = uuid.uuid4().hex
    await register_one(rig.results, upload_id, rejected(owner, 0), "c-ao")
    conn = await asyncpg.connect(rig.database_url)
    try:
        for statement in ("UPDATE audit_events SET outcome = 'success'", "DELETE FROM audit_events"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"{statement} WHERE resource_id = $1", upload_id)
    finally:
        await conn.close()
    assert len(await upload_records(rig.database_url, upload_id)) == 2


def form(*files: tuple[str, bytes]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, content in files:
        data.add_field("file", io.BytesIO(content), filename=name, content_type="application/dicom")
    return data


async def test_an_accepted_upload_through_ingest_is_recorded_without_an_audit_call(
    rig: IngestRig, owner: str, samples_dir: Path
) -> None:
    ingest = await rig.make()
    sample = (samples_dir / "sample-01-dicom.dcm").read_bytes()
    correlation = f"c-{uuid.uuid4().hex}"
    body = form(("Doe^Jane 1.dcm", sample), ("Doe^Jane 2.dcm", sample), ("Doe^Jane.txt", b"not dicom"))
    response = await ingest.post("/upload", data=body, headers=uploader(owner, correlation))
    assert response.status == 202, await response.text()
    receipt = await response.json()
    records = await upload_records(rig.database_url, receipt["upload_id"])
    instance_id = receipt["files"][0]["instance_id"]
    assert [(r["action"], r["outcome"], r["detail"]) for r in records] == accepted_duplicate_rejected(instance_id)
    assert who(records) == identity(owner, correlation)


async def test_an_upload_stopped_by_a_problem_adds_one_stop_record_with_the_counts(
    rig: IngestRig, owner: str, samples_dir: Path
) -> None:
    """The first file fits under the 700 000-byte limit, the second takes the body over it: 413."""
    ingest = await rig.make(upload_max_bytes=700_000)
    sample = (samples_dir / "sample-01-dicom.dcm").read_bytes()
    assert 350_000 < len(sample) < 700_000 - 10_000
    correlation = f"c-{uuid.uuid4().hex}"

    boundary = uuid.uuid4().hex
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.dcm"\r\n'
    part += "Content-Type: application/dicom\r\n\r\n"
    data = (part.encode() + sample + b"\r\n") * 2 + f"--{boundary}--\r\n".encode()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit is met while streaming
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    headers = {**uploader(owner, correlation), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await ingest.post("/upload", data=chunks(), headers=headers)
    assert response.status == 413, await response.text()
    problem = await response.json()
    records = await upload_records(rig.database_url, problem["upload_id"])
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("upload.create", "success"),
        ("upload.file", "success"),
        ("upload.stop", "failure"),
    ]
    assert records[2]["detail"] == {"status": 413, "files": 1, "accepted": 1}
    assert who(records) == identity(owner, correlation)


async def test_an_upload_without_files_records_only_its_stop(rig: IngestRig, owner: str) -> None:
    ingest = await rig.make()
    boundary = uuid.uuid4().hex
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="comment"\r\n\r\nhello\r\n--{boundary}--\r\n'
    headers = {**uploader(owner, "c-empty"), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await ingest.post("/upload", data=body.encode(), headers=headers)
    assert response.status == 400
    problem = await response.json()
    records = await upload_records(rig.database_url, problem["upload_id"])
    assert [(r["action"], r["outcome"], r["detail"]) for r in records] == [
        ("upload.stop", "failure", {"status": 400, "files": 0})
    ]
    assert await rig.rows("SELECT 1 FROM uploads WHERE id = $1", problem["upload_id"]) == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/internal/uploads/bad id!/stop", {"owner": "u", "status": 413}, 404),
        ("/internal/uploads/u1/stop", {"owner": "u", "status": 202}, 422),
        ("/internal/uploads/u1/stop", {"owner": "u", "status": 413, "file_names": ["Doe^Jane.dcm"]}, 422),
        ("/internal/uploads/u1/stop", {"status": 413}, 422),
    ],
    ids=["bad-id", "not-a-problem", "names", "no-owner"],
)
async def test_bad_stop_reports_are_problems_and_record_nothing(
    rig: IngestRig, path: str, body: dict[str, Any], status: int
) -> None:
    response = await rig.results.post(path, json=body)
    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert await upload_records(rig.database_url, "u1") == []
