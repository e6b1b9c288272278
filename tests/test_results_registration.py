"""The registration path of results_service: one statement per file, whatever the case (new, duplicate,
twin committed or rolled back meanwhile, replay, another owner's upload, rejected), checked on the
rows it leaves in PostgreSQL. Calls go through `POST /internal/registrations`, the only way in."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from structlog.testing import capture_logs

from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    accepted,
    channel_fixture,
    client_fixture,
    eventually,
    fetch,
    get_json,
    owner_fixture,
    results_settings_fixture,
    sha_of,
    topology_fixture,
    uncommitted_twin,
)
from tests.registration_helpers import item, post_batch, register_one, rejected, upload_records

FULL_DICOM = {
    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
    "sop_instance_uid": "1.2.3.4.5.6",
    "study_instance_uid": "1.2.3.4",
    "series_instance_uid": "1.2.3.4.5",
    "modality": "OT",
    "transfer_syntax_uid": "1.2.840.10008.1.2.4.50",
    "study_date": "20240131",
    "number_of_frames": 96,
    "rows": 512,
    "columns": 480,
}


async def waiting_on_a_lock(database_url: str) -> bool:
    """Whether a session of this run's database waits for a row lock (a registration behind a twin)."""
    rows = await fetch(
        database_url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return bool(rows[0][0])


async def test_a_new_file_records_the_upload_the_instance_with_every_field_and_the_file(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id = uuid.uuid4().hex
    registration = {**accepted(owner, 3, "full", name="scan.dcm"), "size": 1234, "dicom": FULL_DICOM}
    answer = await register_one(client, upload_id, registration)
    assert answer["status"] == 201
    registered = answer["registered"]
    assert (registered["status"], registered["reason"]) == ("accepted", None)
    [upload] = await fetch(database_url, "SELECT owner FROM uploads WHERE id = $1", upload_id)
    assert upload["owner"] == owner
    [instance] = await fetch(database_url, "SELECT * FROM instances WHERE id = $1", registered["instance_id"])
    assert {key: instance[key] for key in FULL_DICOM} == FULL_DICOM
    stored = (instance["owner"], instance["upload_id"], instance["sha256"], instance["size"], instance["file_name"])
    assert stored == (owner, upload_id, sha_of("full"), 1234, "scan.dcm")
    assert instance["status"] == "received" and instance["reason"] is None
    [file] = await fetch(database_url, "SELECT * FROM upload_files WHERE upload_id = $1", upload_id)
    assert (file["index"], file["name"], file["status"], file["instance_id"]) == (
        3,
        "scan.dcm",
        "accepted",
        instance["id"],
    )
    assert (file["sha256"], file["size"]) == (sha_of("full"), 1234)


async def test_no_patient_name_or_id_is_stored_in_the_clear(database_url: str) -> None:
    """They stay in the encrypted blob only; a DicomMetadata that names them is refused."""
    columns = await fetch(
        database_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'instances'"
    )
    assert not {row["column_name"] for row in columns} & {"patient_name", "patient_id"}


async def test_a_duplicate_answers_the_first_instance(client: Any, owner: str, database_url: str) -> None:
    first = (await register_one(client, uuid.uuid4().hex, accepted(owner, 0, "twice")))["registered"]
    upload_id = uuid.uuid4().hex
    answer = await register_one(client, upload_id, accepted(owner, 0, "twice"))
    assert answer["status"] == 201
    assert answer["registered"] == {"instance_id": first["instance_id"], "status": "duplicate", "reason": None}
    [file] = await fetch(database_url, "SELECT status, instance_id FROM upload_files WHERE upload_id = $1", upload_id)
    assert (file["status"], file["instance_id"]) == ("duplicate", first["instance_id"])
    other = (await register_one(client, uuid.uuid4().hex, accepted(f"{owner}-b", 0, "twice")))["registered"]
    assert other["status"] == "accepted" and other["instance_id"] != first["instance_id"]  # owners do not share


async def test_a_twin_committed_while_the_registration_waits_makes_it_a_duplicate(
    client: Any, owner: str, database_url: str
) -> None:
    """The statement's snapshot predates the twin; ON CONFLICT DO UPDATE locks and returns it all the same."""
    async with uncommitted_twin(database_url, owner, "twin") as (transaction, twin_instance):
        upload_id = uuid.uuid4().hex
        registration = asyncio.create_task(register_one(client, upload_id, accepted(owner, 0, "twin")))
        await eventually(lambda: waiting_on_a_lock(database_url))
        await transaction.commit()
        answer = await registration
    assert answer["status"] == 201
    assert (answer["registered"]["status"], answer["registered"]["instance_id"]) == ("duplicate", twin_instance)
    rows = await fetch(database_url, "SELECT count(*) FROM instances WHERE owner = $1", owner)
    assert rows[0][0] == 1
    [file] = await fetch(database_url, "SELECT status, instance_id FROM upload_files WHERE upload_id = $1", upload_id)
    assert (file["status"], file["instance_id"]) == ("duplicate", twin_instance)


async def test_a_twin_rolled_back_while_the_registration_waits_leaves_it_accepted(
    client: Any, owner: str, database_url: str
) -> None:
    async with uncommitted_twin(database_url, owner, "gone") as (transaction, twin_instance):
        registration = asyncio.create_task(register_one(client, uuid.uuid4().hex, accepted(owner, 0, "gone")))
        await eventually(lambda: waiting_on_a_lock(database_url))
        await transaction.rollback()
        answer = await registration
    assert answer["status"] == 201 and answer["registered"]["status"] == "accepted"
    [instance] = await fetch(database_url, "SELECT id FROM instances WHERE owner = $1", owner)
    assert instance["id"] == answer["registered"]["instance_id"] != twin_instance


async def test_concurrent_registrations_of_the_same_bytes_make_one_instance_and_duplicates(
    client: Any, owner: str, database_url: str
) -> None:
    uploads = [uuid.uuid4().hex for _ in range(8)]
    answers = await asyncio.gather(*(register_one(client, u, accepted(owner, 0, "race")) for u in uploads))
    assert sorted(a["registered"]["status"] for a in answers) == ["accepted"] + ["duplicate"] * 7
    [instance] = await fetch(database_url, "SELECT id FROM instances WHERE owner = $1", owner)
    assert {a["registered"]["instance_id"] for a in answers} == {instance["id"]}
    files = await fetch(
        database_url, "SELECT status, instance_id FROM upload_files WHERE upload_id = ANY($1::varchar[])", uploads
    )
    assert sorted(f["status"] for f in files) == ["accepted"] + ["duplicate"] * 7
    assert {f["instance_id"] for f in files} == {instance["id"]}
    audit = await fetch(
        database_url,
        "SELECT detail->>'status' AS status FROM audit_events WHERE action = 'upload.file' AND resource_id = ANY($1)",
        uploads,
    )
    assert sorted(r["status"] for r in audit) == ["accepted"] + ["duplicate"] * 7


async def test_a_replay_answers_the_recorded_file_with_200_and_records_nothing(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id = uuid.uuid4().hex
    for registration in (accepted(owner, 0), rejected(owner, 1)):
        first = await register_one(client, upload_id, registration, "c-first")
        again = await register_one(client, upload_id, registration, "c-again")
        assert (first["status"], again["status"]) == (201, 200)
        assert again["registered"] == first["registered"]
    files = await fetch(database_url, 'SELECT "index" FROM upload_files WHERE upload_id = $1 ORDER BY 1', upload_id)
    assert [f["index"] for f in files] == [0, 1]
    records = await upload_records(database_url, upload_id)
    assert [r["action"] for r in records] == ["upload.create", "upload.file", "upload.file"]
    assert {r["correlation_id"] for r in records} == {"c-first"}


async def test_a_replay_with_other_bytes_answers_the_recorded_file_and_makes_no_instance(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id = uuid.uuid4().hex
    first = await register_one(client, upload_id, accepted(owner, 0, "recorded"))
    again = await register_one(client, upload_id, accepted(owner, 0, "other bytes"))
    assert again == {**first, "status": 200}
    rows = await fetch(database_url, "SELECT sha256 FROM instances WHERE owner = $1", owner)
    assert [r["sha256"] for r in rows] == [sha_of("recorded")]


async def test_concurrent_replays_of_one_file_record_it_once(client: Any, owner: str, database_url: str) -> None:
    upload_id = uuid.uuid4().hex
    registration = accepted(owner, 0, "replayed")
    answers = await asyncio.gather(*(register_one(client, upload_id, registration) for _ in range(6)))
    assert sorted(a["status"] for a in answers) == [200] * 5 + [201]
    assert len({a["registered"]["instance_id"] for a in answers}) == 1
    rows = await fetch(database_url, "SELECT count(*) FROM upload_files WHERE upload_id = $1", upload_id)
    assert rows[0][0] == 1
    records = await upload_records(database_url, upload_id)
    assert [r["action"] for r in records] == ["upload.create", "upload.file"]


async def test_a_file_for_another_owners_upload_is_a_409_audited_as_denied_and_writes_nothing_else(
    client: Any, owner: str, database_url: str
) -> None:
    upload_id, intruder = uuid.uuid4().hex, f"{owner}-intruder"
    await register_one(client, upload_id, accepted(owner, 0))
    for registration in (accepted(intruder, 1, "intruding"), rejected(intruder, 2)):
        answer = await register_one(client, upload_id, registration, "c-intruder")
        assert answer["status"] == 409 and answer["registered"] is None
        assert answer["detail"] == f"Upload {upload_id} belongs to another owner."
    files = await fetch(database_url, 'SELECT "index" FROM upload_files WHERE upload_id = $1', upload_id)
    assert [row["index"] for row in files] == [0]
    assert await fetch(database_url, "SELECT 1 FROM instances WHERE owner = $1", intruder) == []
    denied = [r for r in await upload_records(database_url, upload_id) if r["actor_id"] == intruder]
    assert [(r["action"], r["outcome"], r["detail"], r["correlation_id"]) for r in denied] == [
        ("upload.file", "denied", {"index": 1, "status": 409}, "c-intruder"),
        ("upload.file", "denied", {"index": 2, "status": 409}, "c-intruder"),
    ]


async def test_a_rejected_file_is_registered_with_its_reason(client: Any, owner: str, database_url: str) -> None:
    upload_id = uuid.uuid4().hex
    answer = await register_one(client, upload_id, rejected(owner, 0, reason="empty file (0 bytes)"))
    assert answer["status"] == 201
    assert answer["registered"] == {"instance_id": None, "status": "rejected", "reason": "empty file (0 bytes)"}
    status, upload = await get_json(client, f"/api/uploads/{upload_id}", owner)
    assert status == 200 and upload["rejected"] == 1 and upload["files"][0]["reason"] == "empty file (0 bytes)"
    assert await fetch(database_url, "SELECT 1 FROM instances WHERE upload_id = $1", upload_id) == []


async def test_a_batch_mixing_every_case_answers_each_item_on_its_own(
    client: Any, owner: str, database_url: str
) -> None:
    theirs, mine, replayed = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    await register_one(client, theirs, accepted(f"{owner}-other", 0))
    recorded = await register_one(client, replayed, accepted(owner, 0, "recorded"))
    answers = await post_batch(
        client,
        [
            item(mine, accepted(owner, 0, "new")),
            item(theirs, accepted(owner, 1, "intruding")),
            item(replayed, accepted(owner, 0, "recorded")),
            item(mine, accepted(owner, 1, "recorded")),
            item(mine, rejected(owner, 2)),
            item(uuid.uuid4().hex, accepted(owner, 0, "new")),
        ],
    )
    assert [(a["status"], (a["registered"] or {}).get("status")) for a in answers] == [
        (201, "accepted"),
        (409, None),
        (200, "accepted"),
        (201, "duplicate"),
        (201, "rejected"),
        (201, "duplicate"),
    ]
    assert answers[2]["registered"] == recorded["registered"]
    assert answers[3]["registered"]["instance_id"] == recorded["registered"]["instance_id"]
    assert answers[5]["registered"]["instance_id"] == answers[0]["registered"]["instance_id"]
    rows = await fetch(database_url, "SELECT sha256 FROM instances WHERE owner = $1", owner)
    assert sorted(r["sha256"] for r in rows) == sorted([sha_of("new"), sha_of("recorded")])
    files = await fetch(database_url, 'SELECT "index", status FROM upload_files WHERE upload_id = $1', mine)
    assert sorted((f["index"], f["status"]) for f in files) == [(0, "accepted"), (1, "duplicate"), (2, "rejected")]
    assert [r["outcome"] for r in await upload_records(database_url, theirs) if r["actor_id"] == owner] == ["denied"]


async def test_malformed_registrations_are_problems_and_register_nothing(
    client: Any, owner: str, database_url: str
) -> None:
    good = item(uuid.uuid4().hex, accepted(owner, 0))
    no_dicom = {**accepted(owner, 0), "dicom": None}
    patient = {**accepted(owner, 0), "dicom": {**FULL_DICOM, "patient_name": "Doe^Jane"}}
    bodies: list[dict[str, Any]] = [
        {"items": []},
        {"items": [good, item("bad id!", accepted(owner, 0))]},
        {"items": [good], "extra": 1},
        {"items": [good, item(uuid.uuid4().hex, {"index": 0, "outcome": "accepted"})]},
        {"items": [good, item(uuid.uuid4().hex, no_dicom)]},
        {"items": [good, item(uuid.uuid4().hex, {**rejected(owner, 0), "reason": None})]},
        {"items": [good, item(uuid.uuid4().hex, patient)]},
    ]
    for body in bodies:
        response = await client.post("/internal/registrations", json=body)
        assert response.status == 422, body
        assert response.content_type == "application/problem+json"
    assert (await client.post("/internal/registrations", data=b"{")).status in (400, 415)
    rows = await fetch(database_url, "SELECT count(*) FROM instances WHERE owner = $1", owner)
    assert rows[0][0] == 0


async def test_a_batch_chosen_as_a_deadlock_victim_runs_its_statements_again(
    client: Any, owner: str, database_url: str
) -> None:
    """The batch locks upload `first` then `second` (items run in (owner, sha256) order); a transaction holding
    `second` and then asking for `first` closes the cycle, and PostgreSQL aborts the batch (the holder waits
    longer before checking for deadlocks). The batch reruns and registers both files once."""
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    contents = sorted(["one", "two"], key=sha_of)
    for upload_id in (first, second):
        await register_one(client, upload_id, accepted(owner, 0))
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SET deadlock_timeout = '60s'")
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM uploads WHERE id = $1 FOR UPDATE", second)
        with capture_logs() as logs:
            batch = asyncio.create_task(
                post_batch(
                    client,
                    [item(second, accepted(owner, 1, contents[1])), item(first, accepted(owner, 1, contents[0]))],
                )
            )
            await eventually(lambda: waiting_on_a_lock(database_url))  # the batch holds `first`, waits for `second`
            await holder.execute("UPDATE uploads SET owner = owner WHERE id = $1", first)  # returns once it is aborted
            await transaction.commit()
            answers = await batch
    finally:
        await holder.close()
    assert [(a["status"], a["registered"]["status"]) for a in answers] == [(201, "accepted")] * 2
    assert [entry["attempt"] for entry in logs if entry["event"] == "registration_batch_deadlock"] == [1]
    for upload_id in (first, second):
        files = await fetch(database_url, 'SELECT "index" FROM upload_files WHERE upload_id = $1 ORDER BY 1', upload_id)
        assert [f["index"] for f in files] == [0, 1]
        assert [r["action"] for r in await upload_records(database_url, upload_id)] == ["upload.create"] + [
            "upload.file"
        ] * 2
