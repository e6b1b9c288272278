"""The drills' servers: one private RabbitMQ node and one private PostgreSQL cluster for the session.

They are started on free ports once (a node takes seconds to boot) and shared by the drills in turn:
each drill gets a database and an AMQP prefix of its own on them (`rig`), and a drill that stops or
kills a server starts it again before it ends. The machine's shared servers are never touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.drills.rig import Rig, open_rig
from tests.private_postgres import PrivatePostgres
from tests.private_rabbitmq import PrivateRabbitMQ


@pytest.fixture(scope="session")
def private_broker() -> Iterator[PrivateRabbitMQ]:
    with PrivateRabbitMQ() as broker:
        yield broker


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as postgres:
        yield postgres


@pytest.fixture
async def rig(private_broker: PrivateRabbitMQ, private_postgres: PrivatePostgres, tmp_path: Path) -> AsyncIterator[Rig]:
    """The four services of this drill, on a database and AMQP prefix of their own on the private servers."""
    async with open_rig(private_broker, private_postgres, tmp_path / "system") as rig:
        yield rig
