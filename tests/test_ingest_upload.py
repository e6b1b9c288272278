"""POST /upload on the ingest app: real RabbitMQ and blob store, a stand-in registration endpoint."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.app.secret_settings import BlobKeySettings
from common.messaging.broker import broker_key
from common.messaging.messages import ProcessJob
from tests.ingest_fakes import IngestRig, blob_files, drain, rig_fixture  # noqa: F401  (fixture, used by name)

DICOM = {"Content-Type": "application/dicom"}


@pytest.fixture
def sample_01(samples_dir: Path) -> bytes:
    return (samples_dir / "sample-01-dicom.dcm").read_bytes()


@pytest.fixture
def sample_02(samples_dir: Path) -> bytes:
    return (samples_dir / "sample-02-dicom.dcm").read_bytes()


async def test_single_dicom_file_is_stored_registered_and_queued(rig: IngestRig, sample_01: bytes) -> None:
    client = await rig.make()
    response = await client.post(
        "/upload",
        data=io.BytesIO(sample_01),
        headers={
            "Content-Type": "application/dicom",
            "Content-Disposition": 'attachment; filename="mr.dcm"',
            "X-Authenticated-User": "alice",
            "X-Request-ID": "req-77",
        },
    )
    assert response.status == 202, await response.text()
    body = await response.json()
    sha256 = hashlib.sha256(sample_01).hexdigest()
    [registered] = rig.fake.registrations
    upload_id, registration = registered
    assert body["upload_id"] == upload_id
    instance_id = rig.fake.instances[("alice", sha256)]
    assert body["files"] == [
        {"name": "mr.dcm", "sha256": sha256, "status": "accepted", "instance_id": instance_id, "reason": None}
    ]
    assert registration.index == 0 and registration.owner == "alice" and registration.size == len(sample_01)
    assert registration.dicom is not None and registration.dicom.modality == "MR"
    [blob] = blob_files(rig.blob_dir)
    assert blob.name == sha256 and BlobKeySettings().keyring().decrypt_bytes(blob.read_bytes()) == sample_01
    topology = rig.names
    [job_message] = await drain(rig.channel, topology.jobs)
    job = ProcessJob.model_validate_json(job_message.body)
    assert (job.instance_id, job.upload_id, job.owner, job.sha256, job.size) == (
        instance_id,
        upload_id,
        "alice",
        sha256,
        len(sample_01),
    )
    assert job_message.headers["x-correlation-id"] == "req-77"
    assert job_message.message_id == job.message_id == f"{instance_id}.job.1"
    # The same confirmed publish put results_service's copy beside the job: the copy is what makes it `queued`.
    [copy] = await drain(rig.channel, topology.queued)
    assert ProcessJob.model_validate_json(copy.body) == job
    assert await drain(rig.channel, topology.jobs_large, settle=0.05) == []


async def test_multipart_form_data_takes_each_file_and_rejects_the_bad_one(
    rig: IngestRig, sample_01: bytes, sample_02: bytes
) -> None:
    client = await rig.make()
    form = aiohttp.FormData()
    form.add_field("comment", "two studies")
    form.add_field("file", io.BytesIO(sample_01), filename="a.dcm", content_type="application/dicom")
    form.add_field("file", io.BytesIO(b"PatientID,Age\n1,2\n"), filename="notes.csv", content_type="text/csv")
    form.add_field("file", io.BytesIO(sample_02), filename="b.dcm", content_type="application/dicom")
    response = await client.post("/upload", data=form)
    assert response.status == 202
    files = (await response.json())["files"]
    assert [(f["name"], f["status"], f["reason"]) for f in files] == [
        ("a.dcm", "accepted", None),
        ("notes.csv", "rejected", "not a DICOM file: no DICM marker at byte 128"),
        ("b.dcm", "accepted", None),
    ]
    assert [r.index for _, r in rig.fake.registrations] == [0, 1, 2]
    assert rig.fake.registrations[1][1].sha256 == hashlib.sha256(b"PatientID,Age\n1,2\n").hexdigest()
    jobs = [ProcessJob.model_validate_json(m.body) for m in await drain(rig.channel, rig.names.jobs)]
    assert sorted(j.sha256 for j in jobs) == sorted(f["sha256"] for f in files if f["status"] == "accepted")


async def test_multipart_related_dicom_parts(rig: IngestRig, sample_01: bytes) -> None:
    client = await rig.make()
    writer = aiohttp.MultipartWriter("related")
    writer.append(io.BytesIO(sample_01), {"Content-Type": "application/dicom", "Content-Location": "one.dcm"})
    writer.append(b"{}", {"Content-Type": "application/json"})
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={writer.boundary}'}
    response = await client.post("/upload", data=writer, headers=headers)
    assert response.status == 202
    files = (await response.json())["files"]
    assert [(f["name"], f["status"], f["reason"]) for f in files] == [
        ("one.dcm", "accepted", None),
        ("part-1", "rejected", "part of type 'application/json' is not application/dicom"),
    ]
    assert len(await drain(rig.channel, rig.names.jobs)) == 1


async def test_multipart_related_without_dicom_type_is_refused(rig: IngestRig, sample_01: bytes) -> None:
    client = await rig.make()
    writer = aiohttp.MultipartWriter("related")
    writer.append(io.BytesIO(sample_01), {"Content-Type": "application/dicom"})
    response = await client.post("/upload", data=writer)
    assert response.status == 415
    assert response.content_type == PROBLEM_CONTENT_TYPE


async def test_same_bytes_twice_are_a_duplicate_without_a_second_job(rig: IngestRig, sample_01: bytes) -> None:
    client = await rig.make()
    first = await (await client.post("/upload", data=io.BytesIO(sample_01), headers=DICOM)).json()
    rig.fake.duplicate_status = "received"  # results_service has not consumed the job's copy yet
    second = await client.post("/upload", data=io.BytesIO(sample_01), headers=DICOM)
    assert second.status == 202
    [dup] = (await second.json())["files"]
    assert dup["status"] == "duplicate"
    assert dup["instance_id"] == first["files"][0]["instance_id"]
    assert len(await drain(rig.channel, rig.names.jobs)) == 1


async def test_a_duplicate_whose_instance_is_still_received_gets_no_job_from_ingest(
    rig: IngestRig, sample_01: bytes
) -> None:
    """Whether the first job ever reached the broker is not ingest's to know: the reconciler republishes it."""
    client = await rig.make()
    rig.fake.duplicate_status = "received"
    rig.fake.instances[("local", hashlib.sha256(sample_01).hexdigest())] = "first-instance"
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=DICOM)
    assert response.status == 202
    [dup] = (await response.json())["files"]
    assert (dup["status"], dup["instance_id"]) == ("duplicate", "first-instance")
    assert await drain(rig.channel, rig.names.jobs, settle=0.05) == []
    assert await drain(rig.channel, rig.names.queued, settle=0.05) == []


