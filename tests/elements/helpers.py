"""What the elements API tests share: request bodies, expected figures, row counts, problem checks, log-ins."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import asyncpg

from common.app.problems import PROBLEM_CONTENT_TYPE
from tests.service_auth import signing

ELEMENTS = "/api/elements/"
PASSWORD = "elements under test"
# The API's own behaviour is under test here, not the per-user rate limit.
NO_RATE_LIMIT = {"rate_limit_per_minute": 1e9, "rate_limit_burst": 1_000_000}


def element(element_id: str, data: list[str] | None = None, device: str = "RX 1") -> dict[str, Any]:
    return {"id": element_id, "data": data if data is not None else ["1 2 3", "4 5 6"], "deviceName": device}


def expected_figures(data: list[str]) -> tuple[float, float, int]:
    """The brief's figures from first principles: mean, mean of value/max, count."""
    values = [float(token) for row in data for token in row.split()]
    top = max(values)
    return sum(values) / len(values), sum(v / top for v in values) / len(values), len(values)


async def count_rows(database_url: str, where: str = "TRUE", *args: Any) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM elements WHERE {where}", *args))
    finally:
        await conn.close()


async def log_in(results_server: Any, role: str = "user") -> tuple[str, dict[str, str]]:
    """A fresh account (made and logged in through results_service's internal API): its id and Authorization."""
    credentials = {"email": f"elements-{uuid.uuid4().hex[:10]}@example.org", "password": PASSWORD}
    async with aiohttp.ClientSession(base_url=str(results_server.make_url("/")), middlewares=signing()) as internal:
        async with internal.post("/internal/users", json={**credentials, "role": role}) as created:
            assert created.status == 201, await created.text()
            user_id = (await created.json())["id"]
        async with internal.post("/internal/auth/login", json=credentials) as login:
            assert login.status == 200, await login.text()
            token = (await login.json())["access_token"]
    return user_id, {"Authorization": f"Bearer {token}"}


async def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = await response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def fields_of(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem["errors"]}
