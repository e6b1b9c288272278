"""Shared helpers of the accounts, audit and gateway-auth tests: apps, users and audit rows."""

from __future__ import annotations

import os
import uuid
from typing import Any

import asyncpg

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.auth.tokens import Role, issue_token
from tests.service_auth import as_service, as_user

PASSWORD = "correct horse battery staple"
ADMIN_ID = "admin-under-test"


def admin_headers() -> dict[str, str]:
    """A request of an admin as the gateway forwards it to results_service."""
    return as_user(ADMIN_ID, Role.ADMIN)


def unique_email(prefix: str = "user") -> str:
    """A fresh email per test, so tests share the run's database without seeing each other."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}@Example.org"


async def create_user(client: Any, email: str, *, role: str = "user", password: str = PASSWORD) -> dict[str, Any]:
    """Create an account through the operators' internal API (signed as a service, like `dicomflow users`)."""
    request = {"email": email, "password": password, "role": role}
    response = await client.post("/internal/users", json=request, headers=as_service())
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


async def insert_api_user(database_url: str, *, role: str = "user", secret: str | None = None) -> dict[str, str]:
    """A user row written straight to the database and a token for it (for tests of APIs behind the gateway).

    Returns `{"id", "email", "role", "token", "Authorization"}`; pass
    `headers={"Authorization": user["Authorization"]}` to `aiohttp_client(...)` or to each request.
    `secret` must be the AUTH_SECRET the gateway under test was given (default: the run's own).
    """
    user_id = str(uuid.uuid4())
    email = unique_email(role).lower()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO users (id, email, password_hash, role, disabled, created_at)"
            " VALUES ($1, $2, $3, $4, FALSE, now())",
            uuid.UUID(user_id),
            email,
            "$argon2id$v=19$m=1024,t=1,p=1$bm90LXVzZWQ$bm90LXVzZWQtZm9yLWxvZ2lu",
            role,
        )
    finally:
        await conn.close()
    token, _ = issue_token(
        secret or os.environ["AUTH_SECRET"], user_id=user_id, email=email, role=Role(role), ttl_seconds=3600
    )
    return {"id": user_id, "email": email, "role": role, "token": token, "Authorization": f"Bearer {token}"}
