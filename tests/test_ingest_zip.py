"""Zip uploads: entries streamed out one at a time, limits, no zip-slip, bad entries reported not crashed on
(ingest in front of the real results_service: the rows are checked in PostgreSQL)."""

from __future__ import annotations

import io
import zipfile

import pytest

from common.messaging.messages import ProcessJob
from samples.make_instances import SAMPLE_01, iter_instances
from tests.ingest_rig import IngestRig, blob_files, rig_fixture, uploader  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import channel_fixture, owner_fixture, results_settings_fixture  # noqa: F401

ZIP = {"Content-Type": "application/zip"}


def as_zip(owner: str) -> dict[str, str]:
    return {**ZIP, **uploader(owner)}


def make_zip(entries: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in entries:
            if name.endswith("/"):
                zf.mkdir(name.rstrip("/"))
            else:
                zf.writestr(name, data)
    return buffer.getvalue()


async def test_zip_entries_are_taken_in_order_and_bad_ones_reported(rig: IngestRig, owner: str) -> None:
    good = list(iter_instances(SAMPLE_01, 3))
    archive = make_zip(
        [
            ("study/", b""),
            ("study/" + good[0][0], good[0][1]),
            ("../../etc/evil.dcm", good[1][1]),
            ("/abs/path.dcm", good[1][1]),
            ("DICOMDIR", b"\0" * 128 + b"DICM"),
            ("readme.txt", b"see the images\n"),
            ("bomb.dcm", b"\0" * (8 * 1024 * 1024)),
            ("study/" + good[2][0], good[2][1]),
        ]
    )
    client = await rig.make()
    response = await client.post("/upload", data=io.BytesIO(archive), headers=as_zip(owner))
    assert response.status == 202
    body = await response.json()
    files = body["files"]
    assert [(f["name"], f["status"]) for f in files] == [
        ("study/" + good[0][0], "accepted"),
        ("../../etc/evil.dcm", "rejected"),
        ("/abs/path.dcm", "rejected"),
        ("DICOMDIR", "rejected"),
        ("readme.txt", "rejected"),
        ("bomb.dcm", "rejected"),
        ("study/" + good[2][0], "accepted"),
    ]
    reasons = [f["reason"] for f in files]
    unsafe = "unsafe path in zip entry (absolute, or with '..'); entries must be relative names"
    assert reasons[1] == reasons[2] == unsafe
    assert reasons[3].startswith("DICOMDIR is a media index")
    assert reasons[4] == "not a DICOM file: no DICM marker at byte 128"
    assert reasons[5].startswith("zip entry expands ") and reasons[5].endswith("over the limit of 100:1 (zip bomb?)")
    rows = await rig.files_of(body["upload_id"])
    assert [(row["index"], row["status"], row["reason"]) for row in rows] == [
        (n, f["status"], f["reason"]) for n, f in enumerate(files)
    ]
    assert len(blob_files(rig.blob_dir)) == 2  # only the two accepted instances were kept
    assert list((rig.blob_dir / "tmp").iterdir()) == []  # the staged archive is gone
    jobs = [ProcessJob.model_validate_json(m.body) for m in await rig.drain(rig.names.jobs)]
    assert len(jobs) == 2


async def test_zip_of_100_generated_instances(rig: IngestRig, owner: str) -> None:
    archive = make_zip(list(iter_instances(SAMPLE_01, 100)), compression=zipfile.ZIP_STORED)
    client = await rig.make()
    response = await client.post("/upload", data=io.BytesIO(archive), headers=as_zip(owner))
    assert response.status == 202
    files = (await response.json())["files"]
    assert [f["status"] for f in files] == ["accepted"] * 100
    assert len({f["instance_id"] for f in files}) == 100
    rows = await rig.rows("SELECT id FROM instances WHERE owner = $1", owner)
    assert {row["id"] for row in rows} == {f["instance_id"] for f in files}
    assert len(await rig.drain(rig.names.jobs)) == 100


async def test_corrupt_entry_is_rejected_alone(rig: IngestRig, owner: str) -> None:
    [(name, data)] = list(iter_instances(SAMPLE_01, 1))
    archive = bytearray(make_zip([("broken.dcm", data), (name, data)], compression=zipfile.ZIP_STORED))
    archive[30 + len("broken.dcm") + 1000] ^= 0xFF  # flip a byte inside the first entry's data: CRC mismatch
    client = await rig.make()
    response = await client.post("/upload", data=io.BytesIO(bytes(archive)), headers=as_zip(owner))
    assert response.status == 202
    files = (await response.json())["files"]
    assert [(f["name"], f["status"]) for f in files] == [("broken.dcm", "rejected"), (name, "accepted")]
    assert files[0]["reason"].startswith("corrupt zip entry: Bad CRC-32")


@pytest.mark.parametrize(
    ("settings", "detail"),
    [
        ({"zip_max_entries": 2}, "The zip archive has 3 entries; the limit is 2."),
        ({"zip_max_total_bytes": 10}, "The zip archive's entries total 12 bytes uncompressed; the limit is 10."),
    ],
)
async def test_archive_over_its_limits_is_refused_whole(
    rig: IngestRig, owner: str, settings: dict, detail: str
) -> None:
    client = await rig.make(**settings)
    archive = make_zip([("a", b"1234"), ("b", b"1234"), ("c", b"1234")])
    response = await client.post("/upload", data=io.BytesIO(archive), headers=as_zip(owner))
    assert response.status == 413
    problem = await response.json()
    assert problem["detail"] == detail
    assert await rig.files_of(problem["upload_id"]) == []


async def test_archive_without_files_is_refused(rig: IngestRig, owner: str) -> None:
    client = await rig.make()
    response = await client.post("/upload", data=io.BytesIO(make_zip([("empty/", b"")])), headers=as_zip(owner))
    assert response.status == 400
    assert (await response.json())["detail"] == "The zip archive holds no files."
