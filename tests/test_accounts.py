"""Accounts in results_service: creation, login (audited both ways), users API, logout and introspection."""

from __future__ import annotations

import json
from typing import Any, Literal

import asyncpg
import pytest
from argon2 import PasswordHasher
from structlog.testing import capture_logs

from common.auth.tokens import Role, verify_token
from results_service.keys import passwords_key
from results_service.main import init_app
from results_service.settings import ResultsSettings
from tests.account_helpers import (
    ADMIN_ID,
    PASSWORD,
    admin_headers,
    assert_problem,
    audit_rows,
    create_user,
    unique_email,
)
from tests.service_auth import as_service, as_user, signing


@pytest.fixture
def settings(database_url: str) -> ResultsSettings:
    return ResultsSettings(database_url=database_url)


@pytest.fixture
async def client(aiohttp_client: Any, settings: ResultsSettings) -> Any:
    """results_service, called as a service of the deployment (the internal routes' callers)."""
    return await aiohttp_client(init_app(settings), middlewares=signing())


async def login(client: Any, email: str, password: str = PASSWORD, **headers: str) -> Any:
    return await client.post("/internal/auth/login", json={"email": email, "password": password}, headers=headers)


async def test_created_user_is_stored_with_an_argon2id_hash_and_a_lower_case_email(
    client: Any, database_url: str
) -> None:
    email = unique_email()
    user = await create_user(client, email)
    assert user["email"] == email.lower() and user["role"] == "user" and user["disabled"] is False
    assert PASSWORD not in json.dumps(user) and not {"password", "password_hash"} & set(user)
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM users WHERE id = $1", user["id"])
    finally:
        await conn.close()
    assert row["email"] == email.lower()
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]


async def test_same_email_in_another_case_is_a_409(client: Any) -> None:
    email = unique_email()
    await create_user(client, email)
    response = await client.post("/internal/users", json={"email": email.upper(), "password": PASSWORD})
    await assert_problem(response, 409)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@b.org", "password": "short"}, "password"),
        ({"email": "a@b.org", "password": PASSWORD, "role": "root"}, "role"),
        ({"email": "a@b.org", "password": PASSWORD, "is_admin": True}, "is_admin"),
    ],
)
async def test_invalid_user_bodies_are_422_naming_the_field(client: Any, body: dict[str, Any], field: str) -> None:
    problem = await assert_problem(await client.post("/internal/users", json=body), 422)
    assert [error["field"] for error in problem["errors"]] == [field]
    assert PASSWORD not in json.dumps(problem)


async def test_login_returns_a_bearer_token_and_audits_the_success(
    client: Any, settings: ResultsSettings, database_url: str
) -> None:
    email = unique_email()
    user = await create_user(client, email, role="admin")
    response = await login(
        client, email.upper(), **{"X-Request-ID": "corr-login-ok", **as_service(client="203.0.113.9")}
    )
    assert response.status == 200
    body = await response.json()
    assert body["token_type"] == "bearer" and body["must_change_password"] is False
    assert set(body) == {"access_token", "token_type", "expires_at", "must_change_password"}
    claims = verify_token(body["access_token"], settings.auth_secret.get_secret_value())
    assert claims.sub == user["id"] and claims.email == email.lower() and claims.role is Role.ADMIN
    assert claims.exp.isoformat().replace("+00:00", "Z") == body["expires_at"]
    assert (claims.exp - claims.iat).total_seconds() == settings.token_ttl_seconds
    [row] = await audit_rows(database_url, "correlation_id = $1", "corr-login-ok")
    assert (row["action"], row["outcome"], row["actor_id"]) == ("auth.login", "success", user["id"])
    assert row["actor_email"] == email.lower() and row["client"] == "203.0.113.9"


