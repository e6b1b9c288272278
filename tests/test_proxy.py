"""The gateway's reverse proxy on its own: streaming both ways, headers, limits, 503 and 504.

A small upstream app stands in for any internal service; the proxy is mounted on an app built
with the shared `make_app`, exactly as the gateway mounts it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.app.web import make_app
from common.auth.service_guard import service_signer_key
from common.auth.service_tokens import ServiceVerifier
from gateway.proxy import client_session_context, forward_to
from tests.queue_helpers import LIVENESS
from tests.service_auth import signer

MiB = 1024**2


class Upstream:
    """Handlers that record what they saw and can wait on the test (lock-step streaming)."""

    def __init__(self) -> None:
        self.upstream_got_first = asyncio.Event()
        self.client_got_first = asyncio.Event()
        self.requests = 0
        self.release = asyncio.Event()

    async def echo(self, request: web.Request) -> web.StreamResponse:
        """Stream the body back as it arrives, with its size and digest in trailing JSON-free headers."""
        self.requests += 1
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        async for chunk in request.content.iter_chunked(64 * 1024):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def lockstep(self, request: web.Request) -> web.Response:
        """Needs the first chunk before the client sends the rest: proves the request is streamed."""
        first = await request.content.readany()
        self.upstream_got_first.set()
        rest = await request.content.read()
        return web.json_response({"bytes": len(first) + len(rest)})

    async def drip(self, request: web.Request) -> web.StreamResponse:
        """Sends the rest only once the client has the first part: proves the response is streamed."""
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first-part;")
        await asyncio.wait_for(self.client_got_first.wait(), timeout=10)
        await response.write(b"second-part")
        await response.write_eof()
        return response

    async def headers(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response(
            {"method": request.method, "path_qs": request.raw_path, "headers": dict(request.headers)},
            headers={"X-Custom": "kept", "Keep-Alive": "timeout=5", "Proxy-Authenticate": "Basic", "Allow": "GET"},
            status=207,
        )

    async def broken(self, request: web.Request) -> web.StreamResponse:
        """Dies half-way through its body (a crashed service)."""
        response = web.StreamResponse()
        if request.query.get("declared"):
            response.content_length = 1000
        await response.prepare(request)
        await response.write(b"x" * 400)  # headers and part of the body are out (written and drained) first
        assert request.transport is not None
        request.transport.close()
        return response

    async def silent(self, request: web.Request) -> web.Response:
        """Answers only once the test releases it: longer than any timeout."""
        await self.release.wait()
        return web.json_response({})


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def upstream_url(aiohttp_server: Any, upstream: Upstream) -> str:
    app = web.Application(client_max_size=1024**3)
    app.router.add_post("/echo", upstream.echo)
    app.router.add_post("/lockstep", upstream.lockstep)
    app.router.add_get("/drip", upstream.drip)
    app.router.add_route("*", "/headers/{tail:.*}", upstream.headers)
    app.router.add_get("/silent", upstream.silent)
    app.router.add_get("/broken", upstream.broken)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def proxy_app(
    base_url: str, *, max_body: int | None = None, connect_timeout: float = LIVENESS, total_timeout: float = LIVENESS
) -> web.Application:
    app = make_app("proxy-under-test")
    app[service_signer_key] = signer()  # the gateway's is made from SERVICE_SECRET by its auth setup
    app.cleanup_ctx.append(client_session_context(connect_timeout=connect_timeout, total_timeout=total_timeout))
    app.router.add_route("*", "/{tail:.*}", forward_to(base_url, service="upstream_service", max_body=max_body))
    return app


@pytest.fixture
async def client(aiohttp_client: Any, upstream_url: str) -> Any:
    return await aiohttp_client(proxy_app(upstream_url, max_body=64 * MiB))


async def test_a_large_body_streams_through_both_ways_unchanged(client: Any) -> None:
    payload = os.urandom(24 * MiB)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), MiB):
            yield payload[start : start + MiB]

    response = await client.post("/echo", data=chunks(), headers={"Content-Type": "application/octet-stream"})
    assert response.status == 200
    digest = hashlib.sha256()
    size = 0
    async for chunk in response.content.iter_chunked(256 * 1024):
        digest.update(chunk)
        size += len(chunk)
    assert size == len(payload) and digest.hexdigest() == hashlib.sha256(payload).hexdigest()


async def test_the_request_body_reaches_the_upstream_before_the_client_finishes_sending(
    client: Any, upstream: Upstream
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.wait_for(upstream.upstream_got_first.wait(), timeout=10)  # deadlocks if buffered
        yield b"b" * 5000

    response = await client.post("/lockstep", data=chunks())
    assert response.status == 200
    assert await response.json() == {"bytes": 6000}


async def test_the_response_reaches_the_client_before_the_upstream_finishes_sending(
    client: Any, upstream: Upstream
) -> None:
    response = await client.get("/drip")
    assert response.status == 200
    first = await asyncio.wait_for(response.content.readexactly(len(b"first-part;")), timeout=10)
    assert first == b"first-part;"
    upstream.client_got_first.set()
    assert await response.content.read() == b"second-part"


async def test_method_path_query_and_chosen_headers_are_forwarded_hop_by_hop_ones_are_not(client: Any) -> None:
    response = await client.patch(
        "/headers/a%2Fb/c?x=1&y=%C3%A9&x=2",
        data=b'{"k": 1}',
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Request-ID": "proxy-corr-1",
            "Cookie": "session=secret",
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
        },
    )
    assert response.status == 207
    seen = await response.json()
    assert seen["method"] == "PATCH"
    assert seen["path_qs"] == "/headers/a%2Fb/c?x=1&y=%C3%A9&x=2"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["x-request-id"] == "proxy-corr-1"
    assert headers["content-length"] == "8"
    assert "cookie" not in headers and "x-drop-me" not in headers
    # The service token for this upstream, vouching for no user on a route without authentication.
    claims = ServiceVerifier(os.environ["SERVICE_SECRET"], "upstream_service").verify(
        headers["authorization"].removeprefix("Bearer ")
    )
    assert claims.aud == "upstream_service" and claims.caller() is None
    assert response.headers["X-Custom"] == "kept" and response.headers["Allow"] == "GET"
    assert "Keep-Alive" not in response.headers and "Proxy-Authenticate" not in response.headers
    assert response.headers["X-Request-ID"] == "proxy-corr-1"


async def test_a_declared_body_over_the_limit_is_413_before_contacting_the_upstream(
    aiohttp_client: Any, upstream_url: str, upstream: Upstream
) -> None:
    small = await aiohttp_client(proxy_app(upstream_url, max_body=1000))
    response = await small.post("/headers/x", data=b"x" * 1001)
    assert response.status == 413 and response.content_type == PROBLEM_CONTENT_TYPE
    assert upstream.requests == 0


async def test_a_chunked_body_over_the_limit_is_413(aiohttp_client: Any, upstream_url: str) -> None:
    small = await aiohttp_client(proxy_app(upstream_url, max_body=100_000))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"z" * 10_000

    response = await small.post("/echo", data=chunks())
    assert response.status == 413 and response.content_type == PROBLEM_CONTENT_TYPE


async def test_an_upstream_that_refuses_connections_is_a_503_naming_it_without_waiting_for_a_timeout(
    aiohttp_client: Any,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Timeouts longer than the test may run: the answer can only come from the refusal itself.
    never = 10 * LIVENESS
    client = await aiohttp_client(proxy_app(f"http://127.0.0.1:{port}", connect_timeout=never, total_timeout=never))
    response = await client.post("/anything", json={"a": 1})
    assert response.status == 503 and response.content_type == PROBLEM_CONTENT_TYPE
    assert "upstream_service" in (await response.json())["detail"]


async def test_an_upstream_that_does_not_answer_in_time_is_a_504(
    aiohttp_client: Any, upstream_url: str, upstream: Upstream
) -> None:
    client = await aiohttp_client(proxy_app(upstream_url, total_timeout=0.3))
    # A pooled connection first: the timeout can then only run out while the upstream is silent (not connecting).
    assert (await client.get("/headers/warm")).status == 207
    response = await client.get("/silent")
    upstream.release.set()
    assert response.status == 504 and response.content_type == PROBLEM_CONTENT_TYPE
    assert (await response.json())["detail"] == "upstream_service did not answer in time."


async def test_one_session_serves_many_concurrent_requests(client: Any) -> None:
    responses = await asyncio.gather(*(client.get(f"/headers/{n}") for n in range(50)))
    bodies = [await r.json() for r in responses]
    assert sorted(b["path_qs"] for b in bodies) == sorted(f"/headers/{n}" for n in range(50))


async def test_upstream_error_statuses_pass_through(client: Any) -> None:
    response = await client.get("/nowhere")
    assert response.status == 404
    with pytest.raises(aiohttp.ContentTypeError):
        await response.json()


@pytest.mark.parametrize("query", ["", "?declared=1"])
async def test_an_upstream_dying_mid_body_cuts_the_client_off_instead_of_faking_a_complete_body(
    client: Any, query: str
) -> None:
    response = await client.get("/broken" + query)
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
