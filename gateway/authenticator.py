"""Who a bearer token belongs to: its signature and expiry checked here, its revocation by results_service.

Two bounded caches (cachetools) spare work on the hot path: the claims of tokens whose signature
was verified (a client sends the same token with every request, and decoding it costs more than
the rest of the gateway's own work on a request), and results_service's answer about each token,
kept for AUTH_CACHE_SECONDS. Both read one injected clock, so tests move time instead of sleeping.

It also holds the gateway's :class:`ServiceSigner`: every request the gateway makes to results_service
or ingest_service (introspection, login relays, proxied API calls) carries a service token, which is
the only way those services learn who the user is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
from cachetools import LRUCache, TTLCache
from pydantic import ValidationError

from common.app.logs import get_logger
from common.app.problems import Forbidden, ServiceUnavailable, Unauthorized
from common.auth.identity import Caller
from common.auth.service_tokens import ServiceSigner
from common.auth.tokens import InvalidToken, TokenClaims, ensure_current, verify_token
from common.schemas.auth import IntrospectRequest, TokenIntrospection
from common.schemas.credentials import PASSWORD_CHANGE_REQUIRED
from gateway.auth_settings import GatewayAuthSettings
from gateway.ratelimit import RateLimiter

log = get_logger(__name__)

CACHE_MAX = 10_000
Clock = Callable[[], float]


class Authenticator:
    """Verifies tokens, asks results_service whether they are still active, and rate-limits callers."""

    def __init__(self, settings: GatewayAuthSettings, results_url: str, *, clock: Clock = time.time) -> None:
        self.settings = settings
        self.results_url = results_url.rstrip("/")
        self.clock = clock
        # The real clock, not `clock`: a service token is checked against the upstream's own time.
        self.signer = ServiceSigner(settings.service_secret.get_secret_value(), "gateway")
        self.users = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.logins = RateLimiter(settings.login_rate_limit_per_minute, settings.login_rate_limit_burst)
        self._verified: LRUCache[str, TokenClaims] = LRUCache(maxsize=CACHE_MAX)
        self._introspected: TTLCache[str, TokenIntrospection] | None = (
            TTLCache(maxsize=CACHE_MAX, ttl=settings.auth_cache_seconds, timer=clock)
            if settings.auth_cache_seconds > 0
            else None
        )

    def verify(self, token: str) -> TokenClaims:
        """Signature, algorithm and expiry checked locally; 401 otherwise.

        The claims of a verified token are kept, keyed by the token's exact text (any other text is
        verified afresh); its expiry is still checked every time, and revocation is the introspection's.
        """
        leeway = self.settings.token_leeway_seconds
        claims = self._verified.get(token)
        try:
            if claims is None:
                claims = verify_token(
                    token, self.settings.auth_secret.get_secret_value(), leeway_seconds=leeway, clock=self.clock
                )
                self._verified[token] = claims
            else:
                ensure_current(claims, leeway_seconds=leeway, clock=self.clock)
        except InvalidToken as exc:
            self._verified.pop(token, None)
            raise Unauthorized(f"The access token is not valid: {exc}.") from exc
        return claims

    async def authenticate(self, session: aiohttp.ClientSession, token: str) -> tuple[Caller, TokenClaims]:
        """The caller behind a token, with their current role; 401 if it is not (or no longer) good."""
        claims = self.verify(token)
        state = await self._introspect(session, claims)
        if state.must_change_password:  # a good token, but only for POST /api/auth/password (an admin's reset)
            raise Forbidden(PASSWORD_CHANGE_REQUIRED)
        if not state.active or state.user_id is None or state.role is None:
            raise Unauthorized(f"The access token is not valid: {state.reason or 'inactive'}.")
        return Caller(user_id=state.user_id, role=state.role, email=state.email), claims

    def forget(self, jti: str) -> None:
        """Drop a cached answer (after logout, so this replica refuses the token at once)."""
        if self._introspected is not None:
            self._introspected.pop(jti, None)

    async def _introspect(self, session: aiohttp.ClientSession, claims: TokenClaims) -> TokenIntrospection:
        cached = self._introspected.get(claims.jti) if self._introspected is not None else None
        if cached is not None:
            return cached
        body = IntrospectRequest(jti=claims.jti, sub=claims.sub)
        try:
            async with session.post(
                f"{self.results_url}/internal/auth/introspect",
                data=body.model_dump_json(),
                headers={"Content-Type": "application/json", **self.signer.headers("results_service")},
            ) as response:
                if response.status != 200:
                    raise ServiceUnavailable("Cannot check the access token right now; try again shortly.")
                state = TokenIntrospection.model_validate_json(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValidationError) as exc:
            log.warning("token_check_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Cannot check the access token right now; try again shortly.") from exc
        if self._introspected is not None:
            self._introspected[claims.jti] = state
        return state
