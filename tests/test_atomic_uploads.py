"""All-or-nothing uploads (`?atomic=true`) on the ingest app, in front of the real results_service on this run's
database, with the real RabbitMQ and blob store: an upload holding one bad file leaves nothing anywhere; a good one
is registered in one transaction and every job is queued."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.auth.identity import Caller
from common.messaging.messages import ProcessJob
from common.schemas.instances import FileRegistration
from common.schemas.uploads import NOT_TAKEN_REASON
from ingest_service.keys import registrar_key
from ingest_service.registration import LARGE_BODY_BYTES
from samples.make_instances import SAMPLE_01, iter_instances
from tests.ingest_rig import (  # noqa: F401  (fixture, by name)
    IngestRig,
    blob_files,
    gateway_with_user,
    rig_fixture,
    uploader,
)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    accepted,
    channel_fixture,
    eventually,
    owner_fixture,
    results_settings_fixture,
)

ATOMIC = "/upload?atomic=true"
ZIP = {"Content-Type": "application/zip"}


def make_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


async def chunked(data: bytes, size: int = 16_384) -> AsyncIterator[bytes]:
    """The body as a stream of unknown length (sent with Transfer-Encoding: chunked)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def left_by(rig: IngestRig, owner: str) -> dict[str, Any]:
    """Everything the owner's uploads left: rows, jobs, committed and staged blobs."""
    return {
        "uploads": await rig.rows("SELECT id FROM uploads WHERE owner = $1", owner),
        "files": await rig.rows(
            "SELECT f.id FROM upload_files f JOIN uploads u ON u.id = f.upload_id WHERE u.owner = $1", owner
        ),
        "instances": await rig.rows("SELECT id FROM instances WHERE owner = $1", owner),
        "jobs": await rig.drain(rig.names.jobs) + await rig.drain(rig.names.jobs_large),
        "staged": list((rig.blob_dir / "tmp").iterdir()),
    }


NOTHING = {"uploads": [], "files": [], "instances": [], "jobs": [], "staged": []}


