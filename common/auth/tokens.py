"""Signed access tokens (JWT, HS256): issued by results_service at login, verified by the gateway.

A token carries who (`sub` = user id, `email`), what they may do (`role`), a unique `jti`
(so logout can revoke exactly this token) and `iat`/`exp`. Verification pins the algorithm
(no `none`, no algorithm confusion), requires every claim and tolerates a small clock skew.
The signing key comes only from settings (`AUTH_SECRET`), never from the repository.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "email", "role", "jti", "exp", "iat")


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
    secret: str, *, user_id: str, email: str, role: Role, ttl_seconds: int, now: datetime | None = None
) -> tuple[str, TokenClaims]:
    """A new signed token and its claims; `now` is injectable for tests."""
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
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


def verify_token(token: str, secret: str, *, leeway_seconds: int = 10) -> TokenClaims:
    """The claims of a valid token, or :class:`InvalidToken` saying why (never echoing the token)."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=leeway_seconds,
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": True, "verify_iat": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the token has expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidToken("the token signature is invalid") from exc
    except jwt.ImmatureSignatureError as exc:
        raise InvalidToken("the token is not valid yet") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("the token is malformed") from exc
    try:
        return TokenClaims.model_validate(payload)
    except ValidationError as exc:
        raise InvalidToken("the token carries unexpected claims") from exc
