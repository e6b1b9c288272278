"""Fixtures of the elements API tests: results_service on a real port, the gateway in front, fresh users.

Every test of this folder starts from an empty elements table.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.elements.helpers import NO_RATE_LIMIT, log_in


@pytest.fixture(autouse=True)
async def empty_elements(database_url: str) -> None:
    """Every test starts with no elements."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("TRUNCATE elements RESTART IDENTITY")
    finally:
        await conn.close()


@pytest.fixture
def results_settings(database_url: str) -> ResultsSettings:
    return ResultsSettings(database_url=database_url)


@pytest.fixture
async def results_server(aiohttp_server: Any, results_settings: ResultsSettings) -> Any:
    return await aiohttp_server(init_results(results_settings))


@pytest.fixture
def gateway_settings(results_server: Any) -> GatewaySettings:
    return GatewaySettings(results_url=str(results_server.make_url("")).rstrip("/"), **NO_RATE_LIMIT)


@pytest.fixture
async def auth(results_server: Any) -> dict[str, str]:
    """The Authorization header of a fresh user."""
    return (await log_in(results_server))[1]


@pytest.fixture
async def client(aiohttp_client: Any, gateway_settings: GatewaySettings, auth: dict[str, str]) -> Any:
    """A logged-in client of the gateway, which proxies to the running results_service."""
    return await aiohttp_client(init_gateway(gateway_settings), headers=auth)


@pytest.fixture
async def others(aiohttp_client: Any, gateway_settings: GatewaySettings, results_server: Any) -> dict[str, Any]:
    """Two more users and an admin, each a client of the same gateway (the `client` user is a third)."""
    clients: dict[str, Any] = {}
    for name, role in (("bob", "user"), ("carol", "user"), ("admin", "admin")):
        user_id, headers = await log_in(results_server, role)
        clients[name] = await aiohttp_client(init_gateway(gateway_settings), headers=headers)
        clients[f"{name}_id"] = user_id
    return clients
