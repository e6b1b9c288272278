"""Processing in the running system: uploads reach `done` with exact figures, poison jobs end `failed`
and parked, and a processor killed mid-batch loses nothing and duplicates no result."""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import numpy as np
import psutil
import pydicom
import pytest
from PIL import Image
from pydicom.pixels.utils import pixel_array

from common.app.secret_settings import BlobKeySettings
from common.storage.blobs import BlobStore
from processor_service.imaging import HISTOGRAM_BINS
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_instances
from tests.e2e.conftest import RunningSystem, User
from tests.queue_helpers import LIVENESS

DICOM = "application/dicom"


async def upload(system: RunningSystem, user: User, data: bytes, content_type: str = DICOM) -> dict[str, Any]:
    headers = {**user.headers, "Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{system.gateway_url}/api/uploads", data=io.BytesIO(data), headers=headers) as response,
    ):
        body: dict[str, Any] = await response.json()
        assert response.status == 202, body
        return body


async def api(system: RunningSystem, user: User, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(system.gateway_url + path, headers=user.headers) as r:
        return r.status, (await r.json() if r.content_type.endswith("json") else await r.read())


async def status_in_listing(system: RunningSystem, user: User, instance_id: str) -> str | None:
    """The instance's status as the user's listing shows it (the listing reads no stored file)."""
    status, page = await api(system, user, "/api/instances?limit=1000")
    assert status == 200, page
    return next((v["status"] for v in page["items"] if v["id"] == instance_id), None)


async def wait_final(system: RunningSystem, user: User, instance_ids: list[str], timeout: float = 60) -> list[Any]:
    """Poll the user's instances (one listing per round: the gateway rate-limits) until all are final."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, page = await api(system, user, "/api/instances?limit=1000")
        assert status == 200, page
        views = {v["id"]: v for v in page["items"]}
        if all(views.get(i, {}).get("status") in ("done", "failed") for i in instance_ids):
            return [views[i] for i in instance_ids]
        assert asyncio.get_running_loop().time() < deadline, sorted(v["status"] for v in views.values())
        await asyncio.sleep(0.25)


def assert_figures(result: dict[str, Any], array: np.ndarray, frames: int) -> None:
    """The result's figures equal numpy's on the whole decoded array."""
    x = array.astype(np.float64)
    low, high = x.min(), x.max()
    assert (result["rows"], result["columns"], result["frames"]) == (512, 512, frames)
    assert result["dtype"] == str(array.dtype) and result["pixel_count"] == array.size
    original = result["original"]
    assert (original["min"], original["max"]) == (low, high)
    assert math.isclose(original["mean"], x.mean(), rel_tol=1e-12)
    assert math.isclose(original["std"], x.std(), rel_tol=1e-12)
    norm = (x - low) / (high - low)
    assert math.isclose(result["normalized"]["mean"], norm.mean(), rel_tol=1e-12)
    assert math.isclose(result["normalized"]["std"], norm.std(), rel_tol=1e-12)
    assert result["histogram"]["counts"] == np.histogram(array, HISTOGRAM_BINS, (low, high))[0].tolist()


@pytest.fixture
async def bob(running_system: RunningSystem) -> User:
    return await running_system.create_user("bob")


async def test_both_samples_reach_done_with_numpys_figures_and_a_preview(
    running_system: RunningSystem, bob: User
) -> None:
    files = {"a.dcm": SAMPLE_01.read_bytes(), "b.dcm": SAMPLE_02.read_bytes()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    body = await upload(running_system, bob, buffer.getvalue(), "application/zip")
    ids = [f["instance_id"] for f in body["files"]]
    first, second = await wait_final(running_system, bob, ids)
    assert (first["status"], second["status"]) == ("done", "done"), (first["reason"], second["reason"])
    assert_figures(first["result"], pydicom.dcmread(SAMPLE_01).pixel_array, frames=1)
    # JPEG Baseline: the processor prefers Pillow (libjpeg-turbo), so the test decodes with it too.
    assert_figures(second["result"], pixel_array(SAMPLE_02, decoding_plugin="pillow"), frames=96)
    assert second["result"]["worker"].count(":") == 1 and second["result"]["processing_ms"] > 0
    for instance_id in ids:
        status, png = await api(running_system, bob, f"/api/instances/{instance_id}/preview.png")
        assert status == 200
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size == (256, 256) and image.mode == "L"
    status, upload_view = await api(running_system, bob, f"/api/uploads/{body['upload_id']}")
    assert status == 200 and upload_view["counts"]["done"] == 2
    status, studies = await api(running_system, bob, "/api/studies")
    assert status == 200 and sorted(s["counts"]["done"] for s in studies["items"]) == [1, 1]


async def parked_jobs(system: RunningSystem) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """The messages of the parked queue, left there."""
    return await queued_messages(system, "parked")


async def queued_jobs(system: RunningSystem) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """The messages of the standard jobs queue, left there."""
    return await queued_messages(system, "jobs")


async def queued_messages(system: RunningSystem, queue_name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    taken = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{system.prefix}.{queue_name}", ensure=False)
        while (message := await queue.get(fail=False)) is not None:
            taken.append(message)
        for message in taken:
            await message.reject(requeue=True)
    return taken


async def upload_a_job_that_hangs(system: RunningSystem, user: User) -> str:
    """Upload sample-02 with the processor stopped, then swap its stored file for a named pipe nobody writes
    to and start the processor: every attempt at the job blocks reading it, whatever the machine's speed.
    Returns the instance id."""
    system.stop("processor_service")  # no attempt before the swap
    data = SAMPLE_02.read_bytes()
    body = await upload(system, user, data)
    blob = BlobStore(system.blob_dir, BlobKeySettings().keyring()).path(hashlib.sha256(data).hexdigest())
    assert blob.is_file()
    blob.unlink()
    os.mkfifo(blob)
    system.start("processor_service")
    return str(body["files"][0]["instance_id"])


async def test_a_job_that_always_times_out_ends_failed_and_parked(start_system: Callable[..., RunningSystem]) -> None:
    system = start_system(PROCESSOR_JOB_TIMEOUT="1", JOB_DELIVERY_LIMIT="1")
    user = await system.create_user("carol")
    [view] = await wait_final(system, user, [await upload_a_job_that_hangs(system, user)])
    assert view["status"] == "failed" and view["result"] is None
    assert view["reason"].startswith("processing failed 2 times (the worker timed out or crashed each time)")
    parked = await parked_jobs(system)
    assert len(parked) == 1 and b'"instance_id":"' + view["id"].encode() in parked[0].body


async def test_sigterm_requeues_a_job_past_the_shutdown_timeout_and_the_processor_leaves_no_worker(
    start_system: Callable[..., RunningSystem],
) -> None:
    system = start_system(PROCESSOR_CONCURRENCY="2", SHUTDOWN_TIMEOUT="1", PROCESSOR_JOB_TIMEOUT="600")
    user = await system.create_user("erin")
    instance_id = await upload_a_job_that_hangs(system, user)
    deadline = asyncio.get_running_loop().time() + LIVENESS
    while await status_in_listing(system, user, instance_id) != "processing":  # a view would read the pipe
        assert asyncio.get_running_loop().time() < deadline, "the job never started"
        await asyncio.sleep(0.25)
    workers = psutil.Process(system.pid("processor_service")).children(recursive=True)
    assert len(workers) >= 2  # the pool's worker processes (and multiprocessing's resource tracker)
    killed = system.services["processor_service"].stop()  # SIGTERM; SIGKILL only after the stop timeout
    assert not killed  # the drain gave up after SHUTDOWN_TIMEOUT and the pool stopped the blocked worker
    _, alive = psutil.wait_procs(workers, timeout=LIVENESS)
    assert alive == []
    [job] = await queued_jobs(system)
    assert b'"instance_id":"' + instance_id.encode() in job.body  # back in its queue for the next processor


async def result_rows(database_url: str, instance_ids: list[str]) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT instance_id, status FROM results WHERE instance_id = ANY($1::text[])", instance_ids
        )
    finally:
        await conn.close()
    return [(row["instance_id"], row["status"]) for row in rows]


async def test_killing_a_processor_mid_batch_loses_nothing_and_duplicates_nothing(
    start_system: Callable[..., RunningSystem], database_url: str, tmp_path: Path
) -> None:
    system = start_system()
    user = await system.create_user("dave")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in iter_instances(SAMPLE_02, 40, prefix="kill"):
            archive.writestr(name, data)
    body = await upload(system, user, buffer.getvalue(), "application/zip")
    ids = [f["instance_id"] for f in body["files"]]
    assert len(set(ids)) == 40

    async def done_count() -> int:
        status, page = await api(system, user, "/api/instances?status=done&limit=1")
        return int(page["total"]) if status == 200 else 0

    deadline = asyncio.get_running_loop().time() + LIVENESS
    while await done_count() < 5:
        assert asyncio.get_running_loop().time() < deadline, "the processor never finished 5 files"
        await asyncio.sleep(0.2)
    system.kill("processor_service")  # SIGKILL to the whole group: parent and worker processes
    killed_at = await done_count()
    assert killed_at < 40, "the batch finished before the kill; make it bigger"
    system.start("processor_service")
    views = await wait_final(system, user, ids, timeout=90)
    assert [v["status"] for v in views] == ["done"] * 40
    rows = await result_rows(database_url, ids)
    assert len(rows) == 40 and {status for _, status in rows} == {"done"}
    assert await parked_jobs(system) == []
