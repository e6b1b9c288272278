"""Shared fixtures: the real PostgreSQL and RabbitMQ of this machine, isolated per run and per test.

Each test run gets its own database (created, migrated and dropped here); each test that needs
the broker gets its own exchange/queue name prefix. If a service is down the run fails with a
message saying which and how to start it; nothing is skipped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from common.app.settings import BaseServiceSettings
from common.storage.crypto_keys import generate_key_spec
from single_host.preflight import check_services
from tests.feed_helpers import GatewayFactory, events_exchange_for, gateway_factory

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
RUN_ID = uuid.uuid4().hex[:10]

# No secret lives in the repository: each test run makes its own (services that e2e tests start
# inherit them), and passwords are hashed with a cheap argon2 cost so that logins stay fast.
os.environ.setdefault("AUTH_SECRET", secrets.token_urlsafe(48))
os.environ.setdefault("SERVICE_SECRET", secrets.token_urlsafe(48))
os.environ.setdefault("BLOB_KEYS", generate_key_spec("test"))
os.environ.setdefault("PASSWORD_TIME_COST", "1")
os.environ.setdefault("PASSWORD_MEMORY_KIB", "1024")
os.environ.setdefault("PASSWORD_PARALLELISM", "1")
# Apps that tests build from default settings must never consume or publish on a real deployment's
# queues (`make up` may be running): they get this run's own prefix, whose topology is deleted at the end.
SESSION_AMQP_PREFIX = f"test_{RUN_ID}_default"
os.environ.setdefault("AMQP_PREFIX", SESSION_AMQP_PREFIX)
# Every app of the run shares the run's database: one test's reconciler must never republish the
# instances other tests left `received`. The reconciler's tests set their own interval and bound.
os.environ.setdefault("RECONCILE_INTERVAL_SECONDS", str(365 * 24 * 3600))


@pytest.fixture(scope="session")
def base_settings() -> BaseServiceSettings:
    """Settings from the environment (DATABASE_URL, AMQP_URL, ...) with the machine's defaults."""
    return BaseServiceSettings()


@pytest.fixture(scope="session")
def services_up(base_settings: BaseServiceSettings) -> None:
    """Fail the run (not skip) with a clear message when PostgreSQL or RabbitMQ is down."""
    problems = asyncio.run(check_services(base_settings.database_url, base_settings.amqp_url))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def database_url(services_up: None, base_settings: BaseServiceSettings) -> Iterator[str]:
    """A fresh, fully migrated database for this test run, dropped at the end."""
    from results_service.db import apply_migrations, drop_database

    base = base_settings.database_url.rsplit("/", 1)[0]
    url = f"{base}/dicomflow_test_{os.getpid()}_{RUN_ID}"
    asyncio.run(apply_migrations(url))
    yield url
    asyncio.run(drop_database(url))


async def _delete_session_topology(settings: BaseServiceSettings) -> None:
    from common.messaging.broker import delete_topology, open_channel

    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        await delete_topology(await open_channel(connection), SESSION_AMQP_PREFIX)


@pytest.fixture(scope="session", autouse=True)
def session_topology(base_settings: BaseServiceSettings) -> Iterator[None]:
    """Delete the default-prefix topology that apps built in tests may have declared."""
    yield
    with contextlib.suppress(OSError, aio_pika.exceptions.AMQPError):
        asyncio.run(_delete_session_topology(base_settings))


@pytest.fixture
def amqp_prefix(services_up: None) -> str:
    """A unique exchange/queue name prefix for one test."""
    return f"test_{RUN_ID}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def samples_dir() -> Path:
    """The brief's sample files (checked against SHA256SUMS by a test)."""
    return SAMPLES


@pytest.fixture
def sample_01(samples_dir: Path) -> bytes:
    """The brief's first sample file, as bytes."""
    return (samples_dir / "sample-01-dicom.dcm").read_bytes()


@pytest.fixture
def sample_02(samples_dir: Path) -> bytes:
    """The brief's second sample file, as bytes."""
    return (samples_dir / "sample-02-dicom.dcm").read_bytes()


@pytest.fixture
async def events_exchange(amqp_prefix: str) -> AsyncIterator[aio_pika.abc.AbstractExchange]:
    """The prefix's `P.events` exchange, as ingest/processor/results publish to it; deleted afterwards."""
    async for exchange in events_exchange_for(amqp_prefix):
        yield exchange


@pytest.fixture
def make_gateway(aiohttp_client: Any, amqp_prefix: str) -> GatewayFactory:
    """A factory of live-feed gateway replicas (`tests.feed_helpers`)."""
    return gateway_factory(aiohttp_client, amqp_prefix)
