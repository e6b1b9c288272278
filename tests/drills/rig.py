"""A drill's system: the four services as processes on the private RabbitMQ node and PostgreSQL cluster.

The servers are started once by the caller (the session's fixtures, or `make drills`) and shared
by the drills in turn; each drill's system gets a database, an AMQP prefix and a blob folder of its
own, so every row and message it sees comes from its own batch. The reconciler runs every second
here (`DRILL_ENV`) so that a lost message costs seconds rather than the production bounds; the
processor's job timeout is short to keep the reconciler's bound for `queued`/`processing` above it
times the delivery limit, as the settings' documentation asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from common.storage.crypto_keys import generate_key_spec
from single_host.processes import RunningSystem
from tests.private_postgres import PrivatePostgres
from tests.private_rabbitmq import PrivateRabbitMQ

DRILL_ENV = {
    "RECONCILE_INTERVAL_SECONDS": "1",
    "RECONCILE_AFTER_SECONDS": "5",
    "RECONCILE_UNFINISHED_AFTER_SECONDS": "30",
    "PROCESSOR_JOB_TIMEOUT": "5",
    # The drills count faults, not the per-user rate limit (a 429 would be retried anyway).
    "RATE_LIMIT_PER_MINUTE": "1000000",
    "RATE_LIMIT_BURST": "100000",
}


def drill_environment() -> dict[str, str]:
    """The services' environment of a drill's system: DRILL_ENV and secrets of its own."""
    return {
        **DRILL_ENV,
        "AUTH_SECRET": secrets.token_urlsafe(48),
        "SERVICE_SECRET": secrets.token_urlsafe(48),
        "BLOB_KEYS": generate_key_spec("drill"),
        "PASSWORD_TIME_COST": "1",
        "PASSWORD_MEMORY_KIB": "1024",
        "PASSWORD_PARALLELISM": "1",
    }


@dataclass
class Rig:
    """A drill's system and the servers under it."""

    system: RunningSystem
    broker: PrivateRabbitMQ
    postgres: PrivatePostgres
    database_url: str


@contextlib.asynccontextmanager
async def open_rig(broker: PrivateRabbitMQ, postgres: PrivatePostgres, folder: Path) -> AsyncIterator[Rig]:
    """A system of its own (database, AMQP prefix, blob folder under `folder`) on the private servers, running;
    stopped (its topology deleted) on the way out."""
    database_url = await postgres.create_database(f"drill_{uuid.uuid4().hex[:10]}")
    folder.mkdir(parents=True)
    system = RunningSystem(database_url, folder, {**drill_environment(), "AMQP_URL": broker.url})
    try:
        await asyncio.to_thread(system.start_all)
        yield Rig(system, broker, postgres, database_url)
    finally:
        # A drill cut off mid-outage leaves a server down: the next drill needs it (and stop_all the broker).
        if not broker.running:
            await asyncio.to_thread(broker.start)
        if not postgres.running:
            await asyncio.to_thread(postgres.start)
        await asyncio.to_thread(system.stop_all)
