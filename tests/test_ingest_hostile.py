"""Hostile upload bodies on the ingest app (in front of the real results_service on this run's database, the
real RabbitMQ and blob store): each is a 4xx problem+json or one file's rejection, never a 5xx, a hang or
half-written rows, and no answer names a path of ours."""

from __future__ import annotations

import gzip
import hashlib
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydicom.data import get_testdata_file
from structlog.testing import capture_logs

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.messaging.messages import ProcessJob
from tests.ingest_rig import IngestRig, blob_files, rig_fixture, uploader  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    eventually,
    owner_fixture,
    results_settings_fixture,
)

BAD_VR = Path(str(get_testdata_file("badVR.dcm")))  # pydicom's own test file: NumberOfFrames is '1A'

# Warnings aiohttp's multipart reader raises from its own code, which production only prints: it calls its
# deprecated `StreamReader.unread_data` when a read runs past a part's end, and it parses each form part's
# Content-Disposition (for `_charset_`) and warns when it is malformed. Ingest reads the file name with its own
# parser; these tests check what production answers, so these warnings stay warnings here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unread_data\\(\\) is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::aiohttp.multipart.BadContentDispositionHeader"),
    pytest.mark.filterwarnings("ignore::aiohttp.multipart.BadContentDispositionParam"),
]


def form_part(boundary: str, filename: bytes | None, content: bytes) -> bytes:
    """One raw `multipart/form-data` part (bytes, so that a name can hold anything a client may send)."""
    disposition = b'Content-Disposition: form-data; name="file"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return b"--" + boundary.encode() + b"\r\n" + disposition + b"\r\n\r\n" + content + b"\r\n"


def form_body(boundary: str, parts: list[tuple[bytes | None, bytes]]) -> bytes:
    return b"".join(form_part(boundary, name, content) for name, content in parts) + f"--{boundary}--\r\n".encode()


def form_headers(owner: str, boundary: str) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={boundary}", **uploader(owner)}


