"""Application factory of gateway."""

from __future__ import annotations

from aiohttp import web

from common.app.web import make_app
from gateway.auth import setup_auth
from gateway.feed.setup import setup_feed
from gateway.keys import settings_key
from gateway.proxy import client_session_context
from gateway.readiness import setup_readiness
from gateway.routes import setup_routes
from gateway.settings import GatewaySettings


def init_app(settings: GatewaySettings) -> web.Application:
    """Build the gateway application from its settings."""
    # Request bodies are forwarded as they came: decoding a gzip upload here would hand ingest inflated bytes
    # under the client's Content-Encoding (ingest refuses encoded bodies with 415 and names what it accepts).
    app = make_app("gateway", handler_args={"auto_decompress": False})
    app[settings_key] = settings
    app.cleanup_ctx.append(
        client_session_context(
            connect_timeout=settings.upstream_connect_timeout, total_timeout=settings.upstream_timeout
        )
    )
    setup_auth(app, settings)
    setup_routes(app, settings)
    setup_feed(app)
    setup_readiness(app, settings)
    return app
