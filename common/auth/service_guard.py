"""The door of results_service and ingest_service: every request needs a service token of this deployment.

Both services sit behind the gateway, but "reachable only from inside" is no proof: any process that can
connect could otherwise create an admin on `/internal/users` or list every account with a forged identity.
So every route except the probes and metrics (`OPEN_PATHS`) answers 401 problem+json unless the request
carries a current service token meant for this service (`common.auth.service_tokens`). The identity the
token vouches for becomes the request's caller (`caller_key`); there is no fallback user.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from common.app.logs import get_logger
from common.app.problems import Unauthorized
from common.app.secret_settings import ServiceTokenSettings
from common.auth.bearer import bearer_token
from common.auth.identity import caller_key
from common.auth.service_tokens import Clock, InvalidServiceToken, ServiceClaims, ServiceSigner, ServiceVerifier

log = get_logger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Answered without a token: orchestrators and Prometheus probe them, and they reveal nothing of the data."""

service_verifier_key = web.AppKey("service_verifier", ServiceVerifier)
service_signer_key = web.AppKey("service_signer", ServiceSigner)
"""Signs this service's own calls to the others (ingest_service's to results_service)."""
service_claims_key = web.RequestKey("service_claims", ServiceClaims)
"""The verified claims of the request's service token (e.g. the client address the gateway relays a login for)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def service_token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admit only requests with a current service token for this service; put the identity it carries on them."""
    if request.path in OPEN_PATHS:
        return await handler(request)
    token = bearer_token(request.headers)
    if token is None:
        raise Unauthorized(
            "This service answers only the services of this deployment: a service token is needed.", error=None
        )
    try:
        claims = request.app[service_verifier_key].verify(token)
    except InvalidServiceToken as exc:
        log.warning("service_token_refused", reason=str(exc), client=request.remote)
        raise Unauthorized(f"The service token is not valid: {exc}.") from exc
    request[service_claims_key] = claims
    caller = claims.caller()
    if caller is not None:
        request[caller_key] = caller
    return await handler(request)


def setup_service_tokens(
    app: web.Application, settings: ServiceTokenSettings, service: str, *, clock: Clock = time.time
) -> None:
    """Require service tokens meant for `service` on every route but OPEN_PATHS, and sign its own calls as it.

    Installed after the shared error middleware, so a refusal is problem+json like any other."""
    secret = settings.service_secret.get_secret_value()
    app[service_verifier_key] = ServiceVerifier(secret, service, clock=clock)
    app[service_signer_key] = ServiceSigner(secret, service, clock=clock)
    app.middlewares.append(service_token_middleware)
