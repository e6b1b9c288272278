"""The live feed's test helpers: gateway replicas running the feed alone, real tokens, a socket's frames.

Gateways here are the feed alone (`setup_feed` and the feed's route on the shared app factory) with a token check
that verifies the signature and expiry of real tokens (`common.auth.tokens`). The fixtures
`events_exchange` and `make_gateway` live in `tests/conftest.py` and are built from these.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
from aiohttp import WSMsgType, web

from common.app.api_routes import add_routes, handled_by
from common.app.problems import Unauthorized
from common.app.web import make_app
from common.auth.identity import Caller
from common.auth.tokens import InvalidToken, Role, issue_token, verify_token
from common.messaging.broker import TopologyNames, publish
from common.messaging.messages import InstanceStatus, StatusChanges, StatusEvent
from common.schemas.uploads_api import feed_operations
from gateway.authenticator import Clock
from gateway.feed.protocol import handle_events
from gateway.feed.session import FeedSession, TokenCheck
from gateway.feed.setup import setup_feed
from gateway.keys import settings_key
from gateway.settings import GatewaySettings
from tests.queue_helpers import LIVENESS

SECRET = "events-test-secret-" + "x" * 40
SETTINGS_SECRET = {"auth_secret": SECRET}


async def check_token(_: web.Application, token: str) -> FeedSession:
    try:
        claims = verify_token(token, SECRET)
    except InvalidToken as exc:
        raise Unauthorized(str(exc)) from exc
    return FeedSession(Caller(claims.sub, claims.role, claims.email), claims.exp)


def token_for(user: str, role: Role = Role.USER, ttl: int = 600) -> str:
    token, _ = issue_token(SECRET, user_id=user, email=f"{user}@example.org", role=role, ttl_seconds=ttl)
    return token


def event(owner: str, status: InstanceStatus = InstanceStatus.QUEUED, instance: str = "i1") -> StatusEvent:
    return StatusEvent(instance_id=f"{owner}-{instance}", upload_id=f"{owner}-u", owner=owner, status=status)


async def announce(exchange: aio_pika.abc.AbstractExchange, *events: StatusEvent) -> None:
    """Publish events as results_service announces them: one `StatusChanges` message."""
    await publish(exchange, StatusChanges(events=list(events)), "")


async def events_exchange_for(amqp_prefix: str) -> AsyncIterator[aio_pika.abc.AbstractExchange]:
    """The prefix's events exchange, as ingest/processor/results publish to it; deleted afterwards."""
    connection = await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel(publisher_confirms=True)
    name = TopologyNames(amqp_prefix).events
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
    yield exchange
    await channel.exchange_delete(name)
    await connection.close()


GatewayFactory = Callable[..., Awaitable[Any]]


def gateway_factory(aiohttp_client: Any, amqp_prefix: str) -> GatewayFactory:
    """Start gateway replicas (the feed on the shared app factory) on this prefix's events exchange."""

    async def make(authenticate: TokenCheck = check_token, clock: Clock = time.time, **overrides: Any) -> Any:
        app = make_app("gateway")
        app[settings_key] = GatewaySettings(amqp_prefix=amqp_prefix, **{**SETTINGS_SECRET, **overrides})
        setup_feed(app, authenticate, clock)
        add_routes(app.router, handled_by(feed_operations(), default=handle_events))
        return await aiohttp_client(app)

    return make


async def open_feed(client: Any, token: str | None) -> Any:
    """A socket authenticated with its first frame, after the server said `ready`."""
    ws = await client.ws_connect("/api/events")
    await ws.send_str(json.dumps({"type": "auth", "token": token}))
    ready = await ws.receive_json(timeout=LIVENESS)
    assert ready["type"] == "ready"
    return ws


async def next_status(ws: Any) -> dict[str, Any]:
    frame = await ws.receive_json(timeout=LIVENESS)
    assert frame["type"] == "status"
    body: dict[str, Any] = frame["event"]
    return body


async def assert_closed_with(ws: Any, code: int) -> None:
    message = await ws.receive(timeout=LIVENESS)
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), message
    assert ws.close_code == code
