"""The registration write of results_service (one statement in the usual case, a careful path otherwise),
checked on the rows it leaves in PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    fetch,
    owner_fixture,
    register,
    results_settings_fixture,
    sha_of,
    topology_fixture,
    uncommitted_twin,
)

FULL_DICOM = {
    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
    "sop_instance_uid": "1.2.3.4.5.6",
    "study_instance_uid": "1.2.3.4",
    "series_instance_uid": "1.2.3.4.5",
    "modality": "OT",
    "transfer_syntax_uid": "1.2.840.10008.1.2.4.50",
    "patient_name": "Doe^Jane",
    "patient_id": "P-1",
    "study_date": "20240131",
    "number_of_frames": 96,
    "rows": 512,
    "columns": 480,
}


async def test_a_new_file_records_the_upload_the_instance_with_every_field_and_the_file(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id = uuid.uuid4().hex
    body = {
        "index": 3,
        "name": "scan.dcm",
        "owner": owner,
        "sha256": sha_of("full"),
        "size": 1234,
        "outcome": "accepted",
        "dicom": FULL_DICOM,
    }
    response = await client.post(f"/internal/uploads/{upload_id}/files", json=body)
    assert response.status == 201
    answer = await response.json()
    assert (answer["status"], answer["instance_status"], answer["reason"]) == ("accepted", "received", None)
    [upload] = await fetch(database_url, "SELECT owner FROM uploads WHERE id = $1", upload_id)
    assert upload["owner"] == owner
    [instance] = await fetch(database_url, "SELECT * FROM instances WHERE id = $1", answer["instance_id"])
    assert {key: instance[key] for key in FULL_DICOM} == FULL_DICOM
    stored = (instance["owner"], instance["upload_id"], instance["sha256"], instance["size"], instance["file_name"])
    assert stored == (owner, upload_id, sha_of("full"), 1234, "scan.dcm")
    assert instance["status"] == "received" and instance["reason"] is None
    assert instance["created_at"] is not None and instance["updated_at"] is not None
    [file] = await fetch(database_url, "SELECT * FROM upload_files WHERE upload_id = $1", upload_id)
    assert (file["index"], file["name"], file["status"], file["instance_id"]) == (
        3,
        "scan.dcm",
        "accepted",
        instance["id"],
    )
    assert (file["sha256"], file["size"]) == (sha_of("full"), 1234)


async def test_a_duplicate_answers_the_first_instance_and_its_live_status(
    client: Any, owner: str, database_url: str
) -> None:
    _, first = await register(client, owner, content="twice")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE instances SET status = 'queued' WHERE id = $1", first["instance_id"])
    finally:
        await conn.close()
    upload_id = uuid.uuid4().hex
    status, second = await register(client, owner, upload_id=upload_id, content="twice")
    assert status == 201
    assert second == {
        "instance_id": first["instance_id"],
        "status": "duplicate",
        "instance_status": "queued",
        "reason": None,
    }
    [file] = await fetch(database_url, "SELECT status, instance_id FROM upload_files WHERE upload_id = $1", upload_id)
    assert (file["status"], file["instance_id"]) == ("duplicate", first["instance_id"])


async def test_a_twin_committed_while_the_registration_waits_makes_it_a_duplicate(
    client: Any, owner: str, database_url: str
) -> None:
    """The statement waits on the twin's uncommitted row and cannot see it once committed: the careful path answers."""
    async with uncommitted_twin(database_url, owner, "twin") as (transaction, twin_instance):
        upload_id = uuid.uuid4().hex
        registration = asyncio.create_task(register(client, owner, upload_id=upload_id, content="twin"))
        await asyncio.sleep(0.5)
        assert not registration.done()  # blocked on the twin's uncommitted row
        await transaction.commit()
        status, answer = await registration
    assert status == 201
    assert (answer["status"], answer["instance_id"]) == ("duplicate", twin_instance)
    rows = await fetch(database_url, "SELECT count(*) FROM instances WHERE owner = $1", owner)
    assert rows[0][0] == 1
    [file] = await fetch(database_url, "SELECT status, instance_id FROM upload_files WHERE upload_id = $1", upload_id)
    assert (file["status"], file["instance_id"]) == ("duplicate", twin_instance)


async def test_a_file_for_another_owners_upload_is_a_conflict_and_records_nothing(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id = uuid.uuid4().hex
    await register(client, owner, upload_id=upload_id)
    status, _ = await register(client, f"{owner}-intruder", upload_id=upload_id, index=1, content="intruder")
    assert status == 409
    rejected = {"index": 2, "name": "x.txt", "owner": f"{owner}-intruder", "outcome": "rejected", "reason": "text"}
    assert (await client.post(f"/internal/uploads/{upload_id}/files", json=rejected)).status == 409
    files = await fetch(database_url, 'SELECT "index" FROM upload_files WHERE upload_id = $1', upload_id)
    assert [row["index"] for row in files] == [0]
    rows = await fetch(database_url, "SELECT count(*) FROM instances WHERE owner = $1", f"{owner}-intruder")
    assert rows[0][0] == 0


async def test_a_replayed_rejection_answers_the_same_with_200(client: Any, owner: str, database_url: str) -> None:
    upload_id = uuid.uuid4().hex
    body = {"index": 0, "name": "empty.dcm", "owner": owner, "outcome": "rejected", "reason": "empty file (0 bytes)"}
    first = await client.post(f"/internal/uploads/{upload_id}/files", json=body)
    again = await client.post(f"/internal/uploads/{upload_id}/files", json=body)
    assert (first.status, again.status) == (201, 200)
    assert await first.json() == await again.json()
    rows = await fetch(database_url, "SELECT count(*) FROM upload_files WHERE upload_id = $1", upload_id)
    assert rows[0][0] == 1
