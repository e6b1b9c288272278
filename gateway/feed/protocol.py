"""The live feed's WebSocket protocol (JSON text frames, models in `gateway.feed.frames`).

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

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import ValidationError

from common.app.logs import get_logger
from common.app.problems import ProblemError, Unauthorized
from common.auth.bearer import bearer_token
from common.messaging.broker import BROKER_ERRORS
from gateway.feed.frames import AuthFrame, ReadyFrame
from gateway.feed.hub import Subscriber
from gateway.feed.reauth import feed_session, seconds_to_recheck, still_authorised
from gateway.keys import event_hub_key, feed_binding_key, settings_key

log = get_logger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLIENT_FRAME_LIMIT = 16 * 1024


async def _first_frame_token(ws: web.WebSocketResponse, timeout: float) -> str | None:
    """The token of the client's first frame, or None when it is late or not an auth frame."""
    try:
        message = await ws.receive(timeout=timeout)
    except TimeoutError:
        return None
    if message.type is not WSMsgType.TEXT:
        return None
    try:
        return AuthFrame.model_validate_json(message.data).token
    except ValidationError:
        return None


async def handle_events(request: web.Request) -> web.StreamResponse:
    """`GET /api/events`: upgrade to a WebSocket and stream the caller's status events."""
    app = request.app
    settings = app[settings_key]
    ws = web.WebSocketResponse(heartbeat=settings.events_heartbeat, max_msg_size=CLIENT_FRAME_LIMIT, timeout=2.0)
    if not ws.can_prepare(request).ok:
        raise ProblemError("GET /api/events is a WebSocket: connect with a WebSocket client.", status=426)
    token = bearer_token(request.headers)
    session = await feed_session(app, token) if token is not None else None
    if token is not None and session is None:
        raise Unauthorized("The bearer token is missing, invalid, expired or revoked.")
    await ws.prepare(request)
    if token is None:
        hub = app[event_hub_key]
        hub.unauthenticated.add(ws)
        try:
            token = await _first_frame_token(ws, settings.events_auth_timeout)
            session = await feed_session(app, token) if token is not None else None
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
    subscriber.offer(ReadyFrame(user=caller.user_id, role=caller.role).model_dump_json())
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


async def _send_loop(subscriber: Subscriber, app: web.Application) -> None:
    """Send queued frames; every `events_token_recheck` seconds (and at expiry) check the token again."""
    recheck_every = app[settings_key].events_token_recheck
    ws = subscriber.ws
    while not ws.closed:
        try:
            frame = await asyncio.wait_for(
                subscriber.outbox.get(), timeout=seconds_to_recheck(subscriber, app, recheck_every)
            )
        except TimeoutError:
            if not await still_authorised(subscriber, app):
                await ws.close(code=CLOSE_UNAUTHORIZED, message=b"token expired or revoked")
            continue
        if subscriber.overflowed:
            log.warning("events_client_too_slow", user=subscriber.session.caller.user_id)
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow; reconnect and re-read")
            return
        await ws.send_str(frame)
