"""The gateway's authentication edge: bearer tokens on every API route, per-user rate limits, body size limits.

Every `/api/...` route except the operations declared `public` (login, the API's documents, and
the live feed, which authenticates its first frame) needs `Authorization: Bearer <token>`;
anything else answers 401 problem+json with `WWW-Authenticate: Bearer`. A token must verify and
still be active in results_service (`gateway.authenticator`). The verified caller is put on the
request (`caller_key`); the proxy sends it upstream inside a signed service token
(`common.auth.service_tokens`), the only identity the services behind the gateway accept.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from common.app.problems import PayloadTooLarge, TooManyRequests
from common.auth.bearer import required_bearer_token
from common.auth.identity import Caller, caller_key
from common.auth.service_guard import service_signer_key
from common.schemas.accounts_api import LOGIN_PATH, PASSWORD_PATH
from gateway.authenticator import Authenticator
from gateway.keys import api_spec_key, authenticator_key, claims_key, client_session_key
from gateway.settings import GatewaySettings

# Uploads are streamed to ingest_service, which owns their size limit (`UPLOAD_MAX_BYTES`).
UNLIMITED_BODY_PREFIXES = ("/api/uploads",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_public(request: web.Request) -> bool:
    """Outside /api (portal files, health, metrics), or an operation declared `public`."""
    path = request.path
    if not (path == "/api" or path.startswith("/api/")):
        return True
    return path in request.app[api_spec_key].public_paths()


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
    if _is_public(request) or path == PASSWORD_PATH:  # a password change checks its own token (gateway.login)
        return await handler(request)
    token = required_bearer_token(request.headers)
    caller, claims = await authenticator.authenticate(request.app[client_session_key], token)
    wait = authenticator.users.acquire(f"user:{caller.user_id}")
    if wait:
        raise TooManyRequests("Rate limit reached; slow down.", retry_after=_retry_after(wait))
    request[caller_key] = Caller(caller.user_id, caller.role, caller.email, client=request.remote)
    request[claims_key] = claims
    return await handler(request)


def setup_auth(app: web.Application, settings: GatewaySettings) -> None:
    """Install the token checker and the middleware (after the shared error middleware)."""
    authenticator = Authenticator(settings, settings.results_url)
    app[authenticator_key] = authenticator
    app[service_signer_key] = authenticator.signer  # the proxy and the login relay sign with it too
    app.middlewares.append(auth_middleware)
