"""The live status feed: `GET /api/events`, a WebSocket of the caller's own status changes.

Every gateway replica has its own exclusive, auto-delete queue, bound to the `P.events` fanout
exchange while at least one socket is open on that replica (`gateway.feed_binding`), so each
replica with sockets sees every event and pushes it to the sockets connected to it: those of the
event's owner, and those of admins. Nothing is stored: a client that was away re-reads the API
when it (re)connects, which the `ready` message invites it to do.

Protocol (JSON text frames):
- client → server, first frame within `events_auth_timeout` seconds: `{"type": "auth", "token": "…"}`
  (browsers cannot set headers on a WebSocket, and a token in the URL would end up in logs and
  histories). A client that can send `Authorization: Bearer …` on the upgrade may do that instead.
- server → client: `{"type": "ready", "user": …, "role": …}` once authenticated, then
  `{"type": "status", "event": {instance_id, upload_id, owner, status, reason, at}}` per event.
- A missing, invalid, expired or revoked token closes the socket with code 4401; a client too
  slow to keep up with its events is closed with 1013 (it reconnects and re-reads); shutdown
  closes every socket with 1001. Protocol-level pings keep idle connections alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import WSCloseCode, WSMsgType, web
from pamqp.common import FieldTable
from pydantic import BaseModel, ConfigDict, ValidationError

from common.app.logs import get_logger
from common.app.problems import ProblemError, Unauthorized
from common.app.web import readiness_checks_key
from common.auth.identity import Caller
from common.messaging.broker import BROKER_ERRORS, TopologyNames, connect, consume, open_channel
from common.messaging.messages import Announcement, StatusChanges, StatusEvent
from gateway.auth import authenticate_token
from gateway.feed_binding import FeedBinding
from gateway.settings import GatewaySettings

log = get_logger(__name__)

CLOSE_UNAUTHORIZED = 4401
# Live events are useless after a while; the queue of a stuck replica must not grow without bound.
QUEUE_ARGUMENTS: FieldTable = {"x-message-ttl": 60_000, "x-max-length": 100_000, "x-overflow": "drop-head"}
CLIENT_FRAME_LIMIT = 16 * 1024


@dataclass(frozen=True)
class FeedSession:
    """Who a socket belongs to and until when their token is good."""

    caller: Caller
    expires_at: datetime | None = None


Authenticator = Callable[[web.Application, str], Awaitable[FeedSession]]
"""Check a bearer token exactly as the API does: raise Unauthorized when it is not good, another
ProblemError (503) when it cannot be checked right now."""


class AuthFrame(BaseModel):
    """The first frame a browser sends."""

    model_config = ConfigDict(extra="forbid")

    type: str
    token: str


@dataclass(eq=False)
class Subscriber:
    """One open socket, its token (re-checked while it is open) and the bounded queue of frames to send."""

    session: FeedSession
    token: str
    ws: web.WebSocketResponse
    outbox: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=256))
    overflowed: bool = False

    def offer(self, frame: str) -> None:
        """Queue a frame; a client that cannot keep up is marked and closed by its sender."""
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True


class EventHub:
    """The sockets connected to this replica, indexed by owner, and admins who see everything."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[Subscriber]] = {}
        self._admins: set[Subscriber] = set()
        # Sockets still waiting for their token: closed on shutdown like the others.
        self.unauthenticated: set[web.WebSocketResponse] = set()

    def __len__(self) -> int:
        return len(self._admins) + sum(len(group) for group in self._by_user.values())

    def add(self, subscriber: Subscriber) -> None:
        caller = subscriber.session.caller
        if caller.is_admin:
            self._admins.add(subscriber)
        else:
            self._by_user.setdefault(caller.user_id, set()).add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        self._admins.discard(subscriber)
        group = self._by_user.get(subscriber.session.caller.user_id)
        if group is not None:
            group.discard(subscriber)
            if not group:
                del self._by_user[subscriber.session.caller.user_id]

    def recipients(self, event: StatusEvent) -> list[Subscriber]:
        """The owner's sockets and every admin's."""
        return [*self._by_user.get(event.owner, ()), *self._admins]

    def dispatch(self, event: StatusEvent) -> int:
        """Queue `event` for every socket allowed to see it; returns how many."""
        targets = self.recipients(event)
        if targets:
            frame = status_frame(event)
            for subscriber in targets:
                subscriber.offer(frame)
        return len(targets)

    def subscribers(self) -> list[Subscriber]:
        return [*self._admins, *(s for group in self._by_user.values() for s in group)]

    async def close_all(self, code: int, message: bytes) -> None:
        """Close every socket (shutdown): clients see a clean close and reconnect elsewhere."""
        sockets = [*self.unauthenticated, *(s.ws for s in self.subscribers())]
        await asyncio.gather(*(ws.close(code=code, message=message) for ws in sockets), return_exceptions=True)


