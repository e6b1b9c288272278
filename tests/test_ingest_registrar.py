"""ingest batches its registrations: files of concurrent uploads that arrive while a call is out leave together."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.ingest_fakes import IngestRig, rig_fixture  # noqa: F401  (fixture, used by name)

UPLOADS = 12


def distinct_copies(source: Path, count: int) -> list[bytes]:
    """`count` copies of a sample with new SOP Instance UIDs (different bytes, so no duplicates)."""
    ds = dcmread(source)
    copies = []
    for _ in range(count):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        copies.append(buffer.getvalue())
    return copies


async def test_concurrent_uploads_are_registered_in_fewer_calls_than_files(rig: IngestRig, samples_dir: Path) -> None:
    rig.fake.batch_delay = 0.3  # a slow results_service: files pile up while the first calls are out
    client = await rig.make()
    files = distinct_copies(samples_dir / "sample-01-dicom.dcm", UPLOADS)

    async def upload(data: bytes, user: str) -> dict[str, object]:
        headers = {"Content-Type": "application/dicom", "X-Authenticated-User": user}
        response = await client.post("/upload", data=io.BytesIO(data), headers=headers)
        assert response.status == 202, await response.text()
        body: dict[str, object] = await response.json()
        return body

    bodies = await asyncio.gather(*(upload(data, f"user-{i % 3}") for i, data in enumerate(files)))
    statuses = [file["status"] for body in bodies for file in body["files"]]  # type: ignore[attr-defined]
    assert statuses == ["accepted"] * UPLOADS
    assert sum(rig.fake.batch_sizes) == UPLOADS == len(rig.fake.registrations)
    assert len(rig.fake.batch_sizes) < UPLOADS and max(rig.fake.batch_sizes) > 1
    owners = {registration.owner for _, registration in rig.fake.registrations}
    assert owners == {"user-0", "user-1", "user-2"}


async def test_a_failed_batch_call_fails_every_upload_in_it_with_a_503(rig: IngestRig, samples_dir: Path) -> None:
    rig.fake.fail_at_index = 0
    client = await rig.make()
    [data] = distinct_copies(samples_dir / "sample-01-dicom.dcm", 1)
    response = await client.post(
        "/upload", data=io.BytesIO(data), headers={"Content-Type": "application/dicom", "X-Authenticated-User": "u"}
    )
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert "retry" in (await response.json())["detail"]
