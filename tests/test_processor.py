"""processor_service against the real RabbitMQ: jobs in, status events and confirmed results out.

A job that must outlast a timeout reads a blob that is a named pipe nobody writes to: its worker blocks in
`open` for as long as the test needs, whatever the machine's speed.
"""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import numpy as np
import pydicom
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue
from PIL import Image

from common.app.secret_settings import BlobKeySettings
from common.messaging.broker import (
    JOB_STANDARD,
    STATUS_PATTERN,
    Topology,
    declare_topology,
    delete_topology,
    open_channel,
    publish,
)
from common.messaging.messages import InstanceStatus, ProcessJob, ProcessResult, StatusEvent
from common.storage.blobs import BlobStore, BlobUnreadable
from processor_service.imaging import analyse
from processor_service.main import init_app
from processor_service.settings import ProcessorSettings
from processor_service.work import measure_blob
from tests.process_helpers import alive, spawned_workers
from tests.queue_helpers import LIVENESS, take

LIMIT = 1
StartProcessor = Callable[..., Awaitable[Any]]


@pytest.fixture
def blob_dir(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def store(blob_dir: Path) -> BlobStore:
    return BlobStore(blob_dir, BlobKeySettings().keyring())  # the keys the processor reads with (BLOB_KEYS)


@pytest.fixture
async def channel(amqp_prefix: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await open_channel(connection)
        yield channel
        await delete_topology(channel, amqp_prefix)


@pytest.fixture
async def topology(channel: AbstractChannel, amqp_prefix: str) -> Topology:
    return await declare_topology(channel, ProcessorSettings(amqp_prefix=amqp_prefix, job_delivery_limit=LIMIT))


@pytest.fixture
async def events(channel: AbstractChannel, topology: Topology) -> AbstractQueue:
    """A private queue bound to the workers' status events, like `P.status`."""
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.exchange, STATUS_PATTERN)
    return queue


@pytest.fixture
def start_processor(amqp_prefix: str, blob_dir: Path, topology: Topology, aiohttp_client: Any) -> StartProcessor:
    async def start(**overrides: Any) -> Any:
        fields: dict[str, Any] = {
            "amqp_prefix": amqp_prefix,
            "blob_dir": str(blob_dir),
            "job_delivery_limit": LIMIT,
            "processor_concurrency": 2,
            "processor_job_timeout": 30.0,
            "shutdown_timeout": 5.0,
        }
        fields.update(overrides)
        return await aiohttp_client(init_app(ProcessorSettings(**fields)))

    return start


@pytest.fixture
def hanging_blob(store: BlobStore) -> str:
    """The key of a blob whose read never returns: a named pipe with no writer, so `open` blocks."""
    sha256 = "e" * 64
    path = store.path(sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return sha256


def make_job(sha256: str, **overrides: Any) -> ProcessJob:
    fields: dict[str, Any] = {
        "instance_id": "inst-1",
        "upload_id": "up-1",
        "owner": "alice",
        "sha256": sha256,
        "size": 1,
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
        "cost_bytes": 1,  # as ingest publishes them; a job without an estimate: tests/test_admission.py
    }
    fields.update(overrides)
    return ProcessJob.model_validate(fields)


async def test_job_gives_a_processing_event_and_a_done_result_with_a_preview(
    start_processor: StartProcessor, topology: Topology, events: AbstractQueue, store: BlobStore, samples_dir: Path
) -> None:
    data = (samples_dir / "sample-01-dicom.dcm").read_bytes()
    sha256 = await store.put_bytes(data)
    client = await start_processor()
    assert (await client.get("/readyz")).status == 200
    job = make_job(sha256)
    await publish(topology.exchange, job, JOB_STANDARD)
    [message] = await take(topology.results, 1)
    assert message.routing_key == "result.done"
    result = ProcessResult.model_validate_json(message.body)
    assert (result.instance_id, result.upload_id, result.owner) == ("inst-1", "up-1", "alice")
    assert result.status is InstanceStatus.DONE and result.reason is None
    assert result.result is not None
    expected = analyse(data, worker="x").result
    assert result.result.original == expected.original
    assert result.result.normalized == expected.normalized
    assert result.result.histogram == expected.histogram
    assert result.result.worker.endswith(f":{os.getpid()}")
    assert result.result.preview_sha256 is not None
    preview = Image.open(io.BytesIO(await store.read_bytes(result.result.preview_sha256)))
    assert preview.format == "PNG" and max(preview.size) <= 256
    [event] = await take(events, 1)
    status = StatusEvent.model_validate_json(event.body)
    assert (status.instance_id, status.status) == ("inst-1", InstanceStatus.PROCESSING)
    await take(topology.jobs, 0)  # acked
    await take(topology.parked, 0)


async def test_missing_blob_is_a_failed_result_and_the_job_is_acked(
    start_processor: StartProcessor, topology: Topology
) -> None:
    await start_processor()
    await publish(topology.exchange, make_job("b" * 64), JOB_STANDARD)
    [message] = await take(topology.results, 1)
    assert message.routing_key == "result.failed"
    result = ProcessResult.model_validate_json(message.body)
    assert result.status is InstanceStatus.FAILED and result.result is None
    assert result.reason is not None and "missing from the blob store" in result.reason
    await take(topology.jobs, 0)
    await take(topology.parked, 0)


async def test_undecodable_pixel_data_is_a_failed_result_with_the_reason(
    start_processor: StartProcessor, topology: Topology, store: BlobStore, samples_dir: Path
) -> None:
    data = (samples_dir / "sample-01-dicom.dcm").read_bytes()
    sha256 = await store.put_bytes(data[: len(data) // 2])
    await start_processor()
    await publish(topology.exchange, make_job(sha256), JOB_STANDARD)
    [message] = await take(topology.results, 1)
    result = ProcessResult.model_validate_json(message.body)
    assert result.status is InstanceStatus.FAILED
    assert result.reason
    await take(topology.parked, 0)


async def test_timed_out_job_is_retried_then_parked_without_a_result(
    start_processor: StartProcessor, topology: Topology, events: AbstractQueue, hanging_blob: str
) -> None:
    await start_processor(processor_job_timeout=0.5)
    job = make_job(hanging_blob)
    await publish(topology.exchange, job, JOB_STANDARD)
    [parked] = await take(topology.parked, 1)
    assert ProcessJob.model_validate_json(parked.body) == job
    assert parked.headers["x-death"][0]["reason"] == "delivery_limit"
    await take(topology.results, 0)
    processing = [StatusEvent.model_validate_json(m.body).status for m in await take(events, LIMIT + 1)]
    assert processing == [InstanceStatus.PROCESSING] * (LIMIT + 1)


async def test_large_jobs_are_consumed_when_configured(
    start_processor: StartProcessor, topology: Topology, store: BlobStore, samples_dir: Path
) -> None:
    sha256 = await store.put_bytes((samples_dir / "sample-01-dicom.dcm").read_bytes())
    await start_processor(processor_queues=["large"])
    await publish(topology.exchange, make_job(sha256, instance_id="big"), "job.large")
    [message] = await take(topology.results, 1)
    assert ProcessResult.model_validate_json(message.body).instance_id == "big"


async def test_stop_finishes_the_job_in_flight_before_closing(
    start_processor: StartProcessor, topology: Topology, events: AbstractQueue, store: BlobStore, samples_dir: Path
) -> None:
    sha256 = await store.put_bytes((samples_dir / "sample-02-dicom.dcm").read_bytes())
    client = await start_processor(shutdown_timeout=LIVENESS)  # the drain bound is not under test here
    await publish(topology.exchange, make_job(sha256), JOB_STANDARD)
    await take(events, 1)  # the job has started
    await client.close()
    [message] = await take(topology.results, 1)
    assert ProcessResult.model_validate_json(message.body).status is InstanceStatus.DONE
    await take(topology.jobs, 0)


async def test_stop_requeues_a_job_still_running_after_the_shutdown_timeout_and_leaves_no_worker(
    start_processor: StartProcessor, topology: Topology, events: AbstractQueue, hanging_blob: str
) -> None:
    before = spawned_workers()
    client = await start_processor(shutdown_timeout=0.5, processor_job_timeout=LIVENESS)
    workers = spawned_workers() - before
    assert len(workers) == 2  # started (and warmed up) with the app
    job = make_job(hanging_blob)
    await publish(topology.exchange, job, JOB_STANDARD)
    await take(events, 1)  # the job has started, and will never finish
    await client.close()
    [requeued] = await take(topology.jobs, 1)
    assert ProcessJob.model_validate_json(requeued.body) == job
    await take(topology.results, 0)  # the service is gone: no result can come any more
    assert not [pid for pid in workers if alive(pid)]
    assert spawned_workers() <= before


def _without_timing(analysis: Any) -> tuple[dict[str, Any], bytes | None]:
    return analysis.result.model_dump(exclude={"processing_ms"}), analysis.preview_png


@pytest.mark.parametrize("sample", ["sample-01-dicom.dcm", "sample-02-dicom.dcm"])
def test_a_blob_read_frame_by_frame_gives_the_figures_of_the_plaintext(
    store: BlobStore, samples_dir: Path, sample: str
) -> None:
    data = (samples_dir / sample).read_bytes()
    sha256 = store.put_bytes_sync(data)
    assert _without_timing(measure_blob(store, sha256, "w")) == _without_timing(analyse(data, worker="w"))


def test_a_large_multi_frame_blob_is_measured_without_holding_it(
    store: BlobStore, samples_dir: Path, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(samples_dir / "sample-01-dicom.dcm")
    frame = ds.pixel_array
    frames = np.stack([np.roll(frame, 7 * i, axis=1) for i in range(64)])  # 64 x 512 KiB = 32 MiB of pixels
    ds.NumberOfFrames, ds.PixelData = len(frames), frames.tobytes()
    path = tmp_path / "multi-frame.dcm"
    ds.save_as(path)
    sha256 = store.put_bytes_sync(path.read_bytes())
    del ds, frames
    tracemalloc.start()
    try:
        result = measure_blob(store, sha256, "w").result
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # About 10 MB whatever the file's size (a frame, the value table, the preview's float64 copies of one frame);
    # holding the file whole even once would take more than its size.
    assert peak < path.stat().st_size / 2
    expected = analyse(path.read_bytes(), worker="w").result
    assert result.frames == 64 and result.model_dump(exclude={"processing_ms"}) == expected.model_dump(
        exclude={"processing_ms"}
    )


@pytest.mark.parametrize("where", [0.01, 0.5], ids=["in the header", "in the pixel data"])
def test_a_blob_tampered_mid_file_is_unreadable_not_undecodable(
    store: BlobStore, samples_dir: Path, where: float
) -> None:
    sha256 = store.put_bytes_sync((samples_dir / "sample-02-dicom.dcm").read_bytes())
    path = store.path(sha256)
    sealed = bytearray(path.read_bytes())
    sealed[int(len(sealed) * where)] ^= 1
    path.write_bytes(sealed)
    with pytest.raises(BlobUnreadable, match="failed authentication"):
        measure_blob(store, sha256, "w")