async def test_a_zip_with_one_bad_file_is_a_422_that_leaves_nothing(rig: IngestRig, owner: str) -> None:
    good = list(iter_instances(SAMPLE_01, 2))
    truncated = good[1][1][: len(good[1][1]) // 2]
    archive = make_zip([good[0], ("notes.txt", b"not an image\n"), ("cut.dcm", truncated), good[1]])
    client = await rig.make()
    response = await client.post(ATOMIC, data=chunked(archive), headers={**ZIP, **uploader(owner)})
    assert response.status == 422 and response.content_type == PROBLEM_CONTENT_TYPE
    problem = await response.json()
    assert [(f["name"], f["status"], f["sha256"]) for f in problem["files"]] == [
        (good[0][0], "rejected", sha(good[0][1])),
        ("notes.txt", "rejected", sha(b"not an image\n")),
        ("cut.dcm", "rejected", sha(truncated)),
        (good[1][0], "rejected", sha(good[1][1])),
    ]
    reasons = [f["reason"] for f in problem["files"]]
    assert reasons[0] == reasons[3] == NOT_TAKEN_REASON
    assert reasons[1] == "not a DICOM file: no DICM marker at byte 128"
    assert reasons[2] != NOT_TAKEN_REASON
    assert problem["detail"].startswith("2 of the 4 files are rejected")
    assert await left_by(rig, owner) == NOTHING
    assert blob_files(rig.blob_dir) == []
    # The refusal is in the audit trail (ingest's stop report), with the counts only.
    await eventually(lambda: _stop_recorded(rig, problem["upload_id"]))
    [stop] = await rig.rows(
        "SELECT detail FROM audit_events WHERE action = 'upload.stop' AND resource_id = $1", problem["upload_id"]
    )
    assert json.loads(stop["detail"]) == {"status": 422, "files": 4, "rejected": 4}


async def _stop_recorded(rig: IngestRig, upload_id: str) -> bool:
    return bool(
        await rig.rows("SELECT 1 FROM audit_events WHERE action = 'upload.stop' AND resource_id = $1", upload_id)
    )


async def test_a_rejected_upload_keeps_blobs_that_existed_before_and_adds_none(rig: IngestRig, owner: str) -> None:
    first, second = iter_instances(SAMPLE_01, 2)
    client = await rig.make()
    before = await client.post(
        "/upload", data=io.BytesIO(first[1]), headers={"Content-Type": "application/dicom", **uploader(owner)}
    )
    assert before.status == 202
    await rig.drain(rig.names.jobs)
    archive = make_zip([first, second, ("empty.dcm", b"")])
    response = await client.post(ATOMIC, data=io.BytesIO(archive), headers={**ZIP, **uploader(owner)})
    assert response.status == 422
    assert [(f["name"], f["reason"]) for f in (await response.json())["files"]][2] == (
        "empty.dcm",
        "empty file (0 bytes)",
    )
    assert [p.name for p in blob_files(rig.blob_dir)] == [sha(first[1])]
    assert len(await rig.rows("SELECT id FROM instances WHERE owner = $1", owner)) == 1
    assert await rig.drain(rig.names.jobs) == []


async def test_a_zip_of_good_files_is_registered_whole_and_every_job_queued(rig: IngestRig, owner: str) -> None:
    good = list(iter_instances(SAMPLE_01, 3))
    client = await rig.make()
    held = await client.post(
        "/upload", data=io.BytesIO(good[2][1]), headers={"Content-Type": "application/dicom", **uploader(owner)}
    )
    [held_file] = (await held.json())["files"]
    await rig.drain(rig.names.jobs)
    archive = make_zip([good[0], good[1], ("again.dcm", good[2][1]), ("twin.dcm", good[0][1])])
    response = await client.post(ATOMIC, data=chunked(archive), headers={**ZIP, **uploader(owner, "req-atomic")})
    assert response.status == 202, await response.text()
    receipt = await response.json()
    files = receipt["files"]
    assert [(f["name"], f["status"]) for f in files] == [
        (good[0][0], "accepted"),
        (good[1][0], "accepted"),
        ("again.dcm", "duplicate"),
        ("twin.dcm", "duplicate"),
    ]
    assert files[2]["instance_id"] == held_file["instance_id"] and files[3]["instance_id"] == files[0]["instance_id"]
    rows = await rig.files_of(receipt["upload_id"])
    assert [(r["index"], r["status"], r["instance_id"]) for r in rows] == [
        (n, f["status"], f["instance_id"]) for n, f in enumerate(files)
    ]
    jobs = [ProcessJob.model_validate_json(m.body) for m in await rig.drain(rig.names.jobs)]
    assert sorted(j.instance_id for j in jobs) == sorted([files[0]["instance_id"], files[1]["instance_id"]])
    assert {j.upload_id for j in jobs} == {receipt["upload_id"]}
    assert {p.name for p in blob_files(rig.blob_dir)} == {sha(data) for _, data in good}
    assert list((rig.blob_dir / "tmp").iterdir()) == []
    # One transaction wrote the upload's records: one create, one per file, under the request's correlation id.
    records = await rig.rows(
        "SELECT action, correlation_id FROM audit_events WHERE resource_type = 'upload' AND resource_id = $1",
        receipt["upload_id"],
    )
    assert sorted(r["action"] for r in records) == ["upload.create"] + ["upload.file"] * 4
    assert {r["correlation_id"] for r in records} == {"req-atomic"}


async def test_an_empty_part_rejects_a_multipart_atomic_upload(rig: IngestRig, owner: str, sample_01: bytes) -> None:
    client = await rig.make()
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(sample_01), filename="a.dcm", content_type="application/dicom")
    form.add_field("file", io.BytesIO(b""), filename="empty.dcm", content_type="application/dicom")
    response = await client.post(ATOMIC, data=form, headers=uploader(owner))
    assert response.status == 422
    assert [(f["name"], f["reason"]) for f in (await response.json())["files"]] == [
        ("a.dcm", NOT_TAKEN_REASON),
        ("empty.dcm", "empty part (0 bytes): it holds no file"),
    ]
    assert await left_by(rig, owner) == NOTHING


async def test_results_service_down_is_a_503_with_nothing_registered(rig: IngestRig, owner: str) -> None:
    good = list(iter_instances(SAMPLE_01, 2))
    client = await rig.make(results_url="http://127.0.0.1:9", results_timeout=2)
    response = await client.post(ATOMIC, data=io.BytesIO(make_zip(good)), headers={**ZIP, **uploader(owner)})
    assert response.status == 503
    problem = await response.json()
    assert problem["files"] == [] and "results_service" in problem["detail"]
    assert await left_by(rig, owner) == NOTHING


async def test_a_bad_or_unknown_query_is_a_422_before_the_body_is_read(rig: IngestRig, owner: str) -> None:
    client = await rig.make()
    for query in ("?atomic=maybe", "?atomc=true", "?atomic=true&atomic=false"):
        response = await client.post(
            f"/upload{query}", data=b"\0" * 10, headers={"Content-Type": "application/dicom", **uploader(owner)}
        )
        assert response.status == 422, query
    assert await left_by(rig, owner) == NOTHING


