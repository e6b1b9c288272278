"""The surroundings of the ingest tests: the real results_service app (this run's database, the test's own
broker prefix and blob folder) served on a local port, ingest apps pointed at it, a broker channel, and
readers of what they left (queues, blobs, rows)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiohttp.test_utils import TestClient, TestServer

from common.app.secret_settings import BlobKeySettings
from common.messaging.broker import TopologyNames
from common.storage.blobs import BlobStore
from ingest_service.main import init_app as init_ingest
from ingest_service.settings import IngestSettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.pipeline_helpers import eventually, fetch
from tests.queue_helpers import drain, take
from tests.service_auth import INGEST, as_user, signing


def uploader(owner: str, correlation_id: str | None = None) -> dict[str, str]:
    """The headers ingest receives from the gateway: the service token vouching for who uploads (and the request's
    correlation id)."""
    headers = as_user(owner, email=f"{owner}@example.org", client="203.0.113.7", audience=INGEST)
    if correlation_id is not None:
        headers["X-Request-ID"] = correlation_id
    return headers


@dataclass
class IngestRig:
    """ingest's real neighbours in a test: results_service (`results`, a client of its server), the broker, the
    blob folder."""

    results: TestClient
    channel: AbstractChannel
    names: TopologyNames
    blob_dir: Path
    database_url: str
    make: Callable[..., Awaitable[TestClient]]

    async def rows(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Rows of the run's database, as results_service left them."""
        return await fetch(self.database_url, query, *args)

    async def files_of(self, upload_id: str) -> list[asyncpg.Record]:
        """The upload's file rows, by index."""
        return await self.rows('SELECT * FROM upload_files WHERE upload_id = $1 ORDER BY "index"', upload_id)

    async def drain(self, queue_name: str) -> list[AbstractIncomingMessage]:
        """Every message of a queue no consumer reads here (the jobs queues: no processor runs). After ingest's
        answer this is every job it published: it answers only once the broker confirmed each of them."""
        return await drain(await self.channel.get_queue(queue_name, ensure=False))

    async def take(self, queue_name: str, expected: int) -> list[AbstractIncomingMessage]:
        """Wait for the `expected` messages of a queue no consumer reads here (and prove there are no more)."""
        return await take(await self.channel.get_queue(queue_name, ensure=False), expected)

    async def read_blob(self, sha256: str) -> bytes:
        """A stored file's bytes, decrypted with the run's keys."""
        return await BlobStore(self.blob_dir, BlobKeySettings().keyring()).read_bytes(sha256)

    async def wait_status(self, instance_id: str, status: str) -> None:
        """Wait until results_service has moved the instance to `status` (its consumers work asynchronously)."""

        async def reached() -> bool:
            rows = await self.rows("SELECT status FROM instances WHERE id = $1", instance_id)
            return bool(rows) and rows[0]["status"] == status

        await eventually(reached)


@pytest.fixture(name="rig")
async def rig_fixture(
    channel: AbstractChannel,
    results_settings: ResultsSettings,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> AsyncIterator[IngestRig]:
    """Serve results_service; `make(**settings)` builds an ingest client in front of it (same broker prefix,
    delivery limit and blob folder). Both clients sign their calls as a service (`tests.service_auth`); an upload
    names its user with `uploader`. The apps stop (ingest first) before `channel` deletes the topology."""
    server = await aiohttp_server(init_results(results_settings))
    results = await aiohttp_client(server, middlewares=signing())

    async def make(**overrides: object) -> TestClient:
        fields: dict[str, object] = {
            "amqp_prefix": results_settings.amqp_prefix,
            "job_delivery_limit": results_settings.job_delivery_limit,
            "blob_dir": results_settings.blob_dir,
            "results_url": str(server.make_url("")).rstrip("/"),
        }
        fields.update(overrides)
        return await aiohttp_client(init_ingest(IngestSettings(**fields)), middlewares=signing(INGEST))

    names = TopologyNames(results_settings.amqp_prefix)
    yield IngestRig(results, channel, names, Path(results_settings.blob_dir), results_settings.database_url, make)


def blob_files(blob_dir: Path) -> list[Path]:
    """Committed blobs (not staged temporaries)."""
    return [p for p in blob_dir.rglob("*") if p.is_file() and p.parent.name != "tmp"]


async def gateway_with_user(rig: IngestRig, aiohttp_client: Any, **ingest_overrides: Any) -> Any:
    """A gateway in front of the rig's results_service and a new ingest (`ingest_overrides` its settings), as a
    test client that sends a freshly created user's bearer token."""
    from gateway.main import init_app as init_gateway
    from gateway.settings import GatewaySettings
    from tests.account_helpers import PASSWORD, create_user, unique_email

    ingest = await rig.make(**ingest_overrides)
    settings = GatewaySettings(
        results_url=str(rig.results.make_url("")).rstrip("/"),
        ingest_url=str(ingest.make_url("")).rstrip("/"),
        amqp_prefix=rig.names.prefix,
        auth_cache_seconds=0,
    )
    client = await aiohttp_client(init_gateway(settings))
    user = await create_user(rig.results, unique_email("uploader"))
    login = await client.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert login.status == 200, await login.text()
    client.headers = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
    return client
