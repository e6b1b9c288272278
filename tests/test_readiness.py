"""Readiness that tells the truth: a service is ready only when what it forwards to is ready.

The gateway and ingest run as apps against the real results_service (and the gateway against a real
ingest); a results_service that is up but not ready is stood in for by a tiny server answering its
`/healthz` 200 and its `/readyz` 503, since that answer is what is under test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.app.problems import problem_response
from common.app.upstream_ready import UpstreamReady
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from tests.fake_clock import FakeClock
from tests.ingest_rig import IngestRig, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    eventually,
    results_settings_fixture,
)

ServerFactory = Callable[..., Awaitable[TestServer]]


class StandIn:
    """An upstream that is alive (`/healthz` 200) and answers `/readyz` with `status`; counts the `/readyz` asked,
    and holds them while `hold` is clear."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.asked = 0
        self.hold = asyncio.Event()
        self.hold.set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        self.asked += 1
        await self.hold.wait()
        if self.status == 200:
            return web.json_response({"status": "ready"})
        return problem_response(self.status, "Not ready", checks={"database": "ConnectionRefusedError: ..."})


async def serve(aiohttp_server: ServerFactory, stand_in: StandIn) -> str:
    server = await aiohttp_server(stand_in.app())
    return str(server.make_url("")).rstrip("/")


async def checks_of(client: Any) -> tuple[int, dict[str, str]]:
    """`/readyz`'s status and, when not ready, its failing checks by name."""
    response = await client.get("/readyz")
    body = json.loads(await response.text())
    return response.status, body.get("checks", {})


# The check itself.


async def ask(check: UpstreamReady, session: aiohttp.ClientSession) -> str | None:
    """None when the check passes, else its reason."""
    app = web.Application()
    try:
        await check(app)
    except ConnectionError as exc:
        return str(exc)
    return None


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_an_upstream_that_answers_ready_passes(aiohttp_server: ServerFactory, session: Any) -> None:
    url = await serve(aiohttp_server, StandIn(200))
    assert await ask(UpstreamReady("results_service", url, lambda _: session), session) is None


async def test_an_upstream_alive_but_not_ready_fails_with_its_failing_checks(
    aiohttp_server: ServerFactory, session: Any
) -> None:
    url = await serve(aiohttp_server, StandIn(503))
    reason = await ask(UpstreamReady("results_service", url, lambda _: session), session)
    assert reason == "results_service is not ready: its /readyz answered 503 (checks failing: database)"


async def test_an_unreachable_upstream_fails(unused_tcp_port: int, session: Any) -> None:
    check = UpstreamReady("ingest_service", f"http://127.0.0.1:{unused_tcp_port}", lambda _: session)
    reason = await ask(check, session)
    assert reason is not None and reason.startswith("ingest_service is unreachable: ClientConnectorError")


async def test_an_upstream_that_does_not_answer_in_time_fails(aiohttp_server: ServerFactory, session: Any) -> None:
    stand_in = StandIn(200)
    stand_in.hold.clear()  # it never answers while the test runs
    url = await serve(aiohttp_server, stand_in)
    try:
        reason = await ask(UpstreamReady("results_service", url, lambda _: session, timeout=0.05), session)
    finally:
        stand_in.hold.set()
    assert reason == "results_service did not answer /readyz within 0.05 s"


async def test_a_storm_of_probes_asks_the_upstream_once_per_ttl(aiohttp_server: ServerFactory, session: Any) -> None:
    stand_in = StandIn(503)
    url = await serve(aiohttp_server, stand_in)
    clock = FakeClock()
    check = UpstreamReady("results_service", url, lambda _: session, ttl=1.0, clock=clock)
    stand_in.hold.clear()
    probes = [asyncio.ensure_future(ask(check, session)) for _ in range(50)]

    async def first_probe_out() -> bool:
        return stand_in.asked == 1

    await eventually(first_probe_out)
    stand_in.hold.set()
    reasons = await asyncio.gather(*probes)
    assert stand_in.asked == 1  # the 49 others waited for that answer
    assert len(set(reasons)) == 1 and reasons[0] is not None
    clock.advance(0.9)
    await ask(check, session)
    assert stand_in.asked == 1
    stand_in.status = 200
    clock.advance(0.1)
    assert await ask(check, session) is None  # asked again once the answer is a second old: it is ready now
    assert stand_in.asked == 2


# ingest_service.


async def test_ingest_is_not_ready_while_results_service_is_alive_but_not_ready(
    rig: IngestRig, aiohttp_server: ServerFactory
) -> None:
    stand_in = StandIn(503)
    client = await rig.make(results_url=await serve(aiohttp_server, stand_in))
    status, checks = await checks_of(client)
    assert status == 503
    assert list(checks) == ["results_ready"]
    assert "results_service is not ready: its /readyz answered 503" in checks["results_ready"]
    assert (await client.get("/healthz")).status == 200  # liveness asks nobody


async def test_ingest_is_ready_when_results_service_is_ready(rig: IngestRig) -> None:
    client = await rig.make()
    assert await checks_of(client) == (200, {})


# The gateway.


async def gateway_for(rig: IngestRig, aiohttp_client: Any, **urls: str) -> Any:
    ingest = await rig.make()
    settings = GatewaySettings(
        **{
            "results_url": str(rig.results.make_url("")).rstrip("/"),
            "ingest_url": str(ingest.make_url("")).rstrip("/"),
            "amqp_prefix": rig.names.prefix,
            **urls,
        }
    )
    return await aiohttp_client(init_gateway(settings))


async def test_the_gateway_is_ready_when_ingest_and_results_service_are(rig: IngestRig, aiohttp_client: Any) -> None:
    gateway = await gateway_for(rig, aiohttp_client)
    assert await checks_of(gateway) == (200, {})


async def test_the_gateway_is_not_ready_without_results_service(
    rig: IngestRig, aiohttp_client: Any, unused_tcp_port: int
) -> None:
    gateway = await gateway_for(rig, aiohttp_client, results_url=f"http://127.0.0.1:{unused_tcp_port}")
    status, checks = await checks_of(gateway)
    assert status == 503
    assert list(checks) == ["results_service_ready"]  # ingest's own results_service is the rig's, and ready
    assert "results_service is unreachable" in checks["results_service_ready"]
    assert (await gateway.get("/healthz")).status == 200


async def test_the_gateway_is_not_ready_once_ingest_is_not(
    rig: IngestRig, aiohttp_client: Any, aiohttp_server: ServerFactory
) -> None:
    gateway = await gateway_for(rig, aiohttp_client, ingest_url=await serve(aiohttp_server, StandIn(503)))
    status, checks = await checks_of(gateway)
    assert status == 503
    assert list(checks) == ["ingest_service_ready"]
    assert "ingest_service is not ready: its /readyz answered 503" in checks["ingest_service_ready"]


async def test_the_gateway_becomes_not_ready_when_results_service_stops(rig: IngestRig, aiohttp_client: Any) -> None:
    gateway = await gateway_for(rig, aiohttp_client)
    assert (await checks_of(gateway))[0] == 200
    await rig.results.server.close()

    async def names_results_service() -> bool:
        status, checks = await checks_of(gateway)
        return status == 503 and "results_service is unreachable" in checks.get("results_service_ready", "")

    await eventually(names_results_service)
