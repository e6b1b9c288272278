"""The one reader of `Authorization: Bearer <token>` (RFC 6750, section 2.1).

The API needs the header; the live feed's upgrade may carry it or send the token in its first
frame instead. Both read it here, so a malformed header is refused the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.app.problems import Unauthorized

AUTHORIZATION = "Authorization"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of the Authorization header; None without one; 401 when it is not `Bearer <token>`."""
    header = headers.get(AUTHORIZATION)
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("The Authorization header must be `Bearer <token>`.", error="invalid_request")
    return token


def required_bearer_token(headers: Mapping[str, str]) -> str:
    """The token of the Authorization header; 401 when it is missing or malformed."""
    token = bearer_token(headers)
    if token is None:
        raise Unauthorized("This API needs an access token: send `Authorization: Bearer <token>`.", error=None)
    return token
