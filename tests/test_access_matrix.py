"""The access matrix: every route of the gateway x {owner, other user, admin, anonymous, expired token,
forged token}, with the status each must get, against the real services.

The routes come from the real gateway app's route table: a route that has no entry in `EXPECTED`
fails the test, so a new route cannot skip the matrix. All four services run in-process on real
ports (results_service with this run's PostgreSQL, ingest and the processor on this test's own
AMQP prefix); the owner's instance is uploaded through the gateway and processed for real, so
preview, file and de-identified file are checked on real data. Another user's resource must
answer exactly what a missing one answers.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.auth.tokens import Role, issue_token
from common.messaging.broker import delete_topology
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from ingest_service.main import init_app as init_ingest
from ingest_service.settings import IngestSettings
from processor_service.main import init_app as init_processor
from processor_service.settings import ProcessorSettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.pipeline_helpers import eventually
from tests.service_auth import signing

PASSWORD = "matrix password 1"
IDENTITIES = ("owner", "other", "admin", "anonymous", "expired", "forged")
NO_TOKEN = {"anonymous": 401, "expired": 401, "forged": 401}


def users(owner: int, other: int, admin: int) -> dict[str, int]:
    """Statuses of a protected route: the three logged-in identities, and 401 for the other three."""
    return {"owner": owner, "other": other, "admin": admin, **NO_TOKEN}


def everyone(status: int) -> dict[str, int]:
    """A public route: the same answer whatever the Authorization header holds."""
    return dict.fromkeys(IDENTITIES, status)


@dataclass
class World:
    """The running system and what the owner made in it."""

    gateway: Any
    results_url: str
    headers: dict[str, dict[str, str]]
    ids: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    fresh_element: str = ""  # the last element made for a DELETE probe

    async def fresh_headers(self, identity: str) -> dict[str, str]:
        """A token of its own for a logged-in identity (for logout); the usual headers otherwise."""
        if identity not in self.emails:
            return self.headers[identity]
        login = {"email": self.emails[identity], "password": PASSWORD}
        async with self.gateway.post("/api/auth/login", json=login) as response:
            assert response.status == 200
            return {"Authorization": f"Bearer {(await response.json())['access_token']}"}

    async def new_element(self) -> str:
        element_id = f"del-{uuid.uuid4().hex[:12]}"
        body = {"id": element_id, "data": ["1 2"], "deviceName": "RX"}
        async with self.gateway.post("/api/elements/", json=body, headers=self.headers["owner"]) as response:
            assert response.status == 201
        return element_id


Setup = Callable[[World, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Probe:
    """One request: `path` may name `{element}`, `{upload}`, `{instance}`, `{log}`, `{user}`, `{other_user}`."""

    method: str
    path: str
    expected: dict[str, int]
    body: Callable[[], Any] | None = None
    headers: Callable[[World, str], Awaitable[dict[str, str]]] | None = None
    fresh_element: bool = False  # a new element of the owner for each identity (DELETE)
    data: bytes | None = None
    content_type: str | None = None


def json_body(value: Any) -> Callable[[], Any]:
    return lambda: value


def new_user_body() -> Any:
    return {"email": f"made-{uuid.uuid4().hex[:10]}@example.org", "password": PASSWORD}


def new_element_body() -> Any:
    return {"id": f"e-{uuid.uuid4().hex[:12]}", "data": ["3 4"], "deviceName": "MRI"}


ELEMENT_LIST = [
    Probe("GET", "{base}", users(200, 200, 200)),
    Probe("POST", "{base}", users(201, 201, 201), body=new_element_body),
]
ELEMENT_ITEM = [
    Probe("GET", "{base}", users(200, 404, 200)),
    Probe("PATCH", "{base}", users(200, 404, 200), body=json_body({"device_name": "CT"})),
    Probe("PUT", "{base}", users(200, 404, 200), body=json_body({"deviceName": "RX 2"})),
    Probe("DELETE", "{base}", users(204, 404, 204), fresh_element=True),
    Probe("GET", "{missing}", users(404, 404, 404)),
]


def on_routes(route: str, probes: list[Probe]) -> dict[tuple[str, str], list[Probe]]:
    """The element `probes` on one spelling of their route, by method: `{base}` filled in, `{missing}` an element
    not there."""
    base = route.replace("{element_id}", "{element}")
    missing = base.replace("{element}", "nothing-here")
    by_method: dict[tuple[str, str], list[Probe]] = {}
    for probe in probes:
        by_method.setdefault((probe.method, route), []).append(
            dataclasses.replace(probe, path=probe.path.format(base=base, missing=missing))
        )
    return by_method


MISSING_ELEMENT = "missing-element"
SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "sample-01-dicom.dcm"

# (method in the route table, canonical path) -> the probes that cover it.
EXPECTED: dict[tuple[str, str], list[Probe]] = {
    ("GET", "/healthz"): [Probe("GET", "/healthz", everyone(200))],
    ("GET", "/readyz"): [Probe("GET", "/readyz", everyone(200))],
    ("GET", "/metrics"): [Probe("GET", "/metrics", everyone(200))],
    ("POST", "/api/auth/login"): [
        Probe("POST", "/api/auth/login", everyone(200), body=lambda: None),  # body set from the owner's account
    ],
    ("POST", "/api/auth/logout"): [
        Probe("POST", "/api/auth/logout", users(204, 204, 204), headers=World.fresh_headers),
    ],
    # A wrong current password (403 for every logged-in identity) changes nothing for the rest of the matrix.
    ("POST", "/api/auth/password"): [
        Probe(
            "POST",
            "/api/auth/password",
            users(403, 403, 403),
            body=json_body({"current_password": "not the password", "new_password": "another password 1"}),
        ),
    ],
    ("GET", "/api/users"): [Probe("GET", "/api/users", users(403, 403, 200))],
    ("POST", "/api/users"): [Probe("POST", "/api/users", users(403, 403, 201), body=new_user_body)],
    ("PATCH", "/api/users/{user_id}"): [
        Probe("PATCH", "/api/users/{other_user}", users(403, 403, 200), body=json_body({"disabled": False})),
        Probe("PATCH", f"/api/users/{uuid.UUID(int=0)}", users(403, 403, 404), body=json_body({"disabled": False})),
    ],
    # Only on a missing account: a reset of one the matrix uses would revoke its tokens.
    ("POST", "/api/users/{user_id}/password-reset"): [
        Probe("POST", f"/api/users/{uuid.UUID(int=0)}/password-reset", users(403, 403, 404), body=json_body({})),
    ],
    ("GET", "/api/audit"): [Probe("GET", "/api/audit?limit=5", users(403, 403, 200))],
    ("GET", "/api/workers"): [Probe("GET", "/api/workers", users(403, 403, 200))],
    ("GET", "/api/openapi.json"): [Probe("GET", "/api/openapi.json", everyone(200))],
    ("GET", "/api/docs"): [Probe("GET", "/api/docs", everyone(200))],
    ("GET", "/api/asyncapi.json"): [Probe("GET", "/api/asyncapi.json", everyone(200))],
    **on_routes("/api/elements", ELEMENT_LIST),
    **on_routes("/api/elements/", ELEMENT_LIST),
    **on_routes("/api/elements/{element_id}", ELEMENT_ITEM),
    **on_routes("/api/elements/{element_id}/", ELEMENT_ITEM),
    ("GET", "/api/uploads/{upload_id}"): [
        Probe("GET", "/api/uploads/{upload}", users(200, 404, 200)),
        Probe("GET", "/api/uploads/{missing}", users(404, 404, 404)),
    ],
    ("GET", "/api/instances"): [Probe("GET", "/api/instances", users(200, 200, 200))],
    ("GET", "/api/instances/"): [Probe("GET", "/api/instances/", users(200, 200, 200))],
    ("GET", "/api/instances/{instance_id}"): [
        Probe("GET", "/api/instances/{instance}", users(200, 404, 200)),
        Probe("GET", "/api/instances/{missing}", users(404, 404, 404)),
    ],
    ("GET", "/api/instances/{instance_id}/preview.png"): [
        Probe("GET", "/api/instances/{instance}/preview.png", users(200, 404, 200)),
        Probe("GET", "/api/instances/{missing}/preview.png", users(404, 404, 404)),
    ],
    ("GET", "/api/instances/{instance_id}/file"): [
        Probe("GET", "/api/instances/{instance}/file", users(200, 404, 200)),
        Probe("GET", "/api/instances/{instance}/file?deidentified=true", users(200, 404, 200)),
        Probe("GET", "/api/instances/{missing}/file", users(404, 404, 404)),
    ],
    ("GET", "/api/studies"): [Probe("GET", "/api/studies", users(200, 200, 200))],
    ("GET", "/api/studies/"): [Probe("GET", "/api/studies/", users(200, 200, 200))],
    ("POST", "/api/uploads"): [
        Probe("POST", "/api/uploads", users(202, 202, 202), data=SAMPLE.read_bytes(), content_type="application/dicom"),
        Probe(
            "POST",
            "/api/uploads?atomic=true",
            users(202, 202, 202),
            data=SAMPLE.read_bytes(),
            content_type="application/dicom",
        ),
    ],
    # The resume check answers every caller about their own files only (200, an empty list for the others).
    ("POST", "/api/instances/lookup"): [
        Probe("POST", "/api/instances/lookup", users(200, 200, 200), body=json_body({"sha256": ["0" * 64]})),
    ],
    ("POST", "/api/client-logs"): [
        Probe("POST", "/api/client-logs", users(201, 201, 201), data=b"a log line\n", content_type="text/plain"),
    ],
    ("GET", "/api/client-logs"): [Probe("GET", "/api/client-logs", users(200, 200, 200))],
    ("GET", "/api/client-logs/{log_id}"): [
        Probe("GET", "/api/client-logs/{log}", users(200, 404, 200)),
        Probe("GET", "/api/client-logs/{missing}", users(404, 404, 404)),
    ],
    ("GET", "/"): [Probe("GET", "/", everyone(200))],
    ("GET", "/index.html"): [Probe("GET", "/index.html", everyone(200))],
    ("GET", "/{folder}/{path}"): [Probe("GET", "/js/app.js", everyone(200))],
    # The live feed: a WebSocket whose first frame may carry the token, so the upgrade itself is open
    # to anyone without an Authorization header; a bad bearer header is refused before the upgrade.
    ("GET", "/api/events"): [Probe("WS", "/api/events", {**users(101, 101, 101), "anonymous": 101})],
}


def route_keys(app: Any) -> set[tuple[str, str]]:
    """(method, canonical path) of every route of the app, HEAD twins left out."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


