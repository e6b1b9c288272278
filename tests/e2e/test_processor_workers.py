"""A processor killed outright (kill -9 of its process alone, as the OOM killer does) leaves no worker behind.

An idle pebble worker ends by itself when its parent goes (its task pipe reaches end of file); a worker
busy in a job does not notice until the job ends, which may be never. So each worker is first made
busy for good: its job's blob is a named pipe that the test opens for writing and never writes to, so
the worker waits inside `read` (as one stuck on a hung disk would). Only the tie to its parent can
end it then.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import signal
import uuid
from pathlib import Path

import aio_pika
import psutil

from common.app.settings import BaseServiceSettings
from common.messaging.broker import declare_topology, open_channel
from common.messaging.jobs import job_message_id, publish_job
from common.messaging.messages import ProcessJob
from common.storage.blobs import BlobStore
from processor_service.settings import ProcessorSettings
from single_host.processes import RunningSystem
from tests.pipeline_helpers import eventually
from tests.process_helpers import alive

CONCURRENCY = 2


def worker_pids(pid: int) -> set[int]:
    """The processor's pool workers: its children started by multiprocessing's spawn."""
    return {
        child.pid
        for child in psutil.Process(pid).children(recursive=True)
        if "multiprocessing.spawn" in " ".join(child.cmdline()) and alive(child.pid)
    }


def stuck_blob(store: BlobStore) -> str:
    """A blob key whose stored file is a named pipe: a worker that opens it waits for bytes that never come."""
    sha256 = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    path = store.path(sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return sha256


def job_of(sha256: str) -> ProcessJob:
    instance_id = uuid.uuid4().hex
    return ProcessJob(
        message_id=job_message_id(instance_id),
        instance_id=instance_id,
        upload_id="u",
        owner="o",
        sha256=sha256,
        size=1,
        cost_bytes=1,  # as ingest publishes it: no estimate read from the (never written) file first
        sop_class_uid="1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )


async def publish_jobs(system: RunningSystem, keys: list[str]) -> None:
    settings = BaseServiceSettings(amqp_prefix=system.prefix)
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        topology = await declare_topology(await open_channel(connection), settings)
        for sha256 in keys:
            await publish_job(topology.exchange, job_of(sha256), large_job_bytes=1024)


async def test_busy_workers_end_when_their_processor_is_killed(database_url: str, tmp_path: Path) -> None:
    system = RunningSystem(database_url, tmp_path, {"PROCESSOR_CONCURRENCY": str(CONCURRENCY)})
    store = BlobStore(system.blob_dir, ProcessorSettings().keyring())
    keys = [stuck_blob(store) for _ in range(CONCURRENCY)]
    writers: dict[str, int] = {}
    workers: set[int] = set()

    async def every_worker_reading() -> bool:
        """Each pipe has a reader (a worker inside its job) once it can be opened for writing without waiting."""
        for sha256 in set(keys) - set(writers):
            try:
                writers[sha256] = os.open(store.path(sha256), os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nobody reads it yet
                    raise
        return len(writers) == len(keys)

    try:
        await asyncio.to_thread(system.start, "processor_service")  # ready: every worker has warmed up
        processor = system.pid("processor_service")
        workers = worker_pids(processor)
        assert len(workers) == CONCURRENCY
        await publish_jobs(system, keys)
        await eventually(every_worker_reading)
        assert worker_pids(processor) == workers

        os.kill(processor, signal.SIGKILL)  # the processor alone: not its process group
        await asyncio.to_thread(system.services["processor_service"].process.wait)  # type: ignore[union-attr]

        async def workers_gone() -> bool:
            return not any(alive(pid) for pid in workers)

        await eventually(workers_gone)
    finally:
        for fd in writers.values():
            os.close(fd)
        for pid in workers:  # only if the test failed: never leave them behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(system.stop_all)
