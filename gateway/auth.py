"""The gateway's authentication: bearer tokens on every API route, per-user rate limits, body size limits.

Every `/api/...` route except login, the OpenAPI document and its docs page (and the live
feed, which authenticates its first frame) needs `Authorization: Bearer <token>`; anything
else answers 401 problem+json with `WWW-Authenticate: Bearer`. A token must verify (HS256
signature, expiry with leeway) and still be active in results_service (not logged out, account
not disabled; the answer is cached for AUTH_CACHE_SECONDS). The verified caller is put on the
request (`caller_key`); the proxy sends it upstream as `X-Authenticated-User`/`-Role`, and
client-supplied copies of those headers are never forwarded.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from common.app.bodies import read_body_bytes
from common.app.logs import CORRELATION_HEADER, get_logger
from common.app.problems import PayloadTooLarge, ServiceUnavailable, TooManyRequests, Unauthorized
from common.app.web import correlation_id_key
from common.auth.identity import CLIENT_HEADER, Caller, caller_key
from common.auth.tokens import InvalidToken, TokenClaims, verify_token
from common.schemas.auth import IntrospectRequest, LogoutRequest, TokenIntrospection
from gateway.auth_settings import GatewayAuthSettings
from gateway.proxy import client_session_key, forward_to
from gateway.ratelimit import RateLimiter

log = get_logger(__name__)

LOGIN_PATH = "/api/auth/login"
LOGOUT_PATH = "/api/auth/logout"
# API paths anyone may call; every path outside /api/ (portal files, health, metrics) is public too.
PUBLIC_API_PATHS = frozenset({LOGIN_PATH, "/api/openapi.json", "/api/docs", "/api/events"})
# Streamed uploads carry their own, much larger limit (enforced by the upload route and ingest).
UNLIMITED_BODY_PREFIXES = ("/api/uploads",)
_CACHE_MAX = 10_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
claims_key = web.RequestKey("token_claims", TokenClaims)
V = TypeVar("V")


class Authenticator:
    """Verifies tokens, asks results_service whether they are still active, and rate-limits callers."""

    def __init__(self, settings: GatewayAuthSettings, results_url: str) -> None:
        self.settings = settings
        self.results_url = results_url.rstrip("/")
        self.users = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.logins = RateLimiter(settings.login_rate_limit_per_minute, settings.login_rate_limit_burst)
        self._cache: OrderedDict[str, tuple[float, TokenIntrospection]] = OrderedDict()
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()

    def verify(self, token: str) -> TokenClaims:
        """Signature, algorithm and expiry checked locally; 401 otherwise.

        A client sends the same token with every request, and decoding it costs more than the rest of
        the gateway's own work on a request: the claims of a token whose signature was verified are
        kept (keyed by the token's exact text, so any other text is verified afresh); its expiry is
        still checked every time, and revocation is the introspection's business.
        """
        leeway = self.settings.token_leeway_seconds
        claims = self._verified.get(token)
        if claims is None:
            try:
                claims = verify_token(token, self.settings.auth_secret.get_secret_value(), leeway_seconds=leeway)
            except InvalidToken as exc:
                raise Unauthorized(f"The access token is not valid: {exc}.") from exc
            _remember(self._verified, token, claims)
        elif claims.exp.timestamp() + leeway < time.time():
            del self._verified[token]
            raise Unauthorized("The access token is not valid: the token has expired.")
        return claims

    async def authenticate(self, session: aiohttp.ClientSession, token: str) -> tuple[Caller, TokenClaims]:
        """The caller behind a token, with their current role; 401 if it is not (or no longer) good."""
        claims = self.verify(token)
        state = await self._introspect(session, claims)
        if not state.active or state.user_id is None or state.role is None:
            raise Unauthorized(f"The access token is not valid: {state.reason or 'inactive'}.")
        return Caller(user_id=state.user_id, role=state.role, email=state.email), claims

    def forget(self, jti: str) -> None:
        """Drop a cached answer (after logout, so this replica refuses the token at once)."""
        self._cache.pop(jti, None)

    async def _introspect(self, session: aiohttp.ClientSession, claims: TokenClaims) -> TokenIntrospection:
        now = time.monotonic()
        cached = self._cache.get(claims.jti)
        if cached is not None and cached[0] > now:
            return cached[1]
        body = IntrospectRequest(jti=claims.jti, sub=claims.sub)
        try:
            async with session.post(
                f"{self.results_url}/internal/auth/introspect",
                data=body.model_dump_json(),
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status != 200:
                    raise ServiceUnavailable("Cannot check the access token right now; try again shortly.")
                state = TokenIntrospection.model_validate_json(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValidationError) as exc:
            log.warning("token_check_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Cannot check the access token right now; try again shortly.") from exc
        if self.settings.auth_cache_seconds > 0:
            _remember(self._cache, claims.jti, (now + self.settings.auth_cache_seconds, state))
        return state


def _remember(cache: OrderedDict[str, V], key: str, value: V) -> None:
    """Put `key` last (newest) in a cache bounded to _CACHE_MAX entries, forgetting the oldest."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_MAX:
        cache.popitem(last=False)


authenticator_key = web.AppKey("authenticator", Authenticator)


def bearer_token(request: web.Request) -> str:
    """The token of `Authorization: Bearer <token>`; 401 when absent or malformed."""
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("This API needs an access token: send `Authorization: Bearer <token>`.", error=None)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise Unauthorized("The Authorization header must be `Bearer <token>`.", error="invalid_request")
    return token.strip()


def _is_public(path: str) -> bool:
    if path in PUBLIC_API_PATHS:
        return True
    return not (path == "/api" or path.startswith("/api/"))


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, rate-limit and size-limit every API request before it is handled or proxied."""
    authenticator = request.app[authenticator_key]
    path = request.path
    if path.startswith("/api") and not path.startswith(UNLIMITED_BODY_PREFIXES):
        limit = authenticator.settings.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"The body is {request.content_length} bytes; the limit is {limit}.")
    if path == LOGIN_PATH:
        wait = authenticator.logins.acquire(f"ip:{request.remote}")
        if wait:
            raise TooManyRequests("Too many login attempts; wait and try again.", retry_after=_retry_after(wait))
    if _is_public(path):
        return await handler(request)
    caller, claims = await authenticator.authenticate(request.app[client_session_key], bearer_token(request))
    wait = authenticator.users.acquire(f"user:{caller.user_id}")
    if wait:
        raise TooManyRequests("Rate limit reached; slow down.", retry_after=_retry_after(wait))
    request[caller_key] = Caller(caller.user_id, caller.role, caller.email, client=request.remote)
    request[claims_key] = claims
    return await handler(request)


def _internal_headers(request: web.Request, caller: Caller | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", CLIENT_HEADER: request.remote or ""}
    correlation_id = request.get(correlation_id_key)
    if correlation_id:
        headers[CORRELATION_HEADER] = correlation_id
    if caller is not None:
        headers.update(caller.headers())
    return headers


async def _relay(request: web.Request, path: str, body: bytes, headers: dict[str, str]) -> web.Response:
    session = request.app[client_session_key]
    url = request.app[authenticator_key].results_url + path
    try:
        async with session.post(url, data=body, headers=headers) as upstream:
            payload = await upstream.read()
            content_type = upstream.headers.get("Content-Type", "application/json")
            extra = {k: v for k, v in upstream.headers.items() if k.lower() == "www-authenticate"}
            return web.Response(
                status=upstream.status, body=payload or None, headers={**extra, "Content-Type": content_type}
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ServiceUnavailable("results_service is unavailable; try again shortly.") from exc


async def handle_login(request: web.Request) -> web.Response:
    """POST /api/auth/login `{"email", "password"}` → `{"access_token", "token_type", "expires_at"}`."""
    max_bytes = request.app[authenticator_key].settings.max_auth_body
    body = await read_body_bytes(request, max_bytes=max_bytes)
    headers = _internal_headers(request)
    headers["Content-Type"] = request.headers.get("Content-Type", "application/json")
    return await _relay(request, "/internal/auth/login", body, headers)


async def handle_logout(request: web.Request) -> web.Response:
    """POST /api/auth/logout: revoke the token this request carries; 204."""
    claims = request[claims_key]
    body = LogoutRequest(jti=claims.jti, sub=claims.sub, expires_at=claims.exp).model_dump_json().encode()
    response = await _relay(request, "/internal/auth/logout", body, _internal_headers(request, request[caller_key]))
    if response.status == 204:
        request.app[authenticator_key].forget(claims.jti)
    return response


async def authenticate_token(app: web.Application, token: str) -> tuple[Caller, datetime]:
    """For sockets (live feed): the caller behind a raw token and when the token expires; 401 if bad."""
    caller, claims = await app[authenticator_key].authenticate(app[client_session_key], token)
    return caller, claims.exp


def setup_auth(app: web.Application, settings: GatewayAuthSettings, results_url: str) -> None:
    """Install the middleware (after the shared error middleware) and the login/logout routes."""
    app[authenticator_key] = Authenticator(settings, results_url)
    app.middlewares.append(auth_middleware)
    app.router.add_post(LOGIN_PATH, handle_login)
    app.router.add_post(LOGOUT_PATH, handle_logout)
    # Account management and the audit trail are answered (and role-checked) by results_service.
    to_results = forward_to(results_url, service="results_service", max_body=settings.max_auth_body)
    for path in ("/api/users", "/api/users/{user_id}", "/api/audit"):
        app.router.add_route("*", path, to_results)
