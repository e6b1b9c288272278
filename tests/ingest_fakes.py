"""Helpers of the ingest unit tests: a stand-in for results_service's registration endpoints (unit tests
only; the end-to-end tests use the real one), the ingest app on the real RabbitMQ, and queue readers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.app.settings import BaseServiceSettings
from common.messaging.broker import TopologyNames, delete_topology
from common.schemas.instances import FileRegistered, FileRegistration, FileStatus
from common.schemas.registrations import RegistrationAnswer, RegistrationBatch, RegistrationBatchAnswer
from ingest_service.main import init_app
from ingest_service.settings import IngestSettings


@dataclass
class FakeResults:
    """Registers files like results_service: new instance, or duplicate (same owner and sha256) of the first."""

    duplicate_status: str = "queued"
    fail_at_index: int | None = None
    registrations: list[tuple[str, FileRegistration]] = field(default_factory=list)
    instances: dict[tuple[str, str], str] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)
    calls: int = 0
    fail_calls: int = 0  # answer the next this many calls with a 500
    batch_delay: float = 0.0

    def register(self, upload_id: str, registration: FileRegistration) -> FileRegistered:
        self.registrations.append((upload_id, registration))
        if registration.outcome is FileStatus.REJECTED:
            return FileRegistered(status=FileStatus.REJECTED, reason=registration.reason)
        key = (registration.owner, registration.sha256 or "")
        if key in self.instances:
            return FileRegistered(
                instance_id=self.instances[key], status=FileStatus.DUPLICATE, instance_status=self.duplicate_status
            )
        self.instances[key] = uuid.uuid4().hex
        return FileRegistered(instance_id=self.instances[key], status=FileStatus.ACCEPTED)

    async def handle_batch(self, request: web.Request) -> web.Response:
        batch = RegistrationBatch.model_validate_json(await request.read())
        self.calls += 1
        if self.fail_calls > 0:
            self.fail_calls -= 1
            return web.json_response({"title": "Internal Server Error"}, status=500)
        if any(item.registration.index == self.fail_at_index for item in batch.items):
            return web.json_response({"title": "Internal Server Error"}, status=500)
        if batch.items:
            self.batch_sizes.append(len(batch.items))
        answers = [
            RegistrationAnswer(status=201, registered=self.register(item.upload_id, item.registration))
            for item in batch.items
        ]
        await asyncio.sleep(self.batch_delay)
        body = RegistrationBatchAnswer(items=answers).model_dump_json()
        return web.Response(body=body, content_type="application/json")

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/internal/registrations", self.handle_batch)
        app.router.add_get("/healthz", self.healthz)
        return app


async def drain(channel: AbstractChannel, queue_name: str, *, settle: float = 0.3) -> list[AbstractIncomingMessage]:
    """Every message in the queue (acked), until none has arrived for `settle` seconds."""
    queue = await channel.get_queue(queue_name, ensure=False)
    messages: list[AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + settle
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(fail=False, timeout=5)
        if message is None:
            await asyncio.sleep(0.02)
            continue
        await message.ack()
        messages.append(message)
        deadline = asyncio.get_running_loop().time() + settle  # wait `settle` after the last one
    return messages


@dataclass
class IngestRig:
    """The ingest app's surroundings in a unit test: stand-in results, a broker channel, the blob folder."""

    fake: FakeResults
    channel: AbstractChannel
    names: TopologyNames
    blob_dir: Path
    make: Callable[..., Awaitable[TestClient]]


@pytest.fixture(name="rig")
async def rig_fixture(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    base_settings: BaseServiceSettings,
    amqp_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[IngestRig]:
    """Start the stand-in results server; `make(**settings)` builds an ingest client; the topology is deleted after."""
    fake = FakeResults()
    server = await aiohttp_server(fake.app())
    blob_dir = tmp_path / "blobs"

    async def make(**overrides: object) -> TestClient:
        fields: dict[str, object] = {
            "amqp_prefix": amqp_prefix,
            "blob_dir": str(blob_dir),
            "results_url": str(server.make_url("")).rstrip("/"),
        }
        fields.update(overrides)
        return await aiohttp_client(init_app(IngestSettings(**fields)))

    connection = await aio_pika.connect(base_settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        yield IngestRig(fake, channel, TopologyNames(amqp_prefix), blob_dir, make)
        await delete_topology(channel, amqp_prefix)


def blob_files(blob_dir: Path) -> list[Path]:
    """Committed blobs (not staged temporaries)."""
    return [p for p in blob_dir.rglob("*") if p.is_file() and p.parent.name != "tmp"]
