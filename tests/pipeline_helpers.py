"""Helpers shared by the results_service pipeline tests: a running app, a broker channel, registrations."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.messaging.broker import Topology, declare_topology, delete_topology, open_channel, publish, status_key
from common.messaging.jobs import job_message_id, publish_job
from common.messaging.messages import ImageResult, InstanceStatus, ProcessJob, ProcessResult, StatusChanges, StatusEvent
from results_service.main import init_app
from results_service.settings import ResultsSettings
from tests.queue_helpers import LIVENESS, take
from tests.service_auth import as_user, signing

LIMIT = 1


@pytest.fixture(name="owner")
def owner_fixture() -> str:
    """A user of its own per test, so tests share the run's database without seeing each other."""
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture(name="results_settings")
def results_settings_fixture(database_url: str, amqp_prefix: str, tmp_path: Path) -> ResultsSettings:
    return ResultsSettings(
        database_url=database_url,
        amqp_prefix=amqp_prefix,
        blob_dir=str(tmp_path / "blobs"),
        job_delivery_limit=LIMIT,
        results_batch_ms=20,
        shutdown_timeout=5,
    )


@pytest.fixture(name="channel")
async def channel_fixture(amqp_prefix: str, results_settings: ResultsSettings) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect_robust(results_settings.amqp_url)
    async with connection:
        channel = await open_channel(connection)
        yield channel
        await delete_topology(channel, amqp_prefix)


@pytest.fixture(name="topology")
async def topology_fixture(channel: AbstractChannel, results_settings: ResultsSettings) -> Topology:
    return await declare_topology(channel, results_settings)


@pytest.fixture(name="events")
async def events_fixture(channel: AbstractChannel, topology: Topology) -> AbstractQueue:
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.events)
    return queue


@pytest.fixture(name="client")
async def client_fixture(results_settings: ResultsSettings, topology: Topology, aiohttp_client: Any) -> Any:
    """results_service on a test client that signs its calls as a service (`tests.service_auth`); `aiohttp_client`
    comes last so the app stops before the queues go."""
    return await aiohttp_client(init_app(results_settings), middlewares=signing())


def dicom_fields(study: str = "1.2.3", modality: str = "MR", series: str = "1.2.3.4") -> dict[str, Any]:
    return {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.4",
        "sop_instance_uid": f"1.2.3.{uuid.uuid4().int % 10**12}",
        "study_instance_uid": study,
        "series_instance_uid": series,
        "modality": modality,
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
    }


def sha_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def accepted(
    owner: str, index: int = 0, content: str | None = None, *, name: str = "a.dcm", **dicom: str
) -> dict[str, Any]:
    """The registration of an accepted file whose bytes hash like `content` (new bytes when None)."""
    return {
        "index": index,
        "name": name,
        "owner": owner,
        "sha256": sha_of(content if content is not None else uuid.uuid4().hex),
        "size": 10,
        "outcome": "accepted",
        "dicom": dicom_fields(**dicom),
    }


async def register(
    client: Any,
    owner: str,
    *,
    upload_id: str | None = None,
    index: int = 0,
    content: str | None = None,
    name: str = "a.dcm",
    **dicom: str,
) -> tuple[int, dict[str, Any]]:
    """Register one accepted file with a registration call of one item; returns (the item's status, its
    registration, or the problem detail for a 409)."""
    item = {
        "upload_id": upload_id or uuid.uuid4().hex,
        "registration": accepted(owner, index, content, name=name, **dicom),
    }
    response = await client.post("/internal/registrations", json={"items": [item]})
    assert response.status == 200, await response.text()
    [answer] = (await response.json())["items"]
    return answer["status"], answer["registered"] or {"detail": answer["detail"]}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = LIVENESS) -> None:
    """Wait until `check()` is true (consumers work asynchronously); `timeout` only guards against hanging."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def status_of(client: Any, owner: str, instance_id: str) -> str:
    """The instance's status as its owner reads it through the API."""
    return str((await get_json(client, f"/api/instances/{instance_id}", owner))[1]["status"])


async def wait_status(client: Any, owner: str, instance_id: str, status: str) -> None:
    """Wait until the API shows the instance in `status`."""

    async def reached() -> bool:
        return await status_of(client, owner, instance_id) == status

    await eventually(reached)


async def instance_moved_to(
    client: Any, topology: Topology, owner: str, status: InstanceStatus
) -> tuple[str, StatusEvent]:
    """A new instance of `owner`, moved to `status` by a worker's status event (published as
    processor_service publishes one); returns its id and the event once the API shows the move."""
    _, body = await register(client, owner)
    instance_id = body["instance_id"]
    event = StatusEvent(instance_id=instance_id, upload_id="u", owner=owner, status=status)
    await publish(topology.exchange, event, status_key(status.value))
    await wait_status(client, owner, instance_id, status.value)
    return instance_id, event


