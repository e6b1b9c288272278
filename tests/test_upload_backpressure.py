"""Backpressure instead of half-work: a broker that blocks publishers or a blob store out of space answers an
upload 503 with `Retry-After`, never a hang or a 500, and leaves no row without its job.

- The broker: a private RabbitMQ node (`tests.private_rabbitmq`, never the machine's) put into a memory
  alarm with `rabbitmqctl set_vm_memory_high_watermark`. RabbitMQ tells a connection it is blocked
  (`connection.blocked`) only when it publishes during the alarm, so the first upload after the alarm
  has registered its file when its job's publish stalls: it is answered 503 once the connection reports
  the block, and its instance stays `received` (the job, already in the broker's socket, is routed
  when the alarm clears; the reconciler would publish it otherwise). Every later upload is refused
  before anything is read or written.
- The store: a real ENOSPC, from a 1 MiB tmpfs mounted (as root) under the test's folder and filled up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pickle
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.app.secret_settings import BlobKeySettings
from common.messaging.broker import declare_topology, open_channel
from common.messaging.faults import is_infrastructure_error
from common.messaging.jobs import BUSY_RETRY_AFTER
from common.storage.blobs import FULL_RETRY_AFTER, BlobStore, BlobStoreFull
from ingest_service.main import init_app as init_ingest
from ingest_service.settings import IngestSettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from samples.make_instances import SAMPLE_01, iter_mix
from tests.ingest_rig import IngestRig, blob_files, rig_fixture, uploader  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    LIMIT,
    channel_fixture,
    eventually,
    fetch,
    owner_fixture,
    results_settings_fixture,
)
from tests.private_rabbitmq import PrivateRabbitMQ, private_rabbitmq_fixture  # noqa: F401  (fixture, by name)
from tests.registration_helpers import upload_records
from tests.service_auth import INGEST, signing

Client = TestClient[web.Request, web.Application]
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"  # the wrapper in /usr/sbin switches to the rabbitmq account
BLOCKED_WAIT = 0.5


def rabbitmqctl(node: PrivateRabbitMQ, *args: str) -> str:
    """Run rabbitmqctl against the private node only (its name and its cookie, under its own HOME)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RABBITMQ_")}
    env["HOME"] = str(node.folder)
    done = subprocess.run(
        [RABBITMQCTL, "-n", node.nodename, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def fresh_files(count: int) -> list[tuple[str, bytes]]:
    """Valid DICOM files with UIDs of their own (so each is a new instance with a job)."""
    return list(iter_mix([(SAMPLE_01, count)]))


async def post_file(ingest: Client, owner: str, data: bytes) -> Any:
    headers = {**uploader(owner), "Content-Type": "application/dicom"}
    return await ingest.post("/upload", data=data, headers=headers)


async def upload_rows(database_url: str, upload_id: str) -> list[tuple[str, str]]:
    """(table, status) of what the upload left: its upload row and its instances."""
    uploads = await fetch(database_url, "SELECT id FROM uploads WHERE id = $1", upload_id)
    instances = await fetch(database_url, "SELECT status FROM instances WHERE upload_id = $1", upload_id)
    return [("upload", "")] * len(uploads) + [("instance", row["status"]) for row in instances]


async def assert_unavailable(response: Any, retry_after: int) -> dict[str, Any]:
    """A 503 problem with `Retry-After`; its body."""
    assert response.status == 503, await response.text()
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert response.headers["Retry-After"] == str(retry_after)
    body: dict[str, Any] = await response.json()
    return body


@pytest.fixture
async def node_settings(
    private_rabbitmq: PrivateRabbitMQ, results_settings: ResultsSettings
) -> AsyncIterator[ResultsSettings]:
    """results_service's settings (this run's database) on the private node; its topology declared."""
    settings = ResultsSettings(**{**results_settings.model_dump(), "amqp_url": private_rabbitmq.url})
    connection = await aio_pika.connect_robust(settings.amqp_url)
    async with connection:
        await declare_topology(await open_channel(connection), settings)
        yield settings


async def test_uploads_while_the_broker_blocks_publishers_get_503_with_retry_after_and_no_half_work(
    private_rabbitmq: PrivateRabbitMQ,
    node_settings: ResultsSettings,
    owner: str,
    aiohttp_server: Any,
    aiohttp_client: Any,
) -> None:
    server = await aiohttp_server(init_results(node_settings))
    ingest_settings = IngestSettings(
        amqp_url=node_settings.amqp_url,
        amqp_prefix=node_settings.amqp_prefix,
        job_delivery_limit=node_settings.job_delivery_limit,
        blob_dir=node_settings.blob_dir,
        results_url=str(server.make_url("")).rstrip("/"),
        broker_blocked_wait=BLOCKED_WAIT,
    )
    ingest: Client = await aiohttp_client(init_ingest(ingest_settings), middlewares=signing(INGEST))
    before, first, later, after = (data for _, data in fresh_files(4))
    assert (await post_file(ingest, owner, before)).status == 202  # ingest's connection has published

    await asyncio.to_thread(rabbitmqctl, private_rabbitmq, "set_vm_memory_high_watermark", "0.0000001")
    try:
        stalled = await assert_unavailable(await post_file(ingest, owner, first), BUSY_RETRY_AFTER)
        assert "RabbitMQ" in stalled["detail"]
        # Registered before the publish stalled: received, the state the reconciler republishes from.
        assert await upload_rows(node_settings.database_url, stalled["upload_id"]) == [
            ("upload", ""),
            ("instance", "received"),
        ]
        blobs = set(blob_files(Path(node_settings.blob_dir)))

        refused = await assert_unavailable(await post_file(ingest, owner, later), BUSY_RETRY_AFTER)
        assert refused["files"] == []
        assert await upload_rows(node_settings.database_url, refused["upload_id"]) == []  # nothing registered
        assert set(blob_files(Path(node_settings.blob_dir))) == blobs  # nothing stored
        stop = await upload_records(node_settings.database_url, refused["upload_id"])
        assert [(r["action"], r["detail"]) for r in stop] == [("upload.stop", {"status": 503, "files": 0})]
    finally:
        await asyncio.to_thread(rabbitmqctl, private_rabbitmq, "set_vm_memory_high_watermark", "0.4")

    assert (await post_file(ingest, owner, after)).status == 202

    async def stalled_job_routed() -> bool:  # the job sent before the block was noticed reached results_service
        rows = await upload_rows(node_settings.database_url, stalled["upload_id"])
        return rows[1][1] != "received"

    await eventually(stalled_job_routed)


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs under the test's folder, as blob folder (root only: mounting needs CAP_SYS_ADMIN)."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): ENOSPC needs a full filesystem")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem refuses more (ENOSPC); its path."""
    filler = folder / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


async def test_an_upload_to_a_full_blob_store_gets_503_with_retry_after_and_stores_nothing(
    rig: IngestRig, owner: str, full_store: Path
) -> None:
    ingest = await rig.make(blob_dir=str(full_store))
    first, second = (data for _, data in fresh_files(2))
    filler = await asyncio.to_thread(fill, full_store)

    body = await assert_unavailable(await post_file(ingest, owner, first), FULL_RETRY_AFTER)
    assert "out of space" in body["detail"] and str(full_store) not in body["detail"]
    assert await upload_rows(rig.database_url, body["upload_id"]) == []  # no row: the file was not stored
    assert blob_files(full_store) == [filler]
    assert list((full_store / "tmp").iterdir()) == []  # the partial file is gone
    stop = await upload_records(rig.database_url, body["upload_id"])
    assert [(r["action"], r["detail"]) for r in stop] == [("upload.stop", {"status": 503, "files": 0})]

    filler.unlink()
    response = await post_file(ingest, owner, second)
    assert response.status == 202, await response.text()
    [taken] = (await response.json())["files"]
    assert taken["status"] == "accepted"


async def test_a_full_store_is_an_outage_to_the_consumers_not_the_messages_fault(full_store: Path) -> None:
    """A processor writing a preview to a full store holds its job and retries (common.messaging.faults)."""
    store = BlobStore(full_store, BlobKeySettings().keyring())
    await asyncio.to_thread(fill, full_store)
    with pytest.raises(BlobStoreFull) as raised:
        await store.put_bytes(os.urandom(4096))
    assert raised.value.errno == errno.ENOSPC
    assert is_infrastructure_error(raised.value)
    assert is_infrastructure_error(pickle.loads(pickle.dumps(raised.value)))  # as from a worker process
    assert list(store.tmp.iterdir()) == []
