"""A feed socket's token, checked when it connects and again while it stays open.

The check is the API's own (`authenticate_with_api`): signature, expiry, not revoked, account
enabled. A refusal (401) closes the socket and logs the portal out; an outage (503) must not:
the socket is kept and the token asked about again at the next re-check.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from common.app.logs import get_logger
from common.app.problems import ProblemError, Unauthorized
from gateway.feed.hub import Subscriber
from gateway.feed.session import FeedSession
from gateway.keys import authenticator_key, client_session_key, feed_clock_key, feed_token_check_key

log = get_logger(__name__)


async def authenticate_with_api(app: web.Application, token: str) -> FeedSession:
    """The API's own check (`gateway.authenticator`): the caller and when their token expires; 401 if bad."""
    caller, claims = await app[authenticator_key].authenticate(app[client_session_key], token)
    return FeedSession(caller, claims.exp)


async def feed_session(app: web.Application, token: str) -> FeedSession | None:
    """The session behind `token`, or None when it is refused (401); an outage (503) propagates."""
    try:
        return await app[feed_token_check_key](app, token)
    except Unauthorized as exc:
        log.info("events_auth_refused", reason=exc.detail)
        return None


def _now(app: web.Application) -> datetime:
    return datetime.fromtimestamp(app[feed_clock_key](), UTC)


def seconds_to_recheck(subscriber: Subscriber, app: web.Application, every: float) -> float:
    """Until the next check: `every` seconds, or sooner when the token expires before that."""
    expires_at = subscriber.session.expires_at
    if expires_at is None:
        return every
    return min(every, max(0.0, (expires_at - _now(app)).total_seconds()))


async def still_authorised(subscriber: Subscriber, app: web.Application) -> bool:
    """False once the token has expired or the API refuses it; True while it cannot be checked (an outage)."""
    expires_at = subscriber.session.expires_at
    if expires_at is not None and expires_at <= _now(app):
        return False
    try:
        return await feed_session(app, subscriber.token) is not None
    except ProblemError as exc:  # cannot tell right now: keep the socket, ask again next time
        log.warning("events_token_check_unavailable", reason=exc.detail)
        return True