async def test_large_file_goes_to_the_large_queue(rig: IngestRig, sample_01: bytes) -> None:
    client = await rig.make(large_job_bytes=1000)
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=DICOM)
    assert response.status == 202
    assert len(await drain(rig.channel, rig.names.jobs_large)) == 1
    assert await drain(rig.channel, rig.names.jobs, settle=0.05) == []
    assert len(await drain(rig.channel, rig.names.queued)) == 1  # results_service's copy, whatever the size


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
async def test_bodies_that_are_refused_whole(rig: IngestRig, headers, data, status, detail) -> None:
    client = await rig.make()
    response = await client.post("/upload", data=data, headers=headers)
    assert response.status == status
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert detail in (await response.json())["detail"]


async def test_empty_chunked_body_is_refused(rig: IngestRig) -> None:
    client = await rig.make()
    response = await client.post("/upload", data=_chunked(b""), headers=DICOM)
    assert response.status == 400
    assert "empty" in (await response.json())["detail"]


async def test_body_over_the_limit_is_refused_up_front_and_while_streaming(rig: IngestRig, sample_01: bytes) -> None:
    client = await rig.make(upload_max_bytes=100_000)
    declared = await client.post("/upload", data=io.BytesIO(sample_01), headers=DICOM)
    assert declared.status == 413
    assert (await declared.json())["detail"] == f"The upload is {len(sample_01)} bytes; the limit is 100000."
    streamed = await client.post("/upload", data=_chunked(sample_01), headers=DICOM)
    assert streamed.status == 413
    assert (await streamed.json())["detail"] == "The upload exceeds the limit of 100000 bytes."
    assert blob_files(rig.blob_dir) == []
    assert list((rig.blob_dir / "tmp").iterdir()) == []


async def test_results_service_failure_stops_the_upload_with_503_naming_the_files_taken(
    rig: IngestRig, sample_01: bytes, sample_02: bytes
) -> None:
    client = await rig.make()
    rig.fake.fail_at_index = 1
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(sample_01), filename="a.dcm", content_type="application/dicom")
    form.add_field("file", io.BytesIO(sample_02), filename="b.dcm", content_type="application/dicom")
    response = await client.post("/upload", data=form)
    assert response.status == 503
    problem = await response.json()
    assert "results_service answered 500" in problem["detail"]
    assert [(f["name"], f["status"]) for f in problem["files"]] == [("a.dcm", "accepted")]
    jobs = [ProcessJob.model_validate_json(m.body) for m in await drain(rig.channel, rig.names.jobs)]
    assert [j.sha256 for j in jobs] == [hashlib.sha256(sample_01).hexdigest()]


async def test_unreachable_results_service_is_503(rig: IngestRig, sample_01: bytes, unused_tcp_port: int) -> None:
    client = await rig.make(results_url=f"http://127.0.0.1:{unused_tcp_port}")
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=DICOM)
    assert response.status == 503
    assert "results_service is unreachable" in (await response.json())["detail"]
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "results_ready" in json.loads(await ready.text())["checks"]


async def test_unconfirmed_job_is_503_and_the_file_not_accepted(rig: IngestRig, sample_01: bytes) -> None:
    client = await rig.make()
    await rig.channel.exchange_delete(rig.names.exchange)  # the broker now refuses the job
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=DICOM)
    assert response.status == 503
    problem = await response.json()
    assert "RabbitMQ did not confirm the job" in problem["detail"]
    assert problem["files"] == []
    assert await drain(rig.channel, rig.names.queued, settle=0.05) == []  # never `queued` without its job


async def test_ready_when_broker_and_results_answer(rig: IngestRig) -> None:
    client = await rig.make()
    response = await client.get("/readyz")
    assert response.status == 200


async def test_a_closed_broker_channel_is_503_not_500(rig: IngestRig, sample_01: bytes) -> None:
    client = await rig.make()
    await client.app[broker_key].channel.close()  # as during a broker restart, before the robust channel returns
    response = await client.post("/upload", data=io.BytesIO(sample_01), headers=DICOM)
    assert response.status == 503
    problem = await response.json()
    assert "RabbitMQ did not confirm the job" in problem["detail"]
    assert problem["files"] == []
