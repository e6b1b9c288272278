"""The audit records of uploads: written by results_service in the registration's own transaction
(`upload.create` with the upload's row, one `upload.file` per registered file), checked on the rows
PostgreSQL holds; and through the real ingest app, which adds `upload.stop` only for a problem answer."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from common.auth.identity import CLIENT_HEADER, EMAIL_HEADER, USER_HEADER
from ingest_service.main import init_app as init_ingest
from ingest_service.settings import IngestSettings
from results_service.settings import ResultsSettings
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    dicom_fields,
    fetch,
    owner_fixture,
    results_settings_fixture,
    sha_of,
    topology_fixture,
    uncommitted_twin,
)

COLUMNS = "action, outcome, actor_id, actor_email, client, correlation_id, resource_type, resource_id, detail"


def identity(owner: str, correlation: str) -> dict[str, str]:
    """The headers ingest forwards: the gateway's identity of the uploader and the correlation id."""
    return {
        USER_HEADER: owner,
        EMAIL_HEADER: f"{owner}@example.org",
        CLIENT_HEADER: "203.0.113.7",
        "X-Request-ID": correlation,
    }


def accepted(owner: str, index: int, content: str, name: str = "Doe^Jane scan.dcm") -> dict[str, Any]:
    return {
        "index": index,
        "name": name,
        "owner": owner,
        "sha256": sha_of(content),
        "size": 10,
        "outcome": "accepted",
        "dicom": dicom_fields(),
    }


def rejected(owner: str, index: int, name: str = "Doe^Jane notes.txt") -> dict[str, Any]:
    return {"index": index, "name": name, "owner": owner, "outcome": "rejected", "reason": f"{name} is not DICOM"}


async def upload_records(database_url: str, upload_id: str) -> list[dict[str, Any]]:
    """The audit rows naming this upload, oldest first, with `detail` decoded."""
    rows = await fetch(
        database_url,
        f"SELECT {COLUMNS} FROM audit_events WHERE resource_type = 'upload' AND resource_id = $1 ORDER BY id",
        upload_id,
    )
    return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]