async def problem_of(response: aiohttp.ClientResponse, status: int, rig: IngestRig) -> dict[str, Any]:
    """The problem+json answer, checked for its status and for naming no path of ours."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert str(rig.blob_dir) not in text and "/tmp" not in text
    problem: dict[str, Any] = await response.json()
    return problem


async def nothing_written(rig: IngestRig, owner: str) -> None:
    """No upload, file row or instance of `owner` in PostgreSQL, no blob or staged file on disk."""
    assert await rig.rows("SELECT 1 FROM uploads WHERE owner = $1", owner) == []
    assert (
        await rig.rows("SELECT 1 FROM upload_files WHERE upload_id IN (SELECT id FROM uploads WHERE owner = $1)", owner)
        == []
    )
    assert await rig.rows("SELECT 1 FROM instances WHERE owner = $1", owner) == []
    assert blob_files(rig.blob_dir) == []
    assert not (rig.blob_dir / "tmp").exists() or list((rig.blob_dir / "tmp").iterdir()) == []


# -- one file's malformed value rejects that file, never the batch -------------------------------------------


async def test_a_file_with_a_malformed_value_is_rejected_alone_and_the_batch_answered(
    rig: IngestRig, owner: str, sample_01: bytes, sample_02: bytes
) -> None:
    client = await rig.make()
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(sample_01), filename="a.dcm", content_type="application/dicom")
    form.add_field("file", io.BytesIO(BAD_VR.read_bytes()), filename="badVR.dcm", content_type="application/dicom")
    form.add_field("file", io.BytesIO(sample_02), filename="b.dcm", content_type="application/dicom")
    response = await client.post("/upload", data=form, headers=uploader(owner))
    assert response.status == 202, await response.text()
    body = await response.json()
    assert [(f["name"], f["status"], f["reason"]) for f in body["files"]] == [
        ("a.dcm", "accepted", None),
        ("badVR.dcm", "rejected", "NumberOfFrames '1A' is not a number"),
        ("b.dcm", "accepted", None),
    ]
    rows = await rig.files_of(body["upload_id"])
    assert [(r["index"], r["status"], r["reason"]) for r in rows] == [
        (0, "accepted", None),
        (1, "rejected", "NumberOfFrames '1A' is not a number"),
        (2, "accepted", None),
    ]
    assert rows[1]["sha256"] == hashlib.sha256(BAD_VR.read_bytes()).hexdigest()
    jobs = [ProcessJob.model_validate_json(m.body) for m in await rig.drain(rig.names.jobs)]
    assert sorted(j.sha256 for j in jobs) == sorted(hashlib.sha256(d).hexdigest() for d in (sample_01, sample_02))
    assert sorted(p.name for p in blob_files(rig.blob_dir)) == sorted(j.sha256 for j in jobs)


def unknown_vr(sample: bytes) -> bytes:
    """sample-01 with Columns (0028,0011) declared as VR 'XS': pydicom reads the header, then raises
    NotImplementedError when the value is used, which no check of ours expects."""
    element = b"\x28\x00\x11\x00US"
    assert sample.count(element) == 1
    return sample.replace(element, b"\x28\x00\x11\x00XS")


@pytest.mark.parametrize("memory_file_bytes", [2 * 1024**2, 0], ids=["in-memory", "streamed"])
async def test_an_exception_while_checking_one_file_rejects_that_file_with_a_reason(
    rig: IngestRig, owner: str, sample_01: bytes, sample_02: bytes, memory_file_bytes: int
) -> None:
    client = await rig.make(ingest_memory_file_bytes=memory_file_bytes)
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(unknown_vr(sample_01)), filename="odd.dcm", content_type="application/dicom")
    form.add_field("file", io.BytesIO(sample_02), filename="b.dcm", content_type="application/dicom")
    with capture_logs() as logs:
        response = await client.post("/upload", data=form, headers=uploader(owner))
    assert response.status == 202, await response.text()
    body = await response.json()
    reason = "unreadable DICOM header: NotImplementedError: Unknown Value Representation 'XS' in tag (0028,0011)"
    assert [(f["name"], f["status"], f["reason"]) for f in body["files"]] == [
        ("odd.dcm", "rejected", reason),
        ("b.dcm", "accepted", None),
    ]
    assert [(r["status"], r["reason"]) for r in await rig.files_of(body["upload_id"])] == [
        ("rejected", reason),
        ("accepted", None),
    ]
    [logged] = [e for e in logs if e["event"] == "dicom_check_failed"]
    assert logged["error"] == "NotImplementedError" and isinstance(logged["exc_info"], NotImplementedError)
    assert [p.name for p in blob_files(rig.blob_dir)] == [hashlib.sha256(sample_02).hexdigest()]


# -- the part limit, empty parts -------------------------------------------------------------------------------


async def test_a_body_of_20000_empty_parts_is_refused_and_writes_nothing(rig: IngestRig, owner: str) -> None:
    client = await rig.make()  # the default limit: 10 000 files per upload
    boundary = uuid.uuid4().hex
    body = form_body(boundary, [(f"e{i}.dcm".encode(), b"") for i in range(20_000)])
    response = await client.post("/upload", data=io.BytesIO(body), headers=form_headers(owner, boundary))
    problem = await problem_of(response, 413, rig)
    assert problem["detail"] == "The multipart body has more than 10000 parts; an upload holds at most 10000 files."
    assert len(problem["files"]) == 10_000
    assert {(f["status"], f["reason"]) for f in problem["files"]} == {
        ("rejected", "empty part (0 bytes): it holds no file")
    }
    await nothing_written(rig, owner)


async def test_a_body_of_only_empty_parts_is_400_and_writes_nothing(rig: IngestRig, owner: str) -> None:
    client = await rig.make()
    boundary = uuid.uuid4().hex
    body = form_body(boundary, [(b"a.dcm", b""), (b"b.dcm", b"")])
    response = await client.post("/upload", data=io.BytesIO(body), headers=form_headers(owner, boundary))
    problem = await problem_of(response, 400, rig)
    assert problem["detail"] == "The body holds no files: its 2 part(s) are empty."
    await nothing_written(rig, owner)


async def test_an_empty_part_among_files_is_answered_but_never_registered(
    rig: IngestRig, owner: str, sample_01: bytes, sample_02: bytes
) -> None:
    client = await rig.make()
    boundary = uuid.uuid4().hex
    body = form_body(boundary, [(b"a.dcm", sample_01), (b"empty.dcm", b""), (b"b.dcm", sample_02)])
    response = await client.post("/upload", data=io.BytesIO(body), headers=form_headers(owner, boundary))
    assert response.status == 202, await response.text()
    receipt = await response.json()
    assert [(f["name"], f["status"], f["reason"]) for f in receipt["files"]] == [
        ("a.dcm", "accepted", None),
        ("empty.dcm", "rejected", "empty part (0 bytes): it holds no file"),
        ("b.dcm", "accepted", None),
    ]
    rows = await rig.files_of(receipt["upload_id"])
    assert [(r["index"], r["name"], r["status"]) for r in rows] == [(0, "a.dcm", "accepted"), (2, "b.dcm", "accepted")]


@pytest.mark.parametrize("setting", ["upload_max_files", "zip_max_entries"])
async def test_a_multipart_body_past_the_files_limit_is_413_naming_it(
    rig: IngestRig, owner: str, sample_01: bytes, sample_02: bytes, setting: str
) -> None:
    """The same limit as a zip archive's entries (`zip_max_entries`, the setting's former name, still works)."""
    client = await rig.make(**{setting: 2})
    boundary = uuid.uuid4().hex
    body = form_body(boundary, [(b"a.dcm", sample_01), (b"b.dcm", sample_02), (b"c.dcm", b"never read")])
    response = await client.post("/upload", data=io.BytesIO(body), headers=form_headers(owner, boundary))
    problem = await problem_of(response, 413, rig)
    assert problem["detail"] == "The multipart body has more than 2 parts; an upload holds at most 2 files."
    assert [(f["name"], f["status"]) for f in problem["files"]] == [("a.dcm", "accepted"), ("b.dcm", "accepted")]
    assert [r["name"] for r in await rig.files_of(problem["upload_id"])] == ["a.dcm", "b.dcm"]
    assert len(blob_files(rig.blob_dir)) == 2


# -- encodings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "x-unknown", "identity, gzip"])
async def test_a_compressed_body_is_refused_with_415_naming_the_accepted_encoding(
    rig: IngestRig, owner: str, sample_01: bytes, encoding: str
) -> None:
    client = await rig.make()
    headers = {"Content-Type": "application/dicom", "Content-Encoding": encoding, **uploader(owner)}
    data = gzip.compress(sample_01) if encoding == "gzip" else sample_01
    response = await client.post("/upload", data=data, headers=headers)
    problem = await problem_of(response, 415, rig)
    assert problem["detail"].startswith(f"Content-Encoding {encoding!r} is not accepted; send the body unencoded")
    assert "identity" in problem["detail"]
    await nothing_written(rig, owner)


async def test_an_identity_encoded_body_is_taken(rig: IngestRig, owner: str, sample_01: bytes) -> None:
    client = await rig.make()
    headers = {"Content-Type": "application/dicom", "Content-Encoding": "identity", **uploader(owner)}
    response = await client.post("/upload", data=sample_01, headers=headers)
    assert response.status == 202, await response.text()
    assert [f["status"] for f in (await response.json())["files"]] == ["accepted"]


# -- what a fuzzer sends -----------------------------------------------------------------------------------------


async def test_file_names_with_nul_bytes_control_characters_or_thousands_of_characters_are_cleaned_for_display(
    rig: IngestRig, owner: str, sample_01: bytes
) -> None:
    client = await rig.make()
    boundary = uuid.uuid4().hex

    def named(name: bytes, content: bytes) -> bytes:  # RFC 2231 `filename*`: any byte, percent-encoded
        return (
            f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename*=UTF-8''".encode()
            + name
            + b"\r\n\r\n"
            + content
            + b"\r\n"
        )

    body = b"".join(
        [
            named(b"scan%00.dcm", sample_01),
            named(b"%E2%80%AEgnp.dcm", b"text"),  # a right-to-left override
            named(b"%ED%A0%80.dcm", b"text"),  # a lone surrogate, not UTF-8
            named(b"x" * 5_000, b"more text"),
            f"--{boundary}--\r\n".encode(),
        ]
    )
    response = await client.post("/upload", data=io.BytesIO(body), headers=form_headers(owner, boundary))
    assert response.status == 202, await response.text()
    receipt = await response.json()
    names = ["scan?.dcm", "?gnp.dcm", "\ufffd\ufffd\ufffd.dcm", "x" * 1024]
    assert [f["name"] for f in receipt["files"]] == names
    assert [r["name"] for r in await rig.files_of(receipt["upload_id"])] == names


@pytest.mark.parametrize("name", [b"scan\x00.dcm", b"x" * 10_000], ids=["raw-nul", "10000-characters"])
async def test_a_part_header_with_a_raw_nul_byte_or_over_8_kib_is_a_malformed_body(
    rig: IngestRig, owner: str, name: bytes
) -> None:
    """aiohttp refuses both while reading the part's headers (its header line limit is 8190 bytes)."""
    client = await rig.make()
    boundary = uuid.uuid4().hex
    body = form_body(boundary, [(name, b"text")])
    response = await client.post("/upload", data=io.BytesIO(body), headers=form_headers(owner, boundary))
    problem = await problem_of(response, 400, rig)
    assert problem["detail"].startswith("The multipart body is malformed")
    await nothing_written(rig, owner)


