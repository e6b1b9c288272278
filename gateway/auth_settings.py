"""Settings of the gateway's authentication, rate limits and request size limits."""

from __future__ import annotations

from pydantic import Field

from common.app.secret_settings import AuthSettings, ServiceTokenSettings


class GatewayAuthSettings(AuthSettings, ServiceTokenSettings):
    """Mixed into `GatewaySettings`."""

    rate_limit_per_minute: float = Field(
        default=600, gt=0, description="Average API requests per minute per user (`RATE_LIMIT_PER_MINUTE`)."
    )
    rate_limit_burst: int = Field(
        default=120, ge=1, description="Requests a user may make at once (`RATE_LIMIT_BURST`)."
    )
    login_rate_limit_per_minute: float = Field(
        default=20, gt=0, description="Login attempts per minute per client address (`LOGIN_RATE_LIMIT_PER_MINUTE`)."
    )
    login_rate_limit_burst: int = Field(
        default=10, ge=1, description="Login attempts at once (`LOGIN_RATE_LIMIT_BURST`)."
    )
    max_request_bytes: int = Field(
        default=64 * 1024**2,
        ge=1024,
        description="Largest declared body of any API request except uploads, in bytes (`MAX_REQUEST_BYTES`).",
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Seconds a token's revocation/disabled check is cached (`AUTH_CACHE_SECONDS`); 0 asks every time.",
    )
