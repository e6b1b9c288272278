"""Password changes and admin resets through the real gateway, results_service and PostgreSQL.

results_service runs on a real port; the gateway (`aiohttp_client`) checks tokens with it. Unless a test says
otherwise the gateway keeps results_service's answers about tokens for 30 s, so a token refused at once after
a change proves that the change dropped those answers on this replica (not that a cache expired).
"""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp
import asyncpg
import pytest

from common.auth.tokens import issue_token, verify_token
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.account_helpers import PASSWORD, assert_problem, audit_rows, unique_email
from tests.service_auth import signing

NEW_PASSWORD = "a new and longer passphrase"
MUST_CHANGE = "You must change your password before continuing."


@pytest.fixture
async def results_server(aiohttp_server: Any, database_url: str) -> Any:
    return await aiohttp_server(init_results(ResultsSettings(database_url=database_url)))


@pytest.fixture
async def internal(results_server: Any) -> Any:
    """results_service's internal API, signed as a service (what `dicomflow users` uses)."""
    async with aiohttp.ClientSession(base_url=str(results_server.make_url("/")), middlewares=signing()) as session:
        yield session


@pytest.fixture
async def gateway(aiohttp_client: Any, results_server: Any) -> Any:
    url = str(results_server.make_url("")).rstrip("/")
    return await aiohttp_client(init_gateway(GatewaySettings(results_url=url, auth_cache_seconds=30)))


async def new_user(internal: Any, role: str = "user") -> dict[str, Any]:
    body = {"email": unique_email(role), "password": PASSWORD, "role": role}
    async with internal.post("/internal/users", json=body) as response:
        assert response.status == 201, await response.text()
        user: dict[str, Any] = await response.json()
        return user


async def log_in(gateway: Any, email: str, password: str = PASSWORD) -> Any:
    return await gateway.post("/api/auth/login", json={"email": email, "password": password})


async def token_of(gateway: Any, email: str, password: str = PASSWORD) -> tuple[str, dict[str, Any]]:
    response = await log_in(gateway, email, password)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body["access_token"], body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def change(gateway: Any, token: str, current: str, new: str, **headers: str) -> Any:
    body = {"current_password": current, "new_password": new}
    return await gateway.post("/api/auth/password", json=body, headers={**bearer(token), **headers})


