"""A blob store the processor cannot reach costs a job no delivery attempt: the job is held and run again.

The store's folder of the job's blob is replaced by a plain file, so reading the blob fails with
NotADirectoryError (an OSError that is not a missing file: the store is unreachable, not the blob gone).
The delivery limit is 1; the test waits until the job has been retried more often than that, then puts
the folder back: the job's result is `done`, the job acked, nothing parked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from structlog.testing import capture_logs

from common.messaging.broker import JOB_STANDARD, declare_topology, delete_topology, open_channel, publish
from common.messaging.messages import InstanceStatus, ProcessResult
from common.storage.blobs import BlobStore
from processor_service.main import init_app
from processor_service.settings import ProcessorSettings
from tests.pipeline_helpers import LIMIT, eventually, job_for
from tests.queue_helpers import take


@pytest.fixture
async def settings(amqp_prefix: str, tmp_path: Path) -> ProcessorSettings:
    return ProcessorSettings(
        amqp_prefix=amqp_prefix,
        blob_dir=str(tmp_path / "blobs"),
        job_delivery_limit=LIMIT,
        processor_concurrency=1,
        shutdown_timeout=5,
        retry_max_delay=0.2,
    )


@pytest.fixture
async def channel(settings: ProcessorSettings) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect_robust(settings.amqp_url)
    async with connection:
        channel = await open_channel(connection)
        yield channel
        await delete_topology(channel, settings.amqp_prefix)


async def test_a_job_whose_blob_store_is_unreachable_is_held_until_it_is_back(
    settings: ProcessorSettings, channel: AbstractChannel, samples_dir: Path, aiohttp_client: Any
) -> None:
    topology = await declare_topology(channel, settings)
    store = BlobStore(Path(settings.blob_dir), settings.keyring())
    sha256 = await store.put_bytes((samples_dir / "sample-01-dicom.dcm").read_bytes())
    folder = store.path(sha256).parent.parent
    away = folder.with_name(folder.name + ".away")
    folder.rename(away)
    folder.write_bytes(b"")  # the store's folder is not a folder: NotADirectoryError on read
    await aiohttp_client(init_app(settings))
    with capture_logs() as logs:
        await publish(topology.exchange, job_for("held-1", "alice").model_copy(update={"sha256": sha256}), JOB_STANDARD)

        async def held_long_enough() -> bool:
            return sum(e["event"] == "job_held_in_outage" for e in logs) >= LIMIT + 3

        await eventually(held_long_enough)
        folder.unlink()
        away.rename(folder)
        [message] = await take(topology.results, 1)
    result = ProcessResult.model_validate_json(message.body)
    assert (result.instance_id, result.status) == ("held-1", InstanceStatus.DONE)
    await take(topology.jobs, 0)
    await take(topology.parked, 0)
