"""Shared helpers of the accounts, audit and gateway-auth tests: apps, users and audit rows."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from common.identity import ROLE_HEADER, USER_HEADER
from common.problems import PROBLEM_CONTENT_TYPE

PASSWORD = "correct horse battery staple"
ADMIN_HEADERS = {USER_HEADER: "admin-under-test", ROLE_HEADER: "admin"}


def unique_email(prefix: str = "user") -> str:
    """A fresh email per test, so tests share the run's database without seeing each other."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}@Example.org"


async def create_user(client: Any, email: str, *, role: str = "user", password: str = PASSWORD) -> dict[str, Any]:
    """Create an account through the operators' internal API."""
    response = await client.post("/internal/users", json={"email": email, "password": password, "role": role})
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def audit_rows(database_url: str, where: str, *args: Any) -> list[asyncpg.Record]:
    """audit_events rows matching a SQL condition, oldest first."""
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(f"SELECT * FROM audit_events WHERE {where} ORDER BY id", *args))
    finally:
        await conn.close()


async def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """The response is a problem+json document with this status."""
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = await response.json()
    assert body["status"] == status and body["title"]
    return body