@pytest.fixture
async def cleanup_topology(amqp_prefix: str) -> AsyncIterator[None]:
    """Delete this test's queues and exchanges after every service has stopped (requested first, so torn down last)."""
    yield
    connection = await aio_pika.connect(os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    async with connection:
        await delete_topology(await connection.channel(), amqp_prefix)


async def create_account(results_url: str, role: str) -> tuple[str, str]:
    email = f"matrix-{role}-{uuid.uuid4().hex[:8]}@example.org"
    async with (
        aiohttp.ClientSession(middlewares=signing()) as session,
        session.post(f"{results_url}/internal/users", json={"email": email, "password": PASSWORD, "role": role}) as r,
    ):
        assert r.status == 201, await r.text()
        return str((await r.json())["id"]), email


@pytest.fixture
async def world(
    cleanup_topology: None,
    aiohttp_server: Any,
    aiohttp_client: Any,
    database_url: str,
    amqp_prefix: str,
    tmp_path: Path,
) -> World:
    common = {"amqp_prefix": amqp_prefix, "blob_dir": str(tmp_path / "blobs"), "shutdown_timeout": 5.0}
    results = await aiohttp_server(
        init_results(ResultsSettings(database_url=database_url, results_batch_ms=10, **common))
    )
    results_url = str(results.make_url("")).rstrip("/")
    ingest = await aiohttp_server(init_ingest(IngestSettings(results_url=results_url, **common)))
    await aiohttp_server(init_processor(ProcessorSettings(processor_concurrency=1, **common)))
    gateway_settings = GatewaySettings(
        results_url=results_url,
        ingest_url=str(ingest.make_url("")).rstrip("/"),
        rate_limit_per_minute=1e9,
        rate_limit_burst=1_000_000,
        login_rate_limit_per_minute=1e9,  # every identity logs in from 127.0.0.1
        login_rate_limit_burst=1_000_000,
        auth_cache_seconds=0,
        **common,
    )
    gateway = await aiohttp_client(init_gateway(gateway_settings))
    secret = gateway_settings.auth_secret.get_secret_value()
    world = World(gateway, results_url, {})
    for identity, role in (("owner", "user"), ("other", "user"), ("admin", "admin")):
        user_id, email = await create_account(results_url, role)
        world.ids[identity], world.emails[identity] = user_id, email
        world.headers[identity] = await world.fresh_headers(identity)
    past = datetime.now(UTC) - timedelta(hours=2)
    expired, _ = issue_token(
        secret,
        user_id=world.ids["owner"],
        email=world.emails["owner"],
        role=Role.USER,
        ttl_seconds=60,
        clock=past.timestamp,
    )
    forged, _ = issue_token(
        secrets.token_urlsafe(48),
        user_id=world.ids["admin"],
        email=world.emails["admin"],
        role=Role.ADMIN,
        ttl_seconds=600,
    )
    world.headers.update(
        anonymous={}, expired={"Authorization": f"Bearer {expired}"}, forged={"Authorization": f"Bearer {forged}"}
    )
    return world


async def owner_resources(world: World) -> dict[str, str]:
    """The owner's upload (processed to `done`) and element; ids for the probes' paths."""
    headers = {**world.headers["owner"], "Content-Type": "application/dicom"}
    async with world.gateway.post("/api/uploads", data=io.BytesIO(SAMPLE.read_bytes()), headers=headers) as response:
        receipt = await response.json()
        assert response.status == 202, receipt
    instance_id = receipt["files"][0]["instance_id"]
    status = ""

    async def final() -> bool:
        nonlocal status
        async with world.gateway.get(f"/api/instances/{instance_id}", headers=world.headers["owner"]) as response:
            status = (await response.json())["status"]
        return status in ("done", "failed")

    await eventually(final)
    assert status == "done"
    element = {"id": f"own-{uuid.uuid4().hex[:10]}", "data": ["1 2 3"], "deviceName": "RX 1"}
    async with world.gateway.post("/api/elements/", json=element, headers=world.headers["owner"]) as response:
        assert response.status == 201
    log_headers = {**world.headers["owner"], "Content-Type": "text/plain"}
    async with world.gateway.post("/api/client-logs", data=b"the owner's log\n", headers=log_headers) as response:
        assert response.status == 201
        log_id = (await response.json())["id"]
    return {
        "upload": receipt["upload_id"],
        "instance": instance_id,
        "element": element["id"],
        "log": log_id,
        "missing": uuid.uuid4().hex,
        "other_user": world.ids["other"],
    }


async def send(world: World, probe: Probe, identity: str, names: dict[str, str]) -> tuple[int, bytes, str]:
    """Make one probe's request as `identity`; (status, body, content type)."""
    if probe.fresh_element:
        world.fresh_element = await world.new_element()
        names = {**names, "element": world.fresh_element}
    path = probe.path.format(**names)
    headers = dict(await probe.headers(world, identity) if probe.headers else world.headers[identity])
    if probe.method == "WS":
        try:
            async with world.gateway.ws_connect(path, headers=headers) as ws:
                await ws.close()
                return 101, b"", ""
        except aiohttp.WSServerHandshakeError as exc:
            content_type = (exc.headers or {}).get("Content-Type", "").split(";")[0]
            return exc.status, b"", content_type
    kwargs: dict[str, Any] = {"headers": headers}
    if probe.path == "/api/auth/login":
        kwargs["json"] = {"email": world.emails["owner"], "password": PASSWORD}
    elif probe.data is not None:
        kwargs["data"] = io.BytesIO(probe.data)
        headers["Content-Type"] = probe.content_type or "application/octet-stream"
    elif probe.body is not None:
        kwargs["json"] = probe.body()
    async with world.gateway.request(probe.method, path, **kwargs) as response:
        return response.status, await response.read(), response.content_type


def problem_shape(body: bytes, names: dict[str, str]) -> dict[str, Any]:
    """A 404 problem with every id replaced and the request path left out, to compare two of them."""
    problem: dict[str, Any] = json.loads(body)
    problem.pop("instance", None)
    detail = str(problem.get("detail", ""))
    for value in (*names.values(), MISSING_ELEMENT):
        if value:
            detail = detail.replace(value, "X")
    problem["detail"] = detail
    return problem


async def check_probe(world: World, probe: Probe, names: dict[str, str]) -> list[str]:
    """Send the probe as every identity; what went against the matrix."""
    assert set(probe.expected) == set(IDENTITIES), probe
    failures = []
    for identity in IDENTITIES:
        status, body, content_type = await send(world, probe, identity, names)
        expected = probe.expected[identity]
        label = f"{probe.method} {probe.path} as {identity}"
        if status != expected:
            failures.append(f"{label}: {status}, expected {expected}")
        elif status in (401, 403, 404) and content_type != PROBLEM_CONTENT_TYPE:
            failures.append(f"{label}: {status} is not problem+json")
        elif identity == "other" and status == 404 and "{missing}" not in probe.path:
            # Someone else's resource must answer exactly what a missing one answers (ids aside).
            missing = {
                **names,
                "instance": names["missing"],
                "upload": names["missing"],
                "log": names["missing"],
                "element": MISSING_ELEMENT,
            }
            plain = Probe(probe.method, probe.path, probe.expected, probe.body)
            _, missing_body, _ = await send(world, plain, identity, missing)
            known = {**names, "fresh": world.fresh_element}
            if problem_shape(body, known) != problem_shape(missing_body, known):
                failures.append(f"{label}: differs from the answer for a missing resource")
    return failures


async def test_every_route_answers_each_identity_as_the_matrix_says(world: World) -> None:
    routes = route_keys(world.gateway.server.app)
    assert routes - EXPECTED.keys() == set(), "routes without an access expectation"
    assert EXPECTED.keys() - routes == set(), "expectations of routes that no longer exist"
    names = await owner_resources(world)
    failures = [
        failure
        for key in sorted(EXPECTED)
        for probe in EXPECTED[key]
        for failure in await check_probe(world, probe, names)
    ]
    assert failures == [], "\n".join(failures)
    # Lists are filtered: the owner's resources show for the owner and admins, never for the other user.
    for path, value in (
        ("/api/instances?limit=1000", names["instance"]),
        ("/api/elements/?limit=1000", names["element"]),
    ):
        seen = {}
        for identity in ("owner", "other", "admin"):
            async with world.gateway.get(path, headers=world.headers[identity]) as response:
                seen[identity] = {item["id"] for item in (await response.json())["items"]}
        assert value in seen["owner"] and value in seen["admin"] and value not in seen["other"], path
    # Patient-identifying fields reach the owner and admins only (the other user gets a 404 above).
    for identity in ("owner", "admin"):
        async with world.gateway.get(f"/api/instances/{names['instance']}", headers=world.headers[identity]) as r:
            assert (await r.json())["patient"]["name"] == "Anonymous"
