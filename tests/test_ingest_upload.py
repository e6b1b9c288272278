"""POST /upload on the ingest app, in front of the real results_service on this run's database, with the
real RabbitMQ and blob store: what each body leaves in PostgreSQL, on the queues and on disk."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.messaging.broker import broker_key
from common.messaging.messages import ProcessJob
from tests.ingest_rig import IngestRig, blob_files, rig_fixture, uploader  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    accepted,
    channel_fixture,
    owner_fixture,
    results_settings_fixture,
)
from tests.registration_helpers import register_one

DICOM = {"Content-Type": "application/dicom"}


def as_dicom(owner: str, **headers: str) -> dict[str, str]:
    return {**DICOM, **uploader(owner), **headers}


async def test_single_dicom_file_is_stored_registered_and_queued(rig: IngestRig, owner: str, sample_01: bytes) -> None:
    client = await rig.make()
    headers = as_dicom(owner, **{"Content-Disposition": 'attachment; filename="mr.dcm"', "X-Request-ID": "req-77"})
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=headers)
    assert response.status == 202, await response.text()
    body = await response.json()
    sha256 = hashlib.sha256(sample_01).hexdigest()
    [instance] = await rig.rows("SELECT * FROM instances WHERE owner = $1", owner)
    assert body["files"] == [
        {"name": "mr.dcm", "sha256": sha256, "status": "accepted", "instance_id": instance["id"], "reason": None}
    ]
    assert (instance["upload_id"], instance["sha256"], instance["size"], instance["modality"]) == (
        body["upload_id"],
        sha256,
        len(sample_01),
        "MR",
    )
    [file] = await rig.files_of(body["upload_id"])
    assert (file["index"], file["name"], file["status"], file["instance_id"]) == (
        0,
        "mr.dcm",
        "accepted",
        instance["id"],
    )
    [blob] = blob_files(rig.blob_dir)
    assert blob.name == sha256 and await rig.read_blob(sha256) == sample_01
    assert sample_01[132:1000] not in blob.read_bytes()  # encrypted at rest
    [job_message] = await rig.drain(rig.names.jobs)
    job = ProcessJob.model_validate_json(job_message.body)
    assert (job.instance_id, job.upload_id, job.owner, job.sha256, job.size) == (
        instance["id"],
        body["upload_id"],
        owner,
        sha256,
        len(sample_01),
    )
    assert job_message.headers["x-correlation-id"] == "req-77"
    assert job_message.message_id == job.message_id == f"{instance['id']}.job.1"
    # The same confirmed publish put results_service's copy beside the job, which makes the instance `queued`.
    await rig.wait_status(instance["id"], "queued")
    assert await rig.drain(rig.names.jobs_large) == []


async def test_multipart_form_data_takes_each_file_and_rejects_the_bad_one(
    rig: IngestRig, owner: str, sample_01: bytes, sample_02: bytes
) -> None:
    client = await rig.make()
    form = aiohttp.FormData()
    form.add_field("comment", "two studies")
    form.add_field("file", io.BytesIO(sample_01), filename="a.dcm", content_type="application/dicom")
    form.add_field("file", io.BytesIO(b"PatientID,Age\n1,2\n"), filename="notes.csv", content_type="text/csv")
    form.add_field("file", io.BytesIO(sample_02), filename="b.dcm", content_type="application/dicom")
    response = await client.post("/upload", data=form, headers=uploader(owner))
    assert response.status == 202
    body = await response.json()
    assert [(f["name"], f["status"], f["reason"]) for f in body["files"]] == [
        ("a.dcm", "accepted", None),
        ("notes.csv", "rejected", "not a DICOM file: no DICM marker at byte 128"),
        ("b.dcm", "accepted", None),
    ]
    files = await rig.files_of(body["upload_id"])
    assert [(f["index"], f["name"], f["status"]) for f in files] == [
        (0, "a.dcm", "accepted"),
        (1, "notes.csv", "rejected"),
        (2, "b.dcm", "accepted"),
    ]
    assert files[1]["sha256"] == hashlib.sha256(b"PatientID,Age\n1,2\n").hexdigest()
    assert files[1]["reason"] == "not a DICOM file: no DICM marker at byte 128"
    jobs = [ProcessJob.model_validate_json(m.body) for m in await rig.drain(rig.names.jobs)]
    assert sorted(j.sha256 for j in jobs) == sorted(f["sha256"] for f in body["files"] if f["status"] == "accepted")


async def test_multipart_related_dicom_parts(rig: IngestRig, owner: str, sample_01: bytes) -> None:
    client = await rig.make()
    writer = aiohttp.MultipartWriter("related")
    writer.append(io.BytesIO(sample_01), {"Content-Type": "application/dicom", "Content-Location": "one.dcm"})
    writer.append(b"{}", {"Content-Type": "application/json"})
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={writer.boundary}',
        **uploader(owner),
    }
    response = await client.post("/upload", data=writer, headers=headers)
    assert response.status == 202
    body = await response.json()
    assert [(f["name"], f["status"], f["reason"]) for f in body["files"]] == [
        ("one.dcm", "accepted", None),
        ("part-1", "rejected", "part of type 'application/json' is not application/dicom"),
    ]
    assert [f["status"] for f in await rig.files_of(body["upload_id"])] == ["accepted", "rejected"]
    assert len(await rig.drain(rig.names.jobs)) == 1


async def test_multipart_related_without_dicom_type_is_refused(rig: IngestRig, sample_01: bytes) -> None:
    client = await rig.make()
    writer = aiohttp.MultipartWriter("related")
    writer.append(io.BytesIO(sample_01), {"Content-Type": "application/dicom"})
    response = await client.post("/upload", data=writer)
    assert response.status == 415
    assert response.content_type == PROBLEM_CONTENT_TYPE


async def test_same_bytes_twice_are_a_duplicate_without_a_second_job(
    rig: IngestRig, owner: str, sample_01: bytes
) -> None:
    client = await rig.make()
    first = await (await client.post("/upload", data=io.BytesIO(sample_01), headers=as_dicom(owner))).json()
    second = await client.post("/upload", data=io.BytesIO(sample_01), headers=as_dicom(owner))
    assert second.status == 202
    body = await second.json()
    [dup] = body["files"]
    assert (dup["status"], dup["instance_id"]) == ("duplicate", first["files"][0]["instance_id"])
    [file] = await rig.files_of(body["upload_id"])
    assert (file["status"], file["instance_id"]) == ("duplicate", dup["instance_id"])
    assert len(await rig.rows("SELECT 1 FROM instances WHERE owner = $1", owner)) == 1
    assert len(await rig.drain(rig.names.jobs)) == 1


async def test_a_duplicate_whose_instance_is_still_received_gets_no_job_from_ingest(
    rig: IngestRig, owner: str, sample_01: bytes
) -> None:
    """Whether the first job ever reached the broker is not ingest's to know: the reconciler republishes it."""
    sha256 = hashlib.sha256(sample_01).hexdigest()
    first = await register_one(rig.results, uuid.uuid4().hex, {**accepted(owner), "sha256": sha256})
    response = await (await rig.make()).post("/upload", data=io.BytesIO(sample_01), headers=as_dicom(owner))
    assert response.status == 202
    [dup] = (await response.json())["files"]
    assert (dup["status"], dup["instance_id"]) == ("duplicate", first["registered"]["instance_id"])
    assert await rig.drain(rig.names.jobs) == []


