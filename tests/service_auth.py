"""Calling results_service or ingest_service directly in a test, as a service of this system does: with a service
token signed with the run's SERVICE_SECRET (tests/conftest.py), which is the only way to say who the user is.

- `as_user(owner, role)`: the headers the gateway sends for an authenticated user (`headers=as_user("u1")`).
- `as_service()`: the headers of a call of a service's own (ingest's registrations, the CLI's `/internal/users`).
- `signing()`: a client middleware signing every request that has no `Authorization` yet as `as_service()`
  (`aiohttp_client(app, middlewares=signing())`), for the clients of tests that call internal routes a lot.
"""

from __future__ import annotations

import functools
import os

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from aiohttp.client_middlewares import ClientMiddlewareType

from common.auth.bearer import AUTHORIZATION
from common.auth.identity import Caller
from common.auth.service_tokens import ServiceSigner
from common.auth.tokens import Role

RESULTS = "results_service"
INGEST = "ingest_service"
ISSUER = "tests"


@functools.cache
def _signer(secret: str) -> ServiceSigner:
    return ServiceSigner(secret, ISSUER)


def signer() -> ServiceSigner:
    """The tests' signer, with the run's SERVICE_SECRET."""
    return _signer(os.environ["SERVICE_SECRET"])


def as_user(
    user_id: str,
    role: str | Role = Role.USER,
    *,
    email: str | None = None,
    client: str | None = None,
    audience: str = RESULTS,
) -> dict[str, str]:
    """The Authorization header of a request acting for this user, as the gateway signs it."""
    return signer().headers(audience, Caller(user_id=user_id, role=Role(role), email=email, client=client))


def as_service(audience: str = RESULTS, *, client: str | None = None) -> dict[str, str]:
    """The Authorization header of a service's own call (no user)."""
    return signer().headers(audience, client=client)


def signing(audience: str = RESULTS) -> tuple[ClientMiddlewareType, ...]:
    """Client middlewares (for `middlewares=`) that sign each request lacking an Authorization header."""

    async def sign(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if AUTHORIZATION not in request.headers:
            request.headers.update(as_service(audience))
        return await handler(request)

    return (sign,)