@pytest.mark.parametrize("case", ["bad_password", "unknown_email", "disabled"])
async def test_every_failed_login_is_the_same_401_and_is_audited_with_its_reason(
    client: Any, database_url: str, case: str
) -> None:
    email = unique_email()
    user = await create_user(client, email)
    if case == "disabled":
        response = await client.patch(f"/internal/users/{user['id']}", json={"disabled": True})
        assert response.status == 200
    attempt_email = unique_email("nobody") if case == "unknown_email" else email
    password = "wrong password!!" if case == "bad_password" else PASSWORD
    correlation = f"corr-{case}-{user['id']}"
    with capture_logs() as logs:
        response = await login(client, attempt_email, password, **{"X-Request-ID": correlation})
    problem = await assert_problem(response, 401)
    assert problem["detail"] == "Invalid email or password."
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="dicomflow"'
    [row] = await audit_rows(database_url, "correlation_id = $1", correlation)
    assert (row["action"], row["outcome"]) == ("auth.login", "failure")
    assert json.loads(row["detail"]) == {"reason": case}
    assert row["actor_email"] == attempt_email.lower()
    assert row["actor_id"] == (None if case == "unknown_email" else user["id"])
    assert password not in repr(logs)


async def test_unknown_email_still_runs_a_full_password_check(client: Any) -> None:
    passwords = client.app[passwords_key]
    calls: list[str] = []

    class CountingHasher(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            calls.append(str(hash))
            return super().verify(hash, password)

    passwords._hasher = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    response = await login(client, unique_email("ghost"))
    assert response.status == 401
    assert calls == [passwords._dummy]


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b'{"email": "a@b.org"}', 422), (b'{"email":"a@b.org","password":"x","x":1}', 422)],
)
async def test_malformed_login_bodies_are_problems(client: Any, body: bytes, status: int) -> None:
    response = await client.post("/internal/auth/login", data=body, headers={"Content-Type": "application/json"})
    await assert_problem(response, status)


async def test_login_upgrades_a_hash_made_with_an_older_cost(
    aiohttp_client: Any, database_url: str, client: Any
) -> None:
    email = unique_email()
    await create_user(client, email)
    stronger = ResultsSettings(database_url=database_url, password_time_cost=2)
    other = await aiohttp_client(init_app(stronger), middlewares=signing())
    assert (await login(other, email)).status == 200
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE email = $1", email.lower())
    finally:
        await conn.close()
    assert ",t=2," in stored
    assert (await login(other, email)).status == 200


async def test_users_api_needs_the_admin_role(client: Any) -> None:
    headers = as_user("some-user")
    await assert_problem(await client.get("/api/users", headers=headers), 403)
    await assert_problem(await client.post("/api/users", json={}, headers=headers), 403)
    await assert_problem(await client.patch("/api/users/x", json={"role": "admin"}, headers=headers), 403)
    await assert_problem(await client.get("/api/users"), 401)  # a service's token names no user: no default one


async def test_admin_creates_lists_promotes_and_disables_users_with_audit_rows(client: Any, database_url: str) -> None:
    email = unique_email()
    response = await client.post(
        "/api/users", json={"email": email, "password": PASSWORD}, headers={**admin_headers(), "X-Request-ID": "c-u1"}
    )
    assert response.status == 201
    user = await response.json()
    listing = await (await client.get("/api/users", headers=admin_headers())).json()
    assert user in listing["items"] and listing["total"] == len(listing["items"])
    response = await client.patch(
        f"/api/users/{user['id']}",
        json={"role": "admin", "disabled": True},
        headers={**admin_headers(), "X-Request-ID": "c-u2"},
    )
    assert response.status == 200
    changed = await response.json()
    assert changed["role"] == "admin" and changed["disabled"] is True
    [created] = await audit_rows(database_url, "correlation_id = 'c-u1'")
    [updated] = await audit_rows(database_url, "correlation_id = 'c-u2'")
    assert (created["action"], created["actor_id"], created["resource_id"]) == (
        "user.create",
        ADMIN_ID,
        user["id"],
    )
    assert updated["action"] == "user.update" and json.loads(updated["detail"]) == {"role": "admin", "disabled": True}