async def test_large_file_goes_to_the_large_queue(rig: IngestRig, owner: str, sample_01: bytes) -> None:
    client = await rig.make(large_job_bytes=1000)
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=as_dicom(owner))
    assert response.status == 202
    [job] = await rig.drain(rig.names.jobs_large)
    assert await rig.drain(rig.names.jobs) == []
    # results_service's copy comes whatever the size
    await rig.wait_status(ProcessJob.model_validate_json(job.body).instance_id, "queued")


async def _chunked(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    ("headers", "data", "status", "detail"),
    [
        ({"Content-Type": "application/dicom"}, b"", 400, "The body is empty."),
        ({"Content-Type": "text/plain"}, b"hello", 415, "not 'text/plain'"),
        ({}, b"hello", 415, "not 'application/octet-stream'"),
        ({"Content-Type": "application/zip"}, b"not a zip at all", 400, "not a readable zip archive"),
        ({"Content-Type": "multipart/form-data; boundary=xyz"}, b"--xyz\r\nbroken", 400, "malformed"),
    ],
    ids=["empty", "text", "no-type", "bad-zip", "bad-multipart"],
)
async def test_bodies_that_are_refused_whole(rig: IngestRig, owner: str, headers, data, status, detail) -> None:
    client = await rig.make()
    response = await client.post("/upload", data=data, headers={**headers, **uploader(owner)})
    assert response.status == status
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert detail in (await response.json())["detail"]


