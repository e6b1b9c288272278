"""Application factory of gateway."""

from __future__ import annotations

from aiohttp import web

from common.web import make_app
from gateway.settings import GatewaySettings


def init_app(settings: GatewaySettings) -> web.Application:
    """Build the gateway application from its settings."""
    app = make_app("gateway")
    return app