@pytest.mark.parametrize("user_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
async def test_patching_a_missing_user_is_404(client: Any, user_id: str) -> None:
    await assert_problem(await client.patch(f"/internal/users/{user_id}", json={"disabled": True}), 404)


async def test_empty_patch_is_422(client: Any) -> None:
    user = await create_user(client, unique_email())
    await assert_problem(await client.patch(f"/internal/users/{user['id']}", json={}), 422)


async def test_the_last_active_admin_cannot_be_demoted_or_disabled(client: Any, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE users SET role = 'user' WHERE role = 'admin'")
    finally:
        await conn.close()
    admin = await create_user(client, unique_email("admin"), role="admin")
    await assert_problem(await client.patch(f"/internal/users/{admin['id']}", json={"role": "user"}), 409)
    await assert_problem(await client.patch(f"/internal/users/{admin['id']}", json={"disabled": True}), 409)
    second = await create_user(client, unique_email("admin"), role="admin")
    assert (await client.patch(f"/internal/users/{admin['id']}", json={"disabled": True})).status == 200
    await assert_problem(await client.patch(f"/internal/users/{second['id']}", json={"role": "user"}), 409)


async def test_logout_revokes_the_token_and_introspection_reports_it(
    client: Any, settings: ResultsSettings, database_url: str
) -> None:
    email = unique_email()
    await create_user(client, email)
    token = (await (await login(client, email)).json())["access_token"]
    claims = verify_token(token, settings.auth_secret.get_secret_value())
    ask = {"jti": claims.jti, "sub": claims.sub}
    before = await (await client.post("/internal/auth/introspect", json=ask)).json()
    assert before == {
        "active": True,
        "user_id": claims.sub,
        "email": email.lower(),
        "role": "user",
        "reason": None,
        "must_change_password": False,
    }
    body = {**ask, "expires_at": claims.exp.isoformat()}
    response = await client.post(
        "/internal/auth/logout", json=body, headers={**as_user(claims.sub), "X-Request-ID": f"lo-{claims.jti}"}
    )
    assert response.status == 204
    assert (await client.post("/internal/auth/logout", json=body)).status == 204  # idempotent
    after = await (await client.post("/internal/auth/introspect", json=ask)).json()
    assert after["active"] is False and "revoked" in after["reason"]
    [row] = await audit_rows(database_url, "correlation_id = $1", f"lo-{claims.jti}")
    assert (row["action"], row["actor_id"]) == ("auth.logout", claims.sub)


async def test_introspection_refuses_disabled_and_unknown_users_and_reports_the_current_role(
    client: Any, settings: ResultsSettings
) -> None:
    email = unique_email()
    user = await create_user(client, email)
    claims = verify_token(
        (await (await login(client, email)).json())["access_token"], settings.auth_secret.get_secret_value()
    )
    ask = {"jti": claims.jti, "sub": claims.sub}
    await client.patch(f"/internal/users/{user['id']}", json={"role": "admin"})
    assert (await (await client.post("/internal/auth/introspect", json=ask)).json())["role"] == "admin"
    await client.patch(f"/internal/users/{user['id']}", json={"disabled": True})
    disabled = await (await client.post("/internal/auth/introspect", json=ask)).json()
    assert disabled["active"] is False and "disabled" in disabled["reason"]
    for sub in ("00000000-0000-0000-0000-000000000000", "nope"):
        unknown = await (await client.post("/internal/auth/introspect", json={"jti": "j", "sub": sub})).json()
        assert unknown["active"] is False


async def test_login_logs_carry_neither_password_nor_token(client: Any) -> None:
    email = unique_email()
    await create_user(client, email)
    with capture_logs() as logs:
        token = (await (await login(client, email)).json())["access_token"]
        await login(client, email, "wrong password!!")
    text = repr(logs)
    assert PASSWORD not in text and "wrong password!!" not in text and token not in text
    assert any(entry["event"] == "login_succeeded" for entry in logs)


async def test_bootstrap_creates_the_first_admin_once_and_prints_a_generated_password(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from results_service import bootstrap_admin

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE users SET disabled = TRUE WHERE role = 'admin'")
        email = unique_email("first-admin").lower()
        settings = ResultsSettings(database_url=database_url, admin_email=email)
        created = await bootstrap_admin.ensure_admin(settings)
        assert created is not None and created[0] == email and created[1] is not None and len(created[1]) >= 20
        row = await conn.fetchrow("SELECT role, disabled, password_hash FROM users WHERE email = $1", email)
        assert (row["role"], row["disabled"]) == ("admin", False) and created[1] not in row["password_hash"]
        assert await bootstrap_admin.ensure_admin(settings) is None  # idempotent
        given = ResultsSettings(database_url=database_url, admin_email=unique_email("x"), admin_password=PASSWORD)
        assert await bootstrap_admin.ensure_admin(given) is None
    finally:
        await conn.close()