def status_frame(event: StatusEvent) -> str:
    """The frame a client gets for one event (no correlation or message ids: they are internal)."""
    body = {
        "instance_id": event.instance_id,
        "upload_id": event.upload_id,
        "owner": event.owner,
        "status": event.status.value,
        "reason": event.reason,
        "at": event.created_at.isoformat(),
    }
    return json.dumps({"type": "status", "event": body})


event_hub_key = web.AppKey("event_hub", EventHub)
events_authenticator_key: web.AppKey[Authenticator] = web.AppKey("events_authenticator")
events_settings_key = web.AppKey("events_settings", GatewaySettings)
events_connection_key = web.AppKey("events_connection", AbstractRobustConnection)
feed_binding_key = web.AppKey("feed_binding", FeedBinding)


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer` header, if the client sent one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def _authenticate(app: web.Application, token: str) -> FeedSession | None:
    """The session behind `token`, or None when it is refused (401).

    Any other problem (the token check is unavailable: 503) propagates; a refusal logs the user
    out in the portal, an outage must not.
    """
    try:
        return await app[events_authenticator_key](app, token)
    except Unauthorized as exc:
        log.info("events_auth_refused", reason=exc.detail)
        return None


async def authenticate_with_api(app: web.Application, token: str) -> FeedSession:
    """The API's own check (`gateway.auth`): signature, expiry, not revoked, account enabled."""
    caller, expires_at = await authenticate_token(app, token)
    return FeedSession(caller, expires_at)


async def _first_frame_token(ws: web.WebSocketResponse, timeout: float) -> str | None:
    """The token of the client's first frame, or None when it is late or not an auth frame."""
    try:
        message = await ws.receive(timeout=timeout)
    except TimeoutError:
        return None
    if message.type is not WSMsgType.TEXT:
        return None
    try:
        frame = AuthFrame.model_validate_json(message.data)
    except ValidationError:
        return None
    return frame.token if frame.type == "auth" else None


async def _send_loop(subscriber: Subscriber, app: web.Application) -> None:
    """Send queued frames; every `events_token_recheck` seconds (and at expiry) check the token again."""
    settings = app[events_settings_key]
    ws = subscriber.ws
    while not ws.closed:
        wait = settings.events_token_recheck
        if subscriber.session.expires_at is not None:
            wait = min(wait, max(0.0, (subscriber.session.expires_at - datetime.now(UTC)).total_seconds()))
        try:
            frame = await asyncio.wait_for(subscriber.outbox.get(), timeout=wait)
        except TimeoutError:
            try:
                authorised = await _still_authorised(subscriber, app)
            except ProblemError as exc:  # cannot tell right now: keep the socket, ask again next time
                log.warning("events_token_check_unavailable", reason=exc.detail)
                authorised = True
            if not authorised:
                await ws.close(code=CLOSE_UNAUTHORIZED, message=b"token expired or revoked")
            continue
        if subscriber.overflowed:
            log.warning("events_client_too_slow", user=subscriber.session.caller.user_id)
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow; reconnect and re-read")
            return
        await ws.send_str(frame)


async def _still_authorised(subscriber: Subscriber, app: web.Application) -> bool:
    """The token has not expired, and the API would still accept it (not revoked, account not disabled)."""
    expires_at = subscriber.session.expires_at
    if expires_at is not None and expires_at <= datetime.now(UTC):
        return False
    return await _authenticate(app, subscriber.token) is not None


async def handle_events(request: web.Request) -> web.StreamResponse:
    """`GET /api/events`: upgrade to a WebSocket and stream the caller's status events."""
    app = request.app
    settings = app[events_settings_key]
    ws = web.WebSocketResponse(heartbeat=settings.events_heartbeat, max_msg_size=CLIENT_FRAME_LIMIT, timeout=2.0)
    if not ws.can_prepare(request).ok:
        raise ProblemError("GET /api/events is a WebSocket: connect with a WebSocket client.", status=426)
    token = bearer_token(request)
    session = await _authenticate(app, token) if token is not None else None
    if token is not None and session is None:
        raise Unauthorized("The bearer token is missing, invalid, expired or revoked.")
    await ws.prepare(request)
    if token is None:
        hub = app[event_hub_key]
        hub.unauthenticated.add(ws)
        try:
            token = await _first_frame_token(ws, settings.events_auth_timeout)
            session = await _authenticate(app, token) if token is not None else None
        except ProblemError as exc:
            log.warning("events_token_check_unavailable", reason=exc.detail)
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"cannot check the token now; reconnect")
            return ws
        finally:
            hub.unauthenticated.discard(ws)
    if ws.closed:
        return ws
    if token is None or session is None:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"authentication required")
        return ws
    return await _serve(Subscriber(session, token, ws), app)


async def _serve(subscriber: Subscriber, app: web.Application) -> web.WebSocketResponse:
    hub, binding = app[event_hub_key], app[feed_binding_key]
    ws = subscriber.ws
    caller = subscriber.session.caller
    try:
        await binding.attach()  # before `ready`: every event after it reaches this socket
    except BROKER_ERRORS as exc:
        log.warning("events_feed_bind_failed", error=type(exc).__name__)
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"the feed is unavailable; reconnect shortly")
        return ws
    subscriber.offer(json.dumps({"type": "ready", "user": caller.user_id, "role": caller.role.value}))
    hub.add(subscriber)
    sender = asyncio.create_task(_send_loop(subscriber, app))
    log.info("events_connected", user=caller.user_id, role=caller.role.value, sockets=len(hub))
    try:
        async for _ in ws:  # clients have nothing more to say; reading handles pings and the close
            pass
    finally:
        hub.remove(subscriber)
        sender.cancel()
        try:
            # A frame sent just as the client left fails with ConnectionResetError: nothing to report.
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
        finally:
            await binding.detach()
        log.info("events_disconnected", user=caller.user_id, code=ws.close_code, sockets=len(hub))
    return ws


def _replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def events_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Consume `P.events` through this replica's own exclusive queue; close every socket on the way out."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        hub = app[event_hub_key]
        names = TopologyNames(settings.amqp_prefix)
        replica = _replica_name()
        connection = await connect(settings, f"gateway-events-{replica}")
        try:
            channel = await open_channel(connection, prefetch=256)
            exchange = await channel.declare_exchange(names.events, aio_pika.ExchangeType.FANOUT, durable=True)
            queue = await channel.declare_queue(
                f"{names.events}.gateway.{replica}", exclusive=True, auto_delete=True, arguments=QUEUE_ARGUMENTS
            )
            app[feed_binding_key] = FeedBinding(queue, exchange)  # bound while a socket is open

            async def handle_announcement(announcement: Announcement, _: AbstractIncomingMessage) -> None:
                message = announcement.root
                for event in message.events if isinstance(message, StatusChanges) else [message]:
                    hub.dispatch(event)

            await consume(queue, handle_announcement, Announcement)
            app[events_connection_key] = connection
            log.info("events_feed_started", queue=queue.name)
            yield
        finally:
            await hub.close_all(WSCloseCode.GOING_AWAY, b"server shutdown")
            await connection.close()

    return context


async def _close_sockets(app: web.Application) -> None:
    """on_shutdown: close the sockets before the server waits for handlers to finish."""
    await app[event_hub_key].close_all(WSCloseCode.GOING_AWAY, b"server shutdown")


async def events_ready(app: web.Application) -> None:
    """Readiness: the feed's RabbitMQ connection is open."""
    if app[events_connection_key].is_closed:
        raise ConnectionError("the events feed's RabbitMQ connection is closed")


def setup_events(
    app: web.Application, settings: GatewaySettings, authenticate: Authenticator = authenticate_with_api
) -> None:
    """Add the live feed to the gateway: route, AMQP consumer, shutdown and readiness hooks."""
    app[event_hub_key] = EventHub()
    app[events_settings_key] = settings
    app[events_authenticator_key] = authenticate
    app.router.add_get("/api/events", handle_events, name="events")
    app.cleanup_ctx.append(events_context(settings))
    app.on_shutdown.append(_close_sockets)
    app[readiness_checks_key].append(events_ready)
