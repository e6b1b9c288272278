"""The uploader's retry policy: what is retried, how long it waits, and when it gives up."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.uploader.retrying import RetryEvent, RetryPolicy, ServiceUnreachable, parse_retry_after, send

FAST = RetryPolicy(max_retries=3, first_delay=0.001, max_delay=0.01)


def _server(answers: list[web.Response], seen: list[bytes]) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return answers.pop(0) if answers else web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_post("/x", handle)
    return app


async def test_503_and_429_are_retried_with_a_fresh_body_each_time(aiohttp_server) -> None:
    seen: list[bytes] = []
    server: TestServer = await aiohttp_server(_server([web.Response(status=503), web.Response(status=429)], seen))
    events: list[RetryEvent] = []
    bodies = iter([b"one", b"two", b"three"])
    async with aiohttp.ClientSession() as session:
        reply = await send(
            session,
            "POST",
            str(server.make_url("/x")),
            service="s",
            policy=FAST,
            body=lambda: next(bodies),
            on_retry=events.append,
        )
    assert reply.status == 200 and reply.body == b"ok"
    assert seen == [b"one", b"two", b"three"]
    assert [e.retry for e in events] == [1, 2] and [e.reason for e in events] == ["HTTP 503", "HTTP 429"]


async def test_a_400_is_the_answer_and_never_retried(aiohttp_server) -> None:
    seen: list[bytes] = []
    server = await aiohttp_server(_server([web.Response(status=400, text="bad")], seen))
    async with aiohttp.ClientSession() as session:
        reply = await send(session, "POST", str(server.make_url("/x")), service="s", policy=FAST, body=lambda: b"b")
    assert (reply.status, reply.body, len(seen)) == (400, b"bad", 1)


async def test_retry_after_is_a_lower_bound_of_the_wait(aiohttp_server) -> None:
    seen: list[bytes] = []
    server = await aiohttp_server(_server([web.Response(status=503, headers={"Retry-After": "1"})], seen))
    events: list[RetryEvent] = []
    async with aiohttp.ClientSession() as session:
        await send(session, "POST", str(server.make_url("/x")), service="s", policy=FAST, on_retry=events.append)
    assert len(events) == 1 and events[0].delay >= 1.0


async def test_retries_run_out_on_a_closed_port_as_service_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    events: list[RetryEvent] = []
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ServiceUnreachable) as caught:
            await send(
                session, "GET", f"http://127.0.0.1:{port}/", service="server", policy=FAST, on_retry=events.append
            )
    assert caught.value.service == "server" and "ClientConnectorError" in caught.value.reason
    assert len(events) == FAST.max_retries


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_the_wait_grows_within_full_jitter_bounds_and_respects_the_cap() -> None:
    policy = RetryPolicy(first_delay=1.0, max_delay=4.0, retry_after_cap=10.0)
    assert all(0 <= policy.delay(n) <= min(4.0, 2**n) for n in range(8) for _ in range(20))
    assert policy.delay(0, retry_after=3600) == 10.0