def done_result(instance_id: str, owner: str, **overrides: Any) -> ProcessResult:
    """A worker's `done` result for the instance (fields overridable, e.g. a `failed` one with a reason)."""
    image = ImageResult(has_pixel_data=False, note="no pixel data", processing_ms=1.5, worker="host:1")
    fields: dict[str, Any] = {
        "instance_id": instance_id,
        "upload_id": "u",
        "owner": owner,
        "status": InstanceStatus.DONE,
        "result": image,
    }
    fields.update(overrides)
    return ProcessResult.model_validate(fields)


async def consumed_through_witness(
    client: Any, topology: Topology, owner: str, queue: Literal["status", "results", "queued"]
) -> str:
    """Prove results_service took everything published so far on `queue`: publish a witness message after it on
    that queue and wait until the API shows the witness instance moved. Returns the witness instance's id.

    Each of these consumers applies its queue in order (deliveries join one batcher's queue as they arrive,
    batches are stored one after another), so once the witness is applied, every message before it has been
    applied or dropped, and each batch's announcements published. A test that something did NOT change
    calls this before asserting it.
    """
    if queue == "status":
        witness, _ = await instance_moved_to(client, topology, owner, InstanceStatus.PROCESSING)
        return witness
    _, body = await register(client, owner)
    witness = body["instance_id"]
    if queue == "results":
        await publish(topology.exchange, done_result(witness, owner), "result.done")
        moved = InstanceStatus.DONE
    else:
        await publish_jobs(topology, owner, [witness])
        moved = InstanceStatus.QUEUED
    await wait_status(client, owner, witness, moved.value)
    return witness


async def fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def get_json(client: Any, path: str, owner: str, role: str = "user", **headers: str) -> tuple[int, Any]:
    """GET as this user (and role), as the gateway forwards it; (status, body)."""
    response = await client.get(path, headers={**as_user(owner, role), **headers})
    if response.status >= 400:
        assert response.content_type == PROBLEM_CONTENT_TYPE
    return response.status, await response.json()


@contextlib.asynccontextmanager
async def uncommitted_twin(database_url: str, owner: str, content: str) -> AsyncIterator[tuple[Any, str]]:
    """An instance of `owner` with the bytes `content`, inserted in a transaction left open.

    Yields (transaction, twin instance id): a registration of the same bytes blocks on the
    uncommitted row until the test commits the transaction.
    """
    twin_upload, twin_instance = uuid.uuid4().hex, uuid.uuid4().hex
    holder = await asyncpg.connect(database_url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("INSERT INTO uploads (id, owner, created_at) VALUES ($1, $2, now())", twin_upload, owner)
        await holder.execute(
            "INSERT INTO instances (id, owner, upload_id, sha256, size, file_name, status, created_at, updated_at, "
            "sop_class_uid, sop_instance_uid, study_instance_uid, series_instance_uid, transfer_syntax_uid) "
            "VALUES ($1, $2, $3, $4, 10, 'twin.dcm', 'received', now(), now(), "
            "'1.2', '1.2.3', '1.2.4', '1.2.5', '1.2.6')",
            twin_instance,
            owner,
            twin_upload,
            sha_of(content),
        )
        yield transaction, twin_instance
    finally:
        await holder.close()


async def announced(queue: AbstractQueue, expected: int, timeout: float = LIVENESS) -> list[StatusEvent]:
    """The status events announced on a live-feed queue, in order, until `expected` arrived (each message is a
    `StatusChanges` of one batch); checks that no more are there."""

    def events_in(message: AbstractIncomingMessage) -> list[StatusEvent]:
        return StatusChanges.model_validate_json(message.body).events

    messages = await take(queue, expected, timeout, weight=lambda message: len(events_in(message)))
    return [event for message in messages for event in events_in(message)]


def job_for(instance_id: str, owner: str, *, size: int = 1) -> ProcessJob:
    """An instance's job as ingest builds it (its blob fields are not read by results_service)."""
    return ProcessJob(
        message_id=job_message_id(instance_id),
        instance_id=instance_id,
        upload_id="u",
        owner=owner,
        sha256="a" * 64,
        size=size,
        sop_class_uid="1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )


async def publish_jobs(topology: Topology, owner: str, instance_ids: list[str]) -> None:
    """Publish the instances' jobs as ingest does (confirmed; the broker routes results_service its copies)."""
    for instance_id in instance_ids:
        await publish_job(topology.exchange, job_for(instance_id, owner), large_job_bytes=1024)