async def test_empty_chunked_body_is_refused(rig: IngestRig, owner: str) -> None:
    client = await rig.make()
    response = await client.post("/upload", data=_chunked(b""), headers=as_dicom(owner))
    assert response.status == 400
    assert "empty" in (await response.json())["detail"]


async def test_body_over_the_limit_is_refused_up_front_and_while_streaming(
    rig: IngestRig, owner: str, sample_01: bytes
) -> None:
    client = await rig.make(upload_max_bytes=100_000)
    declared = await client.post("/upload", data=io.BytesIO(sample_01), headers=as_dicom(owner))
    assert declared.status == 413
    assert (await declared.json())["detail"] == f"The upload is {len(sample_01)} bytes; the limit is 100000."
    streamed = await client.post("/upload", data=_chunked(sample_01), headers=as_dicom(owner))
    assert streamed.status == 413
    assert (await streamed.json())["detail"] == "The upload exceeds the limit of 100000 bytes."
    assert blob_files(rig.blob_dir) == []
    assert list((rig.blob_dir / "tmp").iterdir()) == []
    assert await rig.rows("SELECT 1 FROM uploads WHERE owner = $1", owner) == []


async def test_results_service_stopping_mid_upload_is_a_503_naming_the_files_taken(
    rig: IngestRig, owner: str, sample_01: bytes, sample_02: bytes
) -> None:
    """results_service stops once the first file is registered and its job published: the second cannot be."""
    client = await rig.make()
    boundary = uuid.uuid4().hex

    def part(name: str, content: bytes) -> bytes:
        head = f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        return head.encode() + b"Content-Type: application/dicom\r\n\r\n" + content + f"\r\n--{boundary}".encode()

    jobs = []

    async def body() -> AsyncIterator[bytes]:
        yield f"--{boundary}\r\n".encode() + part("a.dcm", sample_01) + b"\r\n"  # a's end is seen: it is taken
        jobs.extend(await rig.take(rig.names.jobs, 1))  # published once a's registration was answered
        await rig.results.server.close()
        yield part("b.dcm", sample_02) + b"--\r\n"

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", **uploader(owner)}
    response = await client.post("/upload", data=body(), headers=headers)
    assert response.status == 503
    problem = await response.json()
    assert "results_service is unreachable" in problem["detail"]
    assert [(f["name"], f["status"]) for f in problem["files"]] == [("a.dcm", "accepted")]
    assert [ProcessJob.model_validate_json(m.body).sha256 for m in jobs] == [hashlib.sha256(sample_01).hexdigest()]
    assert [(f["index"], f["status"]) for f in await rig.files_of(problem["upload_id"])] == [(0, "accepted")]


async def test_unreachable_results_service_is_503(
    rig: IngestRig, owner: str, sample_01: bytes, unused_tcp_port: int
) -> None:
    client = await rig.make(results_url=f"http://127.0.0.1:{unused_tcp_port}")
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=as_dicom(owner))
    assert response.status == 503
    assert "results_service is unreachable" in (await response.json())["detail"]
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "results_ready" in json.loads(await ready.text())["checks"]


async def test_unconfirmed_job_is_503_and_the_file_not_accepted(rig: IngestRig, owner: str, sample_01: bytes) -> None:
    """The registration is durable, the job is not: the instance stays `received`, for the reconciler."""
    client = await rig.make()
    await rig.channel.exchange_delete(rig.names.exchange)  # the broker now refuses the job
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=as_dicom(owner))
    assert response.status == 503
    problem = await response.json()
    assert "RabbitMQ did not confirm the job" in problem["detail"]
    assert problem["files"] == []
    rows = await rig.rows("SELECT status FROM instances WHERE owner = $1", owner)
    assert [row["status"] for row in rows] == ["received"]


async def test_ready_when_broker_and_results_answer(rig: IngestRig) -> None:
    client = await rig.make()
    response = await client.get("/readyz")
    assert response.status == 200


async def test_a_closed_broker_channel_is_503_not_500(rig: IngestRig, owner: str, sample_01: bytes) -> None:
    client = await rig.make()
    await client.app[broker_key].channel.close()  # as during a broker restart, before the robust channel returns
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=as_dicom(owner))
    assert response.status == 503
    problem = await response.json()
    assert "RabbitMQ did not confirm the job" in problem["detail"]
    assert problem["files"] == []
