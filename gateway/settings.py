"""Settings of gateway (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field

from common.app.settings import BaseServiceSettings, ClientLogBodyLimit, ElementsBodyLimit
from gateway.auth_settings import GatewayAuthSettings


class GatewaySettings(BaseServiceSettings, GatewayAuthSettings, ElementsBodyLimit, ClientLogBodyLimit):
    """Settings of gateway."""

    gateway_port: int = Field(default=8080, ge=1, le=65535, description="TCP port of gateway (`GATEWAY_PORT`).")
    upstream_connect_timeout: float = Field(
        default=3.0,
        gt=0,
        description="Seconds to connect to an upstream service before answering 503 (`UPSTREAM_CONNECT_TIMEOUT`).",
    )
    upstream_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a proxied request may take in all before answering 504 (`UPSTREAM_TIMEOUT`).",
    )
    events_heartbeat: float = Field(
        default=20.0, gt=0, description="Seconds between WebSocket pings on the live feed (`EVENTS_HEARTBEAT`)."
    )
    events_auth_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a feed socket may take to send its token (`EVENTS_AUTH_TIMEOUT`)."
    )
    events_token_recheck: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between re-checks of an open feed socket's token (`EVENTS_TOKEN_RECHECK`).",
    )
