"""The gateway's authentication against a real results_service and PostgreSQL.

results_service runs on a real port; the gateway (`aiohttp_client`) verifies tokens, asks
results_service whether they are still active, rate-limits, size-limits and forwards the
verified identity in a service token. An `/api/echo` route on results_service answers the caller it believes in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from common.auth.identity import request_caller
from common.auth.tokens import Role, issue_token
from gateway.authenticator import Authenticator
from gateway.keys import authenticator_key
from gateway.main import init_app as init_gateway
from gateway.proxy import forward_to
from gateway.settings import GatewaySettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.account_helpers import PASSWORD, assert_problem, audit_rows, unique_email
from tests.fake_clock import FakeClock
from tests.service_auth import signing


async def echo_caller(request: web.Request) -> web.Response:
    """The caller results_service takes the request to come from (its service token's identity)."""
    caller = request_caller(request)
    return web.json_response({"user_id": caller.user_id, "role": caller.role.value, "email": caller.email})


@pytest.fixture
async def results_server(aiohttp_server: Any, database_url: str) -> Any:
    app = init_results(ResultsSettings(database_url=database_url))
    app.router.add_get("/api/echo", echo_caller)
    return await aiohttp_server(app)


@pytest.fixture
async def internal(results_server: Any) -> Any:
    """A client of results_service's internal API (what operators and the CLI use, signed as a service)."""
    async with aiohttp.ClientSession(base_url=str(results_server.make_url("/")), middlewares=signing()) as session:
        yield session


def gateway_settings(results_server: Any, **overrides: Any) -> GatewaySettings:
    url = str(results_server.make_url("")).rstrip("/")
    return GatewaySettings(results_url=url, **{"auth_cache_seconds": 0, **overrides})


async def make_gateway(
    aiohttp_client: Any, results_server: Any, *, clock: FakeClock | None = None, **overrides: Any
) -> Any:
    settings = gateway_settings(results_server, **overrides)
    app = init_gateway(settings)
    if clock is not None:
        app[authenticator_key] = Authenticator(settings, settings.results_url, clock=clock)
    app.router.add_get("/api/echo", forward_to(str(results_server.make_url("")).rstrip("/"), service="results_service"))
    return await aiohttp_client(app)


@pytest.fixture
async def gateway(aiohttp_client: Any, results_server: Any) -> Any:
    return await make_gateway(aiohttp_client, results_server)


async def new_user(internal: Any, role: str = "user") -> dict[str, Any]:
    email = unique_email(role)
    async with internal.post("/internal/users", json={"email": email, "password": PASSWORD, "role": role}) as r:
        assert r.status == 201
        body: dict[str, Any] = await r.json()
        return body


async def token_for(gateway: Any, user: dict[str, Any]) -> str:
    response = await gateway.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert response.status == 200, await response.text()
    token: str = (await response.json())["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_401(response: Any, error: str | None = "invalid_token") -> dict[str, Any]:
    problem = await assert_problem(response, 401)
    challenge = 'Bearer realm="dicomflow"' + (f', error="{error}"' if error else "")
    assert response.headers["WWW-Authenticate"] == challenge
    return problem


async def test_api_routes_need_a_token(gateway: Any) -> None:
    for method, path in (
        ("GET", "/api/elements/"),
        ("POST", "/api/elements/"),
        ("GET", "/api/users"),
        ("GET", "/api/audit"),
    ):
        problem = await assert_401(await gateway.request(method, path), error=None)
        assert "Bearer" in problem["detail"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "token abc"])
async def test_malformed_authorization_headers_are_401(gateway: Any, header: str) -> None:
    await assert_401(await gateway.get("/api/elements/", headers={"Authorization": header}), error="invalid_request")


async def test_public_routes_need_no_token(gateway: Any) -> None:
    for path in ("/healthz", "/metrics"):
        assert (await gateway.get(path)).status == 200, path
    for path in ("/api/openapi.json", "/api/docs", "/api/asyncapi.json", "/"):
        assert (await gateway.get(path)).status != 401, path


async def test_forged_expired_and_garbage_tokens_are_401(gateway: Any, internal: Any) -> None:
    user = await new_user(internal)
    secret = gateway.app[authenticator_key]
    real_secret = secret.settings.auth_secret.get_secret_value()
    forged, _ = issue_token("f" * 48, user_id=user["id"], email=user["email"], role=Role.ADMIN, ttl_seconds=600)
    old = datetime.now(UTC) - timedelta(hours=2)
    expired, _ = issue_token(
        real_secret, user_id=user["id"], email=user["email"], role=Role.USER, ttl_seconds=60, clock=old.timestamp
    )
    for token, reason in ((forged, "signature"), (expired, "expired"), ("x.y.z", "malformed")):
        problem = await assert_401(await gateway.get("/api/elements/", headers=bearer(token)))
        assert reason in problem["detail"] and token not in problem["detail"]


async def test_a_token_verified_before_is_still_refused_once_it_expires(
    aiohttp_client: Any, results_server: Any, internal: Any
) -> None:
    """Verified claims are kept per token, but never past the token's expiry (leeway included)."""
    clock = FakeClock()
    gateway = await make_gateway(aiohttp_client, results_server, clock=clock)
    user = await new_user(internal)
    authenticator = gateway.app[authenticator_key]
    secret = authenticator.settings.auth_secret.get_secret_value()
    token, _ = issue_token(secret, user_id=user["id"], email=user["email"], role=Role.USER, ttl_seconds=60)
    assert (await gateway.get("/api/elements/", headers=bearer(token))).status == 200
    clock.advance(59 + authenticator.settings.token_leeway_seconds)
    assert (await gateway.get("/api/elements/", headers=bearer(token))).status == 200
    clock.advance(2)
    problem = await assert_401(await gateway.get("/api/elements/", headers=bearer(token)))
    assert "expired" in problem["detail"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    await assert_401(await gateway.get("/api/elements/", headers=bearer(tampered)))


async def test_results_service_answer_about_a_token_is_kept_for_auth_cache_seconds_then_asked_again(
    aiohttp_client: Any, results_server: Any, internal: Any
) -> None:
    clock = FakeClock()
    gateway = await make_gateway(aiohttp_client, results_server, clock=clock, auth_cache_seconds=30)
    user = await new_user(internal)
    token = await token_for(gateway, user)
    assert (await gateway.get("/api/echo", headers=bearer(token))).status == 200
    async with internal.patch(f"/internal/users/{user['id']}", json={"disabled": True}) as r:
        assert r.status == 200
    clock.advance(29)
    assert (await gateway.get("/api/echo", headers=bearer(token))).status == 200  # the cached answer
    clock.advance(2)
    problem = await assert_401(await gateway.get("/api/echo", headers=bearer(token)))
    assert "disabled" in problem["detail"]


async def test_valid_token_forwards_the_verified_identity_and_ignores_client_identity_headers(
    gateway: Any, internal: Any
) -> None:
    user = await new_user(internal)
    spoof = {
        "X-Authenticated-User": "someone-else",
        "X-Authenticated-Role": "admin",
        "X-Authenticated-Email": "boss@example.org",
    }
    response = await gateway.get("/api/echo", headers={**bearer(await token_for(gateway, user)), **spoof})
    assert response.status == 200
    assert await response.json() == {"user_id": user["id"], "role": "user", "email": user["email"]}


async def test_role_comes_from_the_account_not_from_the_token(gateway: Any, internal: Any) -> None:
    user = await new_user(internal)
    token = await token_for(gateway, user)
    await assert_problem(await gateway.get("/api/users", headers=bearer(token)), 403)
    async with internal.patch(f"/internal/users/{user['id']}", json={"role": "admin"}) as r:
        assert r.status == 200
    listing = await gateway.get("/api/users", headers=bearer(token))
    assert listing.status == 200
    assert user["id"] in {item["id"] for item in (await listing.json())["items"]}


async def test_disabled_account_is_refused_at_once(gateway: Any, internal: Any) -> None:
    user = await new_user(internal)
    token = await token_for(gateway, user)
    assert (await gateway.get("/api/echo", headers=bearer(token))).status == 200
    async with internal.patch(f"/internal/users/{user['id']}", json={"disabled": True}) as r:
        assert r.status == 200
    problem = await assert_401(await gateway.get("/api/echo", headers=bearer(token)))
    assert "disabled" in problem["detail"]


async def test_logout_revokes_the_token_even_with_a_cache(
    aiohttp_client: Any, results_server: Any, internal: Any, database_url: str
) -> None:
    gateway = await make_gateway(aiohttp_client, results_server, auth_cache_seconds=60)
    user = await new_user(internal)
    token = await token_for(gateway, user)
    assert (await gateway.get("/api/echo", headers=bearer(token))).status == 200
    response = await gateway.post("/api/auth/logout", headers={**bearer(token), "X-Request-ID": "lo-" + user["id"]})
    assert response.status == 204
    problem = await assert_401(await gateway.get("/api/echo", headers=bearer(token)))
    assert "revoked" in problem["detail"]
    [row] = await audit_rows(database_url, "correlation_id = $1", "lo-" + user["id"])
    assert (row["action"], row["actor_id"]) == ("auth.logout", user["id"])
    await assert_401(await gateway.post("/api/auth/logout"), error=None)


async def test_login_failures_through_the_gateway_are_401_and_audited_with_the_client_address(
    gateway: Any, internal: Any, database_url: str
) -> None:
    user = await new_user(internal)
    response = await gateway.post(
        "/api/auth/login",
        json={"email": user["email"], "password": "wrong!wrong!"},
        headers={"X-Request-ID": "lf-" + user["id"]},
    )
    await assert_401(response, error=None)
    [row] = await audit_rows(database_url, "correlation_id = $1", "lf-" + user["id"])
    assert (row["action"], row["outcome"], row["client"]) == ("auth.login", "failure", "127.0.0.1")
    await assert_problem(
        await gateway.post("/api/auth/login", data=b"{", headers={"Content-Type": "application/json"}), 400
    )


async def test_per_user_rate_limit_answers_429_with_retry_after(
    aiohttp_client: Any, results_server: Any, internal: Any
) -> None:
    gateway = await make_gateway(aiohttp_client, results_server, rate_limit_per_minute=6, rate_limit_burst=2)
    first, second = await new_user(internal), await new_user(internal)
    token = await token_for(gateway, first)
    assert [(await gateway.get("/api/echo", headers=bearer(token))).status for _ in range(2)] == [200, 200]
    limited = await gateway.get("/api/echo", headers=bearer(token))
    await assert_problem(limited, 429)
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    other = await token_for(gateway, second)
    assert (await gateway.get("/api/echo", headers=bearer(other))).status == 200  # buckets are per user


async def test_login_attempts_are_rate_limited_per_client(aiohttp_client: Any, results_server: Any) -> None:
    gateway = await make_gateway(
        aiohttp_client, results_server, login_rate_limit_per_minute=1, login_rate_limit_burst=2
    )
    body = {"email": unique_email(), "password": "whatever-whatever"}
    assert [(await gateway.post("/api/auth/login", json=body)).status for _ in range(2)] == [401, 401]
    limited = await gateway.post("/api/auth/login", json=body)
    await assert_problem(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1


async def test_oversized_bodies_are_413_before_authentication(aiohttp_client: Any, results_server: Any) -> None:
    gateway = await make_gateway(aiohttp_client, results_server, max_request_bytes=2048)
    await assert_problem(await gateway.post("/api/elements/", data=b"x" * 4096), 413)
    await assert_problem(
        await gateway.post(
            "/api/auth/login", data=b"{" + b" " * 20000 + b"}", headers={"Content-Type": "application/json"}
        ),
        413,
    )


async def test_token_checks_fail_closed_when_results_service_is_down(
    aiohttp_client: Any, results_server: Any, internal: Any
) -> None:
    gateway = await make_gateway(aiohttp_client, results_server)
    token = await token_for(gateway, await new_user(internal))
    await results_server.close()
    await assert_problem(await gateway.get("/api/echo", headers=bearer(token)), 503)


async def test_no_token_or_password_in_any_log_line(gateway: Any, internal: Any) -> None:
    user = await new_user(internal)
    with capture_logs() as logs:
        token = await token_for(gateway, user)
        await gateway.get("/api/echo", headers=bearer(token))
        await gateway.get("/api/echo", headers=bearer(token + "x"))
        await gateway.post("/api/auth/logout", headers=bearer(token))
    text = json.dumps(logs, default=str)
    assert token not in text and token.split(".")[2] not in text and PASSWORD not in text