async def test_a_form_part_without_a_filename_is_a_field_and_a_related_part_gets_a_name(
    rig: IngestRig, owner: str, sample_01: bytes
) -> None:
    client = await rig.make()
    boundary = uuid.uuid4().hex
    only_fields = form_body(boundary, [(None, sample_01)])
    response = await client.post("/upload", data=io.BytesIO(only_fields), headers=form_headers(owner, boundary))
    assert (await problem_of(response, 400, rig))["detail"] == "The body holds no files."
    writer = aiohttp.MultipartWriter("related")
    writer.append(io.BytesIO(sample_01), {"Content-Type": "application/dicom"})
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={writer.boundary}'}
    response = await client.post("/upload", data=writer, headers={**headers, **uploader(owner)})
    assert response.status == 202, await response.text()
    assert [(f["name"], f["status"]) for f in (await response.json())["files"]] == [("part-0", "accepted")]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\nhello\r\n--x--\r\n"),
        ("multipart/form-data; boundary=", b"--\r\n\r\nhello\r\n----\r\n"),
        ("multipart/form-data; boundary=abc", b"--other\r\nContent-Disposition: form-data\r\n\r\nhi\r\n--other--\r\n"),
        ("multipart/form-data; boundary=" + "b" * 300, b"--" + b"b" * 300 + b"\r\n\r\nhi\r\n"),
        ("multipart/form-data; boundary=abc", b'--abc\r\nContent-Disposition: form-data; name="file"; filename='),
        (
            "multipart/form-data; boundary=abc",
            b"--abc\r\n" + b"X-Long: " + b"h" * 100_000 + b"\r\n\r\nhi\r\n--abc--\r\n",
        ),
        (
            "multipart/form-data; boundary=abc",
            b'--abc\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\n' + b"u" * 40 + b"\r\n--abc--\r\n",
        ),
    ],
    ids=[
        "no-boundary",
        "empty-boundary",
        "other-boundary",
        "long-boundary",
        "cut-in-headers",
        "huge-header",
        "charset",
    ],
)
async def test_a_malformed_multipart_body_is_400(rig: IngestRig, owner: str, content_type: str, body: bytes) -> None:
    client = await rig.make()
    response = await client.post("/upload", data=body, headers={"Content-Type": content_type, **uploader(owner)})
    problem = await problem_of(response, 400, rig)
    assert problem["detail"].startswith(("The multipart body is malformed", "The body holds no files"))
    await nothing_written(rig, owner)


