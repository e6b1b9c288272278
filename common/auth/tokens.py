"""Signed access tokens (JWT, HS256): issued by results_service at login, verified by the gateway.

A token carries who (`sub` = user id, `email`), what they may do (`role`), a unique `jti`
(so logout can revoke exactly this token) and `iat`/`exp`. Verification pins the algorithm
(no `none`, no algorithm confusion), requires every claim and tolerates a small clock skew.
The signing key comes only from settings (`AUTH_SECRET`), never from the repository.

Both `issue_token` and `verify_token` read the time from a `clock` (seconds since the epoch, the
real `time.time` unless a caller passes another), so tests move time instead of sleeping to expiry.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "email", "role", "jti", "exp", "iat")

Clock = Callable[[], float]
"""Seconds since the epoch, like `time.time` (the production clock)."""


class Role(StrEnum):
    """What a user may do: `user` sees their own resources, `admin` sees all and manages accounts."""

    USER = "user"
    ADMIN = "admin"


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or carries unexpected claims."""


class TokenClaims(BaseModel):
    """The verified claims of an access token."""

    model_config = ConfigDict(frozen=True)

    sub: str
    email: str
    role: Role
    jti: str
    exp: datetime
    iat: datetime


def issue_token(
    secret: str, *, user_id: str, email: str, role: Role, ttl_seconds: int, clock: Clock = time.time
) -> tuple[str, TokenClaims]:
    """A new signed token and its claims, issued at `clock()`."""
    issued = datetime.fromtimestamp(int(clock()), UTC)
    claims = TokenClaims(
        sub=user_id,
        email=email,
        role=role,
        jti=uuid.uuid4().hex,
        iat=issued,
        exp=issued + timedelta(seconds=ttl_seconds),
    )
    payload = {
        "sub": claims.sub,
        "email": claims.email,
        "role": claims.role.value,
        "jti": claims.jti,
        "iat": int(claims.iat.timestamp()),
        "exp": int(claims.exp.timestamp()),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


def verify_token(token: str, secret: str, *, leeway_seconds: int = 10, clock: Clock = time.time) -> TokenClaims:
    """The claims of a valid token at `clock()`, or :class:`InvalidToken` saying why (never echoing the token).

    PyJWT checks the signature, algorithm and presence of every claim; the lifetime is checked here,
    against `clock`, because PyJWT reads the system time.
    """
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise InvalidToken("the token signature is invalid") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("the token is malformed") from exc
    if not all(isinstance(payload[claim], int | float) for claim in ("exp", "iat")):  # as PyJWT's own check
        raise InvalidToken("the token is malformed")
    try:
        claims = TokenClaims.model_validate(payload)
    except ValidationError as exc:
        raise InvalidToken("the token carries unexpected claims") from exc
    ensure_current(claims, leeway_seconds=leeway_seconds, clock=clock)
    return claims


def ensure_current(claims: TokenClaims, *, leeway_seconds: int, clock: Clock = time.time) -> None:
    """Raise :class:`InvalidToken` unless `clock()` lies within the token's lifetime, give or take the leeway."""
    now = clock()
    if claims.exp.timestamp() + leeway_seconds <= now:
        raise InvalidToken("the token has expired")
    if claims.iat.timestamp() - leeway_seconds > now:
        raise InvalidToken("the token is not valid yet")
