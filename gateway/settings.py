"""Settings of gateway (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field

from common.settings import BaseServiceSettings


class GatewaySettings(BaseServiceSettings):
    """Settings of gateway."""

    gateway_port: int = Field(default=8080, ge=1, le=65535, description="TCP port of gateway (`GATEWAY_PORT`).")
    elements_max_body: int = Field(
        default=32 * 1024**2,
        ge=1,
        description="Largest body accepted by POST/PUT/PATCH /api/elements, in bytes (`ELEMENTS_MAX_BODY`).",
    )
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
