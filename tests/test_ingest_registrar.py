"""ingest batches its registrations: files of concurrent uploads that arrive while a call is out leave together,
in one call and one transaction of the real results_service."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.ingest_rig import IngestRig, blob_files, rig_fixture, uploader  # noqa: F401  (fixture, used by name)
from tests.pipeline_helpers import channel_fixture, eventually, owner_fixture, results_settings_fixture  # noqa: F401

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


@contextlib.asynccontextmanager
async def registrations_held(rig: IngestRig) -> AsyncIterator[None]:
    """Hold every registration at the database (a lock on `uploads` that their inserts wait for) until the block
    ends, so that files pile up in ingest while the first call is out."""
    conn = await asyncpg.connect(rig.database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE uploads IN SHARE MODE")
            yield
    finally:
        await conn.close()


async def a_call_waits(rig: IngestRig) -> bool:
    rows = await rig.rows(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(rows[0][0])


async def all_stored(rig: IngestRig) -> bool:
    return len(blob_files(rig.blob_dir)) == UPLOADS


def upload(client: TestClient, data: bytes, owner: str) -> asyncio.Task[tuple[int, dict[str, object]]]:
    async def post() -> tuple[int, dict[str, object]]:
        headers = {"Content-Type": "application/dicom", **uploader(owner)}
        response = await client.post("/upload", data=io.BytesIO(data), headers=headers)
        return response.status, await response.json()

    return asyncio.create_task(post())


async def test_concurrent_uploads_are_registered_in_fewer_calls_than_files(
    rig: IngestRig, owner: str, samples_dir: Path
) -> None:
    client = await rig.make()
    files = distinct_copies(samples_dir / "sample-01-dicom.dcm", UPLOADS)
    owners = [f"{owner}-{i % 3}" for i in range(UPLOADS)]
    async with registrations_held(rig):
        uploads = [upload(client, data, who) for data, who in zip(files, owners, strict=True)]
        await eventually(lambda: a_call_waits(rig))
        await eventually(lambda: all_stored(rig))  # every upload has its blob: the others wait for the first call
    answers = await asyncio.gather(*uploads)
    assert [(status, [f["status"] for f in body["files"]]) for status, body in answers] == [  # type: ignore[attr-defined]
        (202, ["accepted"])
    ] * UPLOADS
    # A transaction's rows share its start time: one created_at per call.
    rows = await rig.rows(
        "SELECT owner, created_at FROM instances WHERE owner = ANY($1::varchar[])", sorted(set(owners))
    )
    assert sorted(row["owner"] for row in rows) == sorted(owners)
    calls = {row["created_at"] for row in rows}
    assert len(calls) < UPLOADS
    assert max(sum(row["created_at"] == call for row in rows) for call in calls) > 1


async def test_a_call_results_service_does_not_answer_in_time_fails_every_upload_in_it_with_a_503(
    rig: IngestRig, owner: str, samples_dir: Path
) -> None:
    """results_service cannot answer until every upload has been answered (the lock is released only then), so
    only the timeout can end each call: its length sets how long the test takes, not whether it passes."""
    client = await rig.make(results_timeout=0.5)
    files = distinct_copies(samples_dir / "sample-01-dicom.dcm", 3)
    async with registrations_held(rig):
        answers = await asyncio.gather(*(upload(client, data, owner) for data in files))
    for status, problem in answers:
        assert status == 503
        assert "results_service is unreachable (TimeoutError)" in str(problem["detail"])
        assert "retry" in str(problem["detail"])
