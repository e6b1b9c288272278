"""Install the live feed on an application: its hub, its token check, its consumer and hooks.

The route itself (`GET /api/events` → `gateway.feed.protocol.handle_events`) is declared with its
OpenAPI operation in `gateway.routes`, like every other route of the API.
"""

from __future__ import annotations

import time

from aiohttp import web

from common.app.web import readiness_checks_key
from gateway.authenticator import Clock
from gateway.feed.consumer import close_sockets, feed_consumer_ctx, feed_ready
from gateway.feed.hub import EventHub
from gateway.feed.reauth import authenticate_with_api
from gateway.feed.session import TokenCheck
from gateway.keys import event_hub_key, feed_clock_key, feed_token_check_key


def setup_feed(app: web.Application, token_check: TokenCheck = authenticate_with_api, clock: Clock = time.time) -> None:
    """Hub, token check (and the clock that says when a token expired), AMQP consumer, shutdown and readiness
    hooks (settings under `settings_key`)."""
    app[event_hub_key] = EventHub()
    app[feed_token_check_key] = token_check
    app[feed_clock_key] = clock
    app.cleanup_ctx.append(feed_consumer_ctx)
    app.on_shutdown.append(close_sockets)
    app[readiness_checks_key].append(feed_ready)
