"""PostgreSQL for results_service: create the database, apply migrations, open and close Tortoise.

Migrations are versioned files in `results_service/migrations/` (Tortoise's own migration
framework); they are applied by `python -m results_service.migrate` (run by `make up`/`make test`),
never by `generate_schemas` at start-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp import web
from tortoise import Tortoise
from tortoise.connection import get_connections

from common.app.logs import get_logger

log = get_logger(__name__)

# One Tortoise app per domain: models in `results_service/models/<label>.py`, migrations in
# `results_service/migrations/<label>/`. A new domain adds its label here.
MODEL_APPS: tuple[str, ...] = ("elements", "accounts", "pipeline", "client_logs")


def tortoise_config(database_url: str) -> dict[str, Any]:
    """The Tortoise configuration of results_service for one database URL."""
    return {
        "connections": {"default": database_url},
        "apps": {
            label: {
                "models": [f"results_service.models.{label}"],
                "migrations": f"results_service.migrations.{label}",
                "default_connection": "default",
            }
            for label in MODEL_APPS
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For Tortoise's own CLI only (`python -m tortoise -c results_service.db.TORTOISE_ORM makemigrations`);
# the services build their configuration from their settings.
TORTOISE_ORM = tortoise_config("postgres://postgres@127.0.0.1:5432/dicomflow")


def _split_database(database_url: str) -> tuple[str, str]:
    """(URL of the server's maintenance database `postgres`, name of the target database)."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        raise ValueError(f"DATABASE_URL names no database: {database_url!r}")
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    return admin, name


async def ensure_database(database_url: str) -> bool:
    """Create the database named in `database_url` if it does not exist; True if it was created."""
    admin_url, name = _split_database(database_url)
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await conn.execute(f'CREATE DATABASE "{_quote_ident(name)}"')
        log.info("database_created", database=name)
        return True
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    """Drop the database named in `database_url`, closing other sessions first (tests only)."""
    admin_url, name = _split_database(database_url)
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{_quote_ident(name)}" WITH (FORCE)')
    finally:
        await conn.close()


def _quote_ident(name: str) -> str:
    return name.replace('"', '""')


async def apply_migrations(database_url: str) -> None:
    """Create the database if needed and bring its schema to the newest migration."""
    from tortoise.migrations.api import migrate

    await ensure_database(database_url)
    if not MODEL_APPS:
        return
    try:
        await migrate(config=tortoise_config(database_url))
    finally:
        await Tortoise.close_connections()
    log.info("migrations_applied")


def tortoise_context(database_url: str) -> Any:
    """A cleanup context that opens Tortoise for the app's lifetime and closes it on the way out."""

    async def tortoise_ctx(app: web.Application) -> AsyncIterator[None]:
        await Tortoise.init(config=tortoise_config(database_url))
        # Tortoise keeps its clients in a contextvar; the cleanup may run in another context
        # (pytest-asyncio fixture teardown), where close_connections() would not see them.
        clients = get_connections().all()
        try:
            yield
        finally:
            for client in clients:
                await client.close()
            await Tortoise.close_connections()

    return tortoise_ctx