async def test_a_declared_length_over_the_limit_is_413_before_anything_is_read(
    rig: IngestRig, owner: str, sample_01: bytes
) -> None:
    client = await rig.make(upload_max_bytes=1000)
    boundary = uuid.uuid4().hex
    body = form_body(boundary, [(b"a.dcm", sample_01)])
    response = await client.post("/upload", data=io.BytesIO(body), headers=form_headers(owner, boundary))
    problem = await problem_of(response, 413, rig)
    assert problem["detail"] == f"The upload is {len(body)} bytes; the limit is 1000."
    await nothing_written(rig, owner)


@pytest.mark.parametrize("memory_file_bytes", [2 * 1024**2, 0], ids=["in-memory", "streamed"])
async def test_a_client_that_disconnects_mid_part_leaves_rows_only_for_the_files_it_finished(
    rig: IngestRig, owner: str, sample_01: bytes, sample_02: bytes, memory_file_bytes: int
) -> None:
    client = await rig.make(ingest_memory_file_bytes=memory_file_bytes)
    boundary = uuid.uuid4().hex
    whole = form_part(boundary, b"a.dcm", sample_01)
    cut = form_part(boundary, b"b.dcm", sample_02)[: len(sample_02) // 2]

    class ClientWentAway(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        yield whole + b"--" + boundary.encode()  # a's end is seen: it is taken
        await rig.take(rig.names.jobs, 1)  # a is stored, registered and queued
        yield b"\r\n" + cut[len(b"--" + boundary.encode()) + 2 :]
        raise ClientWentAway

    with capture_logs() as logs:
        with pytest.raises(aiohttp.ClientError):
            await client.post("/upload", data=body(), headers=form_headers(owner, boundary))

        async def answered() -> bool:
            return any(e["event"] == "upload_stopped" for e in logs)

        await eventually(answered)
    [stopped] = [e for e in logs if e["event"] == "upload_stopped"]
    assert (stopped["status"], stopped["taken"]) == (400, 1)
    rows = await rig.rows(
        "SELECT name, status FROM upload_files WHERE upload_id IN (SELECT id FROM uploads WHERE owner = $1)", owner
    )
    assert [(r["name"], r["status"]) for r in rows] == [("a.dcm", "accepted")]
    assert [p.name for p in blob_files(rig.blob_dir)] == [hashlib.sha256(sample_01).hexdigest()]
    assert list((rig.blob_dir / "tmp").iterdir()) == []