async def user_row(database_url: str, user_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
    finally:
        await conn.close()


async def test_a_user_changes_their_password_and_their_other_tokens_stop_working(
    gateway: Any, internal: Any, database_url: str
) -> None:
    user = await new_user(internal)
    token, _ = await token_of(gateway, user["email"])
    other, _ = await token_of(gateway, user["email"])
    assert (await gateway.get("/api/elements/", headers=bearer(other))).status == 200  # its answer is now cached

    wrong = await change(gateway, token, "not my password!", NEW_PASSWORD, **{"X-Request-ID": f"pw-bad-{user['id']}"})
    problem = await assert_problem(wrong, 403)
    assert problem["detail"] == "The current password is not correct."
    assert "not my password!" not in json.dumps(problem)
    assert (await log_in(gateway, user["email"])).status == 200  # nothing changed

    response = await change(gateway, token, PASSWORD, NEW_PASSWORD, **{"X-Request-ID": f"pw-ok-{user['id']}"})
    assert response.status == 204, await response.text()
    await assert_problem(await log_in(gateway, user["email"]), 401)
    _, fresh = await token_of(gateway, user["email"], NEW_PASSWORD)
    assert fresh["must_change_password"] is False
    assert (await gateway.get("/api/elements/", headers=bearer(token))).status == 200  # the token it came with
    revoked = await assert_problem(await gateway.get("/api/elements/", headers=bearer(other)), 401)
    assert "revoked" in revoked["detail"]

    [failure] = await audit_rows(database_url, "correlation_id = $1", f"pw-bad-{user['id']}")
    [success] = await audit_rows(database_url, "correlation_id = $1", f"pw-ok-{user['id']}")
    assert (failure["action"], failure["outcome"], failure["actor_id"]) == (
        "auth.password_change",
        "failure",
        user["id"],
    )
    assert json.loads(failure["detail"]) == {"reason": "bad_password"}
    assert (success["action"], success["outcome"], success["resource_id"]) == (
        "auth.password_change",
        "success",
        user["id"],
    )
    assert json.loads(success["detail"]) == {"tokens_revoked": 2}  # `other`, and the wrong-password check's login
    row = await user_row(database_url, user["id"])
    assert row["password_changed_at"] is not None and row["must_change_password"] is False


async def test_an_admin_reset_limits_the_next_login_to_changing_the_password(
    gateway: Any, internal: Any, database_url: str
) -> None:
    admin = await new_user(internal, "admin")
    admin_token, _ = await token_of(gateway, admin["email"])
    user = await new_user(internal)
    # Not used before the reset: an answer this replica had cached would stand for up to AUTH_CACHE_SECONDS (the
    # rule of every revocation made elsewhere: a logout on another replica, an account disabled).
    before, _ = await token_of(gateway, user["email"])

    correlation = f"reset-{user['id']}"
    response = await gateway.post(
        f"/api/users/{user['id']}/password-reset",
        json={},
        headers={**bearer(admin_token), "X-Request-ID": correlation},
    )
    assert response.status == 200, await response.text()
    answer = await response.json()
    temporary = answer["temporary_password"]
    assert len(temporary) >= 20 and answer["user"]["must_change_password"] is True
    [audited] = await audit_rows(database_url, "correlation_id = $1", correlation)
    assert (audited["action"], audited["actor_id"], audited["resource_id"]) == (
        "user.password_reset",
        admin["id"],
        user["id"],
    )
    assert json.loads(audited["detail"]) == {"generated": True, "tokens_revoked": 1}
    assert temporary not in audited["detail"]

    # Every token issued before the reset is revoked; the old password no longer logs in.
    await assert_problem(await gateway.get("/api/elements/", headers=bearer(before)), 401)
    await assert_problem(await log_in(gateway, user["email"]), 401)

    # The temporary password logs in, with a token good only for changing the password.
    limited, body = await token_of(gateway, user["email"], temporary)
    assert body["must_change_password"] is True
    for method, path in (("GET", "/api/elements/"), ("GET", "/api/instances"), ("POST", "/api/auth/logout")):
        problem = await assert_problem(await gateway.request(method, path, headers=bearer(limited)), 403)
        assert problem["detail"] == MUST_CHANGE, path
    await assert_problem(await change(gateway, limited, "a wrong temporary one", NEW_PASSWORD), 403)

    assert (await change(gateway, limited, temporary, NEW_PASSWORD)).status == 204
    assert (await gateway.get("/api/elements/", headers=bearer(limited))).status == 200  # full access at once
    assert (await user_row(database_url, user["id"]))["must_change_password"] is False
    await assert_problem(await log_in(gateway, user["email"], temporary), 401)
    _, after = await token_of(gateway, user["email"], NEW_PASSWORD)
    assert after["must_change_password"] is False


async def test_an_admin_may_choose_the_temporary_password(gateway: Any, internal: Any) -> None:
    admin_token, _ = await token_of(gateway, (await new_user(internal, "admin"))["email"])
    user = await new_user(internal)
    chosen = "chosen by the admin 42"
    response = await gateway.post(
        f"/api/users/{user['id']}/password-reset", json={"password": chosen}, headers=bearer(admin_token)
    )
    assert response.status == 200
    answer = await response.json()
    assert answer["temporary_password"] is None and chosen not in json.dumps(answer)
    _, body = await token_of(gateway, user["email"], chosen)
    assert body["must_change_password"] is True


async def test_only_admins_reset_passwords_and_only_of_existing_accounts(gateway: Any, internal: Any) -> None:
    user = await new_user(internal)
    user_token, _ = await token_of(gateway, user["email"])
    path = f"/api/users/{user['id']}/password-reset"
    problem = await assert_problem(await gateway.post(path, json={}, headers=bearer(user_token)), 403)
    assert "admin" in problem["detail"]
    admin_token, _ = await token_of(gateway, (await new_user(internal, "admin"))["email"])
    for user_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        missing = f"/api/users/{user_id}/password-reset"
        await assert_problem(await gateway.post(missing, json={}, headers=bearer(admin_token)), 404)
    short = await assert_problem(await gateway.post(path, json={"password": "short"}, headers=bearer(admin_token)), 422)
    assert short["errors"] == [
        {"field": "password", "message": "The password must have at least 12 characters (this one has 5)."}
    ]
    assert (await log_in(gateway, user["email"])).status == 200  # untouched


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"current_password": PASSWORD, "new_password": "too short"},
            "new_password",
            "The password must have at least 12 characters (this one has 9).",
        ),
        (
            {"current_password": PASSWORD, "new_password": PASSWORD},
            "(body)",
            "The new password must differ from the current one.",
        ),
        ({"new_password": NEW_PASSWORD}, "current_password", "Field required"),
    ],
)
async def test_a_change_that_breaks_the_rules_is_a_422_in_words(
    gateway: Any, internal: Any, body: dict[str, str], field: str, message: str
) -> None:
    user = await new_user(internal)
    token, _ = await token_of(gateway, user["email"])
    response = await gateway.post("/api/auth/password", json=body, headers=bearer(token))
    problem = await assert_problem(response, 422)
    assert problem["errors"] == [{"field": field, "message": message}]
    assert PASSWORD not in json.dumps(problem)


async def test_a_change_needs_a_token_that_is_still_good(gateway: Any, internal: Any, results_server: Any) -> None:
    user = await new_user(internal)
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    await assert_problem(await gateway.post("/api/auth/password", json=body), 401)
    await assert_problem(await change(gateway, "x.y.z", PASSWORD, NEW_PASSWORD), 401)
    token, _ = await token_of(gateway, user["email"])
    assert (await gateway.post("/api/auth/logout", headers=bearer(token))).status == 204
    problem = await assert_problem(await change(gateway, token, PASSWORD, NEW_PASSWORD), 401)
    assert "revoked" in problem["detail"]
    token, _ = await token_of(gateway, user["email"])
    async with internal.patch(f"/internal/users/{user['id']}", json={"disabled": True}) as response:
        assert response.status == 200
    problem = await assert_problem(await change(gateway, token, PASSWORD, NEW_PASSWORD), 401)
    assert "disabled" in problem["detail"]
    async with internal.patch(f"/internal/users/{user['id']}", json={"disabled": False}) as response:
        assert response.status == 200
    assert (await log_in(gateway, user["email"])).status == 200  # the password never changed


async def test_a_change_with_a_forged_token_is_refused_and_changes_nothing(gateway: Any, internal: Any) -> None:
    user = await new_user(internal)
    token, _ = await token_of(gateway, user["email"])
    claims = verify_token(token, os.environ["AUTH_SECRET"])
    forged, _ = issue_token(
        "another-secret-" + "x" * 40, user_id=claims.sub, email=claims.email, role=claims.role, ttl_seconds=600
    )
    problem = await assert_problem(await change(gateway, forged, PASSWORD, NEW_PASSWORD), 401)
    assert "signature" in problem["detail"]
    assert (await log_in(gateway, user["email"])).status == 200
