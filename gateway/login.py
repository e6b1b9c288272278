"""`POST /api/auth/login`, `/api/auth/logout` and `/api/auth/password`: relayed to results_service, which holds
the accounts.

The gateway answers them itself (rather than proxying) because logout and a password change must also drop this
replica's cached answers about the tokens they revoke, so those are refused here at once. A password change also
authenticates its token here: it is the one call a token of an account that must change its password may make
(the auth middleware answers 403 to every other), so it checks the signature and expiry itself and leaves
revocation and the account's state to results_service.
"""

from __future__ import annotations

import math

import aiohttp
from aiohttp import web

from common.app.bodies import read_body_bytes, read_model
from common.app.logs import CORRELATION_HEADER
from common.app.problems import ServiceUnavailable, TooManyRequests
from common.app.web import correlation_id_key
from common.auth.bearer import required_bearer_token
from common.auth.identity import Caller, caller_key
from common.auth.service_guard import service_signer_key
from common.schemas.auth import LogoutRequest, PasswordChange, PasswordChanged, PasswordChangeRelay
from gateway.keys import authenticator_key, claims_key, client_session_key


def _internal_headers(request: web.Request, caller: Caller | None = None) -> dict[str, str]:
    """The relay's headers: its service token vouches for the caller (logout) or only the client address (login)."""
    signer = request.app[service_signer_key]
    headers = {"Content-Type": "application/json", **signer.headers("results_service", caller, client=request.remote)}
    correlation_id = request.get(correlation_id_key)
    if correlation_id:
        headers[CORRELATION_HEADER] = correlation_id
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


async def handle_change_password(request: web.Request) -> web.Response:
    """POST /api/auth/password `{"current_password", "new_password"}`: 204; the account's other tokens are revoked."""
    authenticator = request.app[authenticator_key]
    claims = authenticator.verify(required_bearer_token(request.headers))
    wait = authenticator.users.acquire(f"user:{claims.sub}")  # the middleware's per-user limit, which it skips here
    if wait:
        raise TooManyRequests("Rate limit reached; slow down.", retry_after=max(1, math.ceil(wait)))
    body = await read_model(request, PasswordChange, max_bytes=authenticator.settings.max_auth_body)
    relay = PasswordChangeRelay(jti=claims.jti, sub=claims.sub, **dict(body))
    response = await _relay(request, "/internal/auth/password", relay.to_json(), _internal_headers(request))
    if response.status != 200 or not isinstance(response.body, bytes):
        return response
    # This token's cached answer (maybe "must change the password") and those of the tokens revoked go stale now.
    for jti in (claims.jti, *PasswordChanged.model_validate_json(response.body).revoked):
        authenticator.forget(jti)
    return web.Response(status=204)
