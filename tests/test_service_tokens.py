"""No side door: results_service and ingest_service answer only requests with a service token of this deployment,
and learn who the user is only from that token.

The real apps on real ports, PostgreSQL and the broker of this machine; attacks are made with a plain HTTP client,
as any process that can connect would make them, and their absence of effect is read from PostgreSQL.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from pydantic import ValidationError

from common.app.secret_settings import ServiceTokenSettings
from common.auth.identity import Caller
from common.auth.service_tokens import (
    LEEWAY_SECONDS,
    TOKEN_TYPE,
    TTL_SECONDS,
    InvalidServiceToken,
    ServiceSigner,
    ServiceVerifier,
)
from common.auth.tokens import Role, issue_token
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.account_helpers import PASSWORD, assert_problem, audit_rows, unique_email
from tests.elements.helpers import NO_RATE_LIMIT, log_in
from tests.fake_clock import FakeClock
from tests.ingest_rig import IngestRig, blob_files, rig_fixture  # noqa: F401  (fixtures, used by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    fetch,
    owner_fixture,
    results_settings_fixture,
)
from tests.service_auth import INGEST, RESULTS, as_service, as_user

FORGED_ADMIN = {"X-Authenticated-User": "intruder", "X-Authenticated-Role": "admin", "X-Client-Address": "10.0.0.1"}
ADMIN = Caller(user_id="intruder", role=Role.ADMIN)


@pytest.fixture
async def results_url(aiohttp_server: Any, database_url: str) -> str:
    server = await aiohttp_server(init_results(ResultsSettings(database_url=database_url)))
    return str(server.make_url("")).rstrip("/")


async def accounts_named(database_url: str, email: str) -> int:
    rows = await fetch(database_url, "SELECT count(*) AS n FROM users WHERE email = $1", email.lower())
    return int(rows[0]["n"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_creating_an_admin_on_the_internal_route_without_a_service_token_is_401_and_creates_nothing(
    results_url: str, database_url: str
) -> None:
    email = unique_email("intruder")
    body = {"email": email, "password": PASSWORD, "role": "admin"}
    async with aiohttp.ClientSession() as session:
        for headers in ({}, FORGED_ADMIN):
            async with session.post(f"{results_url}/internal/users", json=body, headers=headers) as response:
                problem = await assert_problem(response, 401)
                assert response.headers["WWW-Authenticate"] == 'Bearer realm="dicomflow"'
                assert "service token" in problem["detail"]
    assert await accounts_named(database_url, email) == 0


async def test_listing_accounts_with_forged_admin_headers_is_401_lists_nothing_and_records_no_read(
    results_url: str, database_url: str
) -> None:
    marker = f"forged-{uuid.uuid4().hex}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{results_url}/api/users", headers={**FORGED_ADMIN, "X-Request-ID": marker}) as response,
    ):
        problem = await assert_problem(response, 401)
        assert "items" not in problem and "@" not in await response.text()
    assert await audit_rows(database_url, "correlation_id = $1", marker) == []


def _claims(audience: str = RESULTS, *, lifetime: int = TTL_SECONDS) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "intruder", "aud": audience, "iat": now, "exp": now + lifetime, "sub": "intruder", "role": "admin"}


def _bad_tokens() -> dict[str, tuple[str, str]]:
    """Tokens that must not open the door, each with the reason the 401 gives."""
    service_secret, auth_secret = os.environ["SERVICE_SECRET"], os.environ["AUTH_SECRET"]
    past = ServiceSigner(service_secret, "tests", clock=lambda: time.time() - TTL_SECONDS - LEEWAY_SECONDS - 1)
    future = ServiceSigner(service_secret, "tests", clock=lambda: time.time() + LEEWAY_SECONDS + 30)
    user_token, _ = issue_token(auth_secret, user_id="u", email="u@example.org", role=Role.ADMIN, ttl_seconds=60)
    user_shaped, _ = issue_token(service_secret, user_id="u", email="u@example.org", role=Role.ADMIN, ttl_seconds=60)
    typed = {"typ": TOKEN_TYPE}
    return {
        "wrong secret": (ServiceSigner("w" * 48, "tests").token(RESULTS, ADMIN), "signature"),
        "expired": (past.token(RESULTS, ADMIN), "expired"),
        "not yet valid": (future.token(RESULTS, ADMIN), "not valid yet"),
        "other audience": (ServiceSigner(service_secret, "tests").token(INGEST, ADMIN), "another service"),
        "user bearer token": (user_token, "signature"),
        "user-shaped, service secret": (user_shaped, "claim"),
        "untyped": (jwt.encode(_claims(), service_secret, algorithm="HS256"), "not a service token"),
        "long-lived": (jwt.encode(_claims(lifetime=3600), service_secret, "HS256", headers=typed), "lifetime"),
        "alg none": (jwt.encode(_claims(), None, algorithm="none", headers=typed), "malformed"),
        "garbage": ("x.y.z", "malformed"),
    }


@pytest.mark.parametrize("case", list(_bad_tokens()))
async def test_tokens_that_are_not_current_service_tokens_for_this_service_are_401_and_change_nothing(
    results_url: str, database_url: str, case: str
) -> None:
    token, reason = _bad_tokens()[case]
    email = unique_email("bad-token")
    async with aiohttp.ClientSession(headers=bearer(token)) as session:
        async with session.get(f"{results_url}/api/users") as response:
            problem = await assert_problem(response, 401)
            assert reason in problem["detail"] and token not in problem["detail"]
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="dicomflow", error="invalid_token"'
        body = {"email": email, "password": PASSWORD, "role": "admin"}
        async with session.post(f"{results_url}/internal/users", json=body) as response:
            await assert_problem(response, 401)
    assert await accounts_named(database_url, email) == 0


async def test_the_identity_is_the_tokens_and_headers_cannot_raise_it(results_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{results_url}/api/users", headers={**as_user("someone"), **FORGED_ADMIN}) as r:
            await assert_problem(r, 403)
        async with session.get(f"{results_url}/api/users", headers={**as_service(), **FORGED_ADMIN}) as r:
            problem = await assert_problem(r, 401)  # a service's own token names no user, and there is no default
            assert "no authenticated user" in problem["detail"]
        async with session.get(f"{results_url}/api/users", headers=as_user("root", Role.ADMIN)) as r:
            assert r.status == 200


async def test_probes_and_metrics_stay_open(results_url: str, rig: IngestRig) -> None:
    ingest = await rig.make()
    async with aiohttp.ClientSession() as session:
        for base in (results_url, str(ingest.make_url("")).rstrip("/")):
            for path in ("/healthz", "/metrics"):
                async with session.get(base + path) as response:
                    assert response.status == 200, (base, path)
            async with session.get(base + "/readyz") as response:
                assert response.status != 401


async def test_uploads_to_ingest_without_a_service_token_for_it_are_401_and_store_nothing(
    rig: IngestRig, owner: str, samples_dir: Path
) -> None:
    ingest = await rig.make()
    url = str(ingest.make_url("/api/uploads"))
    data = (samples_dir / "sample-01-dicom.dcm").read_bytes()
    dicom = {"Content-Type": "application/dicom"}
    attempts = {
        "none": ({"X-Authenticated-User": owner, **dicom}, "service token"),
        "for results_service": ({**as_user(owner, audience=RESULTS), **dicom}, "another service"),
        "no user": ({**as_service(INGEST), **dicom}, "no authenticated user"),
    }
    async with aiohttp.ClientSession() as session:
        for headers, reason in attempts.values():
            async with session.post(url, data=data, headers=headers) as response:
                problem = await assert_problem(response, 401)
                assert reason in problem["detail"]
    assert await rig.rows("SELECT 1 FROM uploads WHERE owner = $1", owner) == []
    assert blob_files(rig.blob_dir) == []
    assert await rig.drain(rig.names.jobs) == []


async def test_through_the_gateway_a_user_sees_their_own_rows_and_an_admin_all(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str
) -> None:
    server = await aiohttp_server(init_results(ResultsSettings(database_url=database_url)))
    settings = GatewaySettings(results_url=str(server.make_url("")).rstrip("/"), **NO_RATE_LIMIT)
    gateway = await aiohttp_client(init_gateway(settings))
    (alice, alice_auth), (_, bob_auth), (_, admin_auth) = [
        await log_in(server, role) for role in ("user", "user", "admin")
    ]
    element_id = f"side-door-{uuid.uuid4().hex[:8]}"
    element = {"id": element_id, "data": ["1 2 3"], "deviceName": "RX 1"}
    marker = f"gw-{uuid.uuid4().hex}"
    created = await gateway.post("/api/elements/", json=element, headers={**alice_auth, "X-Request-ID": marker})
    assert created.status == 201, await created.text()

    async def listed(auth: dict[str, str]) -> set[str]:
        response = await gateway.get("/api/elements/?limit=1000", headers=auth)
        assert response.status == 200, await response.text()
        return {item["id"] for item in (await response.json())["items"]}

    assert element_id in await listed(alice_auth)
    assert element_id not in await listed(bob_auth)
    assert element_id in await listed(admin_auth)
    [row] = await audit_rows(database_url, "correlation_id = $1 AND action = 'element.create'", marker)
    assert row["actor_id"] == alice  # the identity the token carried is the one PostgreSQL recorded


def test_a_signed_identity_round_trips_and_a_verified_token_is_refused_once_it_expires() -> None:
    clock = FakeClock()
    secret = "s" * 48
    signer, verifier = ServiceSigner(secret, "gateway", clock=clock), ServiceVerifier(secret, RESULTS, clock=clock)
    caller = Caller(user_id="u1", role=Role.ADMIN, email="u1@example.org", client="203.0.113.5")
    token = signer.token(RESULTS, caller)
    claims = verifier.verify(token)
    assert (claims.iss, claims.aud, claims.caller()) == ("gateway", RESULTS, caller)
    assert signer.token(RESULTS, Caller(user_id="u2")) != token
    clock.advance(TTL_SECONDS / 2 - 1)
    assert signer.token(RESULTS, caller) == token  # reused for half its lifetime
    clock.advance(TTL_SECONDS / 2 + LEEWAY_SECONDS)
    assert verifier.verify(token) == claims  # the kept claims, still within the leeway
    fresh = signer.token(RESULTS, caller)
    assert fresh != token and verifier.verify(fresh).caller() == caller
    clock.advance(1)
    with pytest.raises(InvalidServiceToken, match="expired"):
        verifier.verify(token)
    with pytest.raises(InvalidServiceToken, match="expired"):
        verifier.verify(token)  # not kept once refused


def test_the_service_secret_is_required_long_and_different_from_the_auth_secret(tmp_path: Path) -> None:
    missing = str(tmp_path / "none")
    with pytest.raises(ValidationError, match="SERVICE_SECRET is not set"):
        ServiceTokenSettings(service_secret="", service_secret_file=missing)
    with pytest.raises(ValidationError, match="at least 32"):
        ServiceTokenSettings(service_secret="short")
    same = "x" * 48
    with pytest.raises(ValidationError, match="must differ from AUTH_SECRET"):
        ResultsSettings(auth_secret=same, service_secret=same)
    with pytest.raises(ValidationError, match="must differ from AUTH_SECRET"):
        GatewaySettings(auth_secret=same, service_secret=same)
    (tmp_path / "auth").write_text(same + "\n")
    with pytest.raises(ValidationError, match="must differ from AUTH_SECRET"):
        GatewaySettings(auth_secret="", auth_secret_file=str(tmp_path / "auth"), service_secret=same)