def accepted_duplicate_rejected(instance_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, outcome, detail) of an upload whose files were accepted, a duplicate of it, then rejected."""
    return [
        ("upload.create", "success", {}),
        ("upload.file", "success", {"index": 0, "status": "accepted", "instance_id": instance_id}),
        ("upload.file", "success", {"index": 1, "status": "duplicate", "instance_id": instance_id}),
        ("upload.file", "failure", {"index": 2, "status": "rejected"}),
    ]


def who(records: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {(r["actor_id"], r["actor_email"], r["client"], r["correlation_id"]) for r in records}


async def test_registrations_record_the_upload_and_each_file_with_who_and_the_correlation_id(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id, correlation = uuid.uuid4().hex, f"c-{uuid.uuid4().hex}"
    url = f"/internal/uploads/{upload_id}/files"
    answers = []
    for body in (accepted(owner, 0, "first"), accepted(owner, 1, "first"), rejected(owner, 2)):
        response = await client.post(url, json=body, headers=identity(owner, correlation))
        assert response.status == 201
        answers.append(await response.json())
    instance_id = answers[0]["instance_id"]
    assert [a["status"] for a in answers] == ["accepted", "duplicate", "rejected"]
    records = await upload_records(database_url, upload_id)
    assert [(r["action"], r["outcome"], r["detail"]) for r in records] == accepted_duplicate_rejected(instance_id)
    assert who(records) == {(owner, f"{owner}@example.org", "203.0.113.7", correlation)}
    assert not any("Doe" in str(r) or "DICOM" in str(r) for r in records)  # no file name, no reason


async def test_a_replay_writes_nothing_and_records_nothing(client: Any, owner: str, database_url: str) -> None:
    upload_id = uuid.uuid4().hex
    url = f"/internal/uploads/{upload_id}/files"
    for body in (accepted(owner, 0, uuid.uuid4().hex), rejected(owner, 1)):
        first = await client.post(url, json=body, headers=identity(owner, "c-first"))
        again = await client.post(url, json=body, headers=identity(owner, "c-again"))
        assert (first.status, again.status) == (201, 200)
    records = await upload_records(database_url, upload_id)
    assert [r["action"] for r in records] == ["upload.create", "upload.file", "upload.file"]
    assert {r["correlation_id"] for r in records} == {"c-first"}


async def test_an_upload_whose_first_file_is_rejected_is_created_and_recorded(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id = uuid.uuid4().hex
    response = await client.post(
        f"/internal/uploads/{upload_id}/files", json=rejected(owner, 0), headers=identity(owner, "c-rej")
    )
    assert response.status == 201
    records = await upload_records(database_url, upload_id)
    assert [(r["action"], r["outcome"]) for r in records] == [("upload.create", "success"), ("upload.file", "failure")]


async def test_the_careful_path_records_the_same_rows_in_its_transaction(
    client: Any, owner: str, database_url: str
) -> None:
    """A twin committed while the statement waits sends the registration down the ORM path."""
    async with uncommitted_twin(database_url, owner, "careful") as (transaction, twin_instance):
        upload_id = uuid.uuid4().hex
        registration = asyncio.create_task(
            client.post(
                f"/internal/uploads/{upload_id}/files",
                json=accepted(owner, 0, "careful"),
                headers=identity(owner, "c-careful"),
            )
        )
        await asyncio.sleep(0.5)
        assert not registration.done()  # blocked on the twin's uncommitted row
        await transaction.commit()
        response = await registration
    assert response.status == 201
    assert (await response.json())["status"] == "duplicate"
    records = await upload_records(database_url, upload_id)
    assert [(r["action"], r["outcome"], r["detail"]) for r in records] == [
        ("upload.create", "success", {}),
        ("upload.file", "success", {"index": 0, "status": "duplicate", "instance_id": twin_instance}),
    ]
    assert who(records) == {(owner, f"{owner}@example.org", "203.0.113.7", "c-careful")}


async def test_a_file_for_another_owners_upload_is_recorded_as_denied_and_nothing_else(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id, intruder = uuid.uuid4().hex, f"{owner}-intruder"
    url = f"/internal/uploads/{upload_id}/files"
    assert (
        await client.post(url, json=accepted(owner, 0, uuid.uuid4().hex), headers=identity(owner, "c"))
    ).status == 201
    for body in (accepted(intruder, 1, uuid.uuid4().hex), rejected(intruder, 2)):
        assert (await client.post(url, json=body, headers=identity(intruder, "c-intruder"))).status == 409
    records = await upload_records(database_url, upload_id)
    assert [(r["action"], r["outcome"], r["actor_id"], r["detail"]) for r in records] == [
        ("upload.create", "success", owner, {}),
        (
            "upload.file",
            "success",
            owner,
            {"index": 0, "status": "accepted", "instance_id": records[1]["detail"]["instance_id"]},
        ),
        ("upload.file", "denied", intruder, {"index": 1, "status": 409}),
        ("upload.file", "denied", intruder, {"index": 2, "status": 409}),
    ]


async def test_a_file_whose_audit_record_cannot_be_written_is_not_registered(
    client: Any, owner: str, database_url: str
) -> None:
    """Atomic both ways: an audit insert that fails takes the upload, the instance and the file with it."""
    marker = f"c-refuse-{uuid.uuid4().hex[:12]}"
    function = f"refuse_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.correlation_id = '{marker}' THEN RAISE EXCEPTION 'audit refused'; END IF; RETURN NEW; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER {function} BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
        upload_id, content = uuid.uuid4().hex, uuid.uuid4().hex
        response = await client.post(
            f"/internal/uploads/{upload_id}/files", json=accepted(owner, 0, content), headers=identity(owner, marker)
        )
        assert response.status == 500
    finally:
        await conn.execute(f"DROP TRIGGER IF EXISTS {function} ON audit_events")
        await conn.execute(f"DROP FUNCTION IF EXISTS {function}()")
        await conn.close()
    assert await fetch(database_url, "SELECT 1 FROM uploads WHERE id = $1", upload_id) == []
    assert await fetch(database_url, "SELECT 1 FROM instances WHERE sha256 = $1", sha_of(content)) == []
    assert await fetch(database_url, "SELECT 1 FROM upload_files WHERE upload_id = $1", upload_id) == []
    assert await upload_records(database_url, upload_id) == []


async def test_upload_records_stay_append_only(client: Any, owner: str, database_url: str) -> None:
    upload_id = uuid.uuid4().hex
    response = await client.post(
        f"/internal/uploads/{upload_id}/files", json=rejected(owner, 0), headers=identity(owner, "c-ao")
    )
    assert response.status == 201
    conn = await asyncpg.connect(database_url)
    try:
        for statement in ("UPDATE audit_events SET outcome = 'success'", "DELETE FROM audit_events"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"{statement} WHERE resource_id = $1", upload_id)
    finally:
        await conn.close()
    assert len(await upload_records(database_url, upload_id)) == 2


@pytest.fixture
def make_ingest(client: TestClient, results_settings: ResultsSettings, aiohttp_client: Any) -> Any:
    """`await make_ingest(**settings)`: the real ingest app in front of the real results_service (same
    database, broker prefix and blob store)."""

    async def make(**overrides: Any) -> Any:
        settings = IngestSettings(
            amqp_prefix=results_settings.amqp_prefix,
            job_delivery_limit=results_settings.job_delivery_limit,
            blob_dir=results_settings.blob_dir,
            results_url=str(client.server.make_url("")).rstrip("/"),
            **overrides,
        )
        return await aiohttp_client(init_ingest(settings))

    return make


def form(*files: tuple[str, bytes]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, content in files:
        data.add_field("file", io.BytesIO(content), filename=name, content_type="application/dicom")
    return data


async def test_an_accepted_upload_through_ingest_is_recorded_without_an_audit_call(
    make_ingest: Any, owner: str, database_url: str, samples_dir: Path
) -> None:
    ingest = await make_ingest()
    sample = (samples_dir / "sample-01-dicom.dcm").read_bytes()
    correlation = f"c-{uuid.uuid4().hex}"
    body = form(("Doe^Jane 1.dcm", sample), ("Doe^Jane 2.dcm", sample), ("Doe^Jane.txt", b"not dicom"))
    response = await ingest.post("/upload", data=body, headers=identity(owner, correlation))
    assert response.status == 202, await response.text()
    receipt = await response.json()
    records = await upload_records(database_url, receipt["upload_id"])
    instance_id = receipt["files"][0]["instance_id"]
    assert [(r["action"], r["outcome"], r["detail"]) for r in records] == accepted_duplicate_rejected(instance_id)
    assert who(records) == {(owner, f"{owner}@example.org", "203.0.113.7", correlation)}


async def test_an_upload_stopped_by_a_problem_adds_one_stop_record_with_the_counts(
    make_ingest: Any, owner: str, database_url: str, samples_dir: Path
) -> None:
    """The first file fits under the 700 000-byte limit, the second takes the body over it: 413."""
    ingest = await make_ingest(upload_max_bytes=700_000)
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

    headers = {**identity(owner, correlation), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await ingest.post("/upload", data=chunks(), headers=headers)
    assert response.status == 413, await response.text()
    problem = await response.json()
    records = await upload_records(database_url, problem["upload_id"])
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("upload.create", "success"),
        ("upload.file", "success"),
        ("upload.stop", "failure"),
    ]
    assert records[2]["detail"] == {"status": 413, "files": 1, "accepted": 1}
    assert who(records) == {(owner, f"{owner}@example.org", "203.0.113.7", correlation)}
