"""Check that PostgreSQL and RabbitMQ answer before set-up or tests, and say how to start them.

`python -m single_host.preflight` exits non-zero with one line per missing service; the test suite
calls :func:`check_services` and fails (never skips) with the same message.
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlsplit

import aio_pika
import asyncpg

from common.app.settings import BaseServiceSettings

HOW_TO_START = {
    "PostgreSQL": "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "(or `systemctl start postgresql`), or point DATABASE_URL at a running server",
    "RabbitMQ": "start it with `rabbitmq-server -detached` (or `systemctl start rabbitmq-server`), "
    "or point AMQP_URL at a running broker",
}


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or ''}".rstrip(":")


async def _check_postgres(url: str) -> str | None:
    parts = urlsplit(url)
    admin = parts._replace(scheme="postgresql", path="/postgres").geturl()
    try:
        conn = await asyncpg.connect(admin, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL is not reachable at {_where(url)} (DATABASE_URL): {exc}; {HOW_TO_START['PostgreSQL']}"
    await conn.close()
    return None


async def _check_rabbitmq(url: str) -> str | None:
    try:
        connection = await asyncio.wait_for(aio_pika.connect(url), timeout=5)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        return f"RabbitMQ is not reachable at {_where(url)} (AMQP_URL): {exc!r}; {HOW_TO_START['RabbitMQ']}"
    await connection.close()
    return None


async def check_services(database_url: str, amqp_url: str) -> list[str]:
    """One message per service that does not answer; empty when both are up."""
    results = await asyncio.gather(_check_postgres(database_url), _check_rabbitmq(amqp_url))
    return [message for message in results if message]


def main() -> None:
    """Exit 0 when PostgreSQL and RabbitMQ answer, else print why and exit 1."""
    settings = BaseServiceSettings()
    problems = asyncio.run(check_services(settings.database_url, settings.amqp_url))
    for problem in problems:
        sys.stderr.write(f"preflight: {problem}\n")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