async def test_an_atomic_zip_streamed_through_the_gateway_is_taken_whole(rig: IngestRig, aiohttp_client: Any) -> None:
    gateway = await gateway_with_user(rig, aiohttp_client)
    good = list(iter_instances(SAMPLE_01, 2))
    response = await gateway.post(
        "/api/uploads?atomic=true", data=chunked(make_zip(good)), headers={**gateway.headers, **ZIP}
    )
    assert response.status == 202, await response.text()
    assert [f["status"] for f in (await response.json())["files"]] == ["accepted", "accepted"]
    assert len(await rig.drain(rig.names.jobs)) == 2


async def test_the_atomic_registration_of_another_owners_upload_registers_nothing(rig: IngestRig, owner: str) -> None:
    upload_id = uuid.uuid4().hex
    other = f"other-{uuid.uuid4().hex[:8]}"
    first = await rig.results.post(
        "/internal/registrations", json={"items": [{"upload_id": upload_id, "registration": accepted(other)}]}
    )
    assert first.status == 200
    files = [accepted(owner, 0), accepted(owner, 1)]
    response = await rig.results.post("/internal/registrations/atomic", json={"upload_id": upload_id, "files": files})
    assert response.status == 409 and response.content_type == PROBLEM_CONTENT_TYPE
    assert await rig.rows("SELECT id FROM instances WHERE owner = $1", owner) == []
    assert len(await rig.rows("SELECT id FROM upload_files WHERE upload_id = $1", upload_id)) == 1
    assert await rig.rows("SELECT id FROM audit_events WHERE resource_id = $1 AND outcome = 'denied'", upload_id) == []


async def test_a_body_cut_off_by_the_limit_leaves_no_staged_file(
    rig: IngestRig, owner: str, sample_01: bytes, sample_02: bytes
) -> None:
    """The first file is staged when the second goes over UPLOAD_MAX_BYTES: a 413 that lists no file, tmp/ empty."""
    client = await rig.make(upload_max_bytes=len(sample_02) + len(sample_01) // 2)
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
            + content
            + b"\r\n"
            for name, content in (("a.dcm", sample_02), ("b.dcm", sample_01))
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", **uploader(owner)}
    response = await client.post(ATOMIC, data=chunked(body), headers=headers)
    assert response.status == 413
    assert (await response.json())["files"] == []
    assert await left_by(rig, owner) == NOTHING
    assert blob_files(rig.blob_dir) == []


async def test_an_unconfirmed_job_after_the_commit_is_a_503_and_the_reconciler_owns_the_instance(
    rig: IngestRig, owner: str
) -> None:
    good = list(iter_instances(SAMPLE_01, 2))
    client = await rig.make()
    await rig.channel.exchange_delete(rig.names.exchange)  # the broker now refuses every job
    response = await client.post(ATOMIC, data=io.BytesIO(make_zip(good)), headers={**ZIP, **uploader(owner)})
    assert response.status == 503
    problem = await response.json()
    assert "RabbitMQ did not confirm the job" in problem["detail"]
    assert [f["status"] for f in problem["files"]] == ["accepted", "accepted"]
    rows = await rig.rows("SELECT status FROM instances WHERE owner = $1", owner)
    assert [row["status"] for row in rows] == ["received", "received"]


async def test_a_registration_body_over_a_mib_is_one_call_and_one_transaction(rig: IngestRig, owner: str) -> None:
    """The all-or-nothing registration body is over a MiB here (names of 1024 four-byte characters): sent streamed,
    answered whole. The rows are deleted afterwards: the run's other tests list every instance as admins."""
    client = await rig.make()
    registrar = client.server.app[registrar_key]
    registrations = [FileRegistration.model_validate(accepted(owner, n, name="\U0001f9e0" * 1024)) for n in range(300)]
    assert sum(len(r.model_dump_json().encode()) for r in registrations) > LARGE_BODY_BYTES
    upload_id = uuid.uuid4().hex
    try:
        answers = await registrar.register_all(upload_id, registrations, Caller(user_id=owner))
        assert [answer.status for answer in answers] == ["accepted"] * 300
        [count] = await rig.rows("SELECT count(*) AS n FROM upload_files WHERE upload_id = $1", upload_id)
        assert count["n"] == 300
    finally:
        for table in ("upload_files", "instances", "uploads"):
            column = "id" if table == "uploads" else "upload_id"
            await rig.rows(f"DELETE FROM {table} WHERE {column} = $1", upload_id)
