"""Service tokens: the proof that a request to results_service or ingest_service comes from a service of this system.

A service token is a JWT (HS256, the library of the users' access tokens) signed with SERVICE_SECRET, a key that
only the deployment's processes hold and that differs from AUTH_SECRET, and typed `dicomflow-service+jwt` (RFC 8725,
section 3.11), so a user's access token never passes for one. It names the calling service (`iss`) and the one it is
meant for (`aud`: a token for ingest_service is refused by results_service), lives TTL_SECONDS, and carries the
identity it vouches for inside the signature (`sub`, `role`, `email`, `client`): the identity cannot be swapped or
added by a header, because there is no identity header any more.

Signing costs a few tens of microseconds, paid on every proxied request and every upload: :class:`ServiceSigner`
reuses a token per (audience, identity) for half its lifetime. :class:`ServiceVerifier` keeps the claims of the
tokens it verified (a caller sends one token for many requests) and re-checks only their lifetime. Both read an
injected clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
from cachetools import LRUCache, TTLCache
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from common.auth.bearer import AUTHORIZATION
from common.auth.identity import Caller
from common.auth.tokens import Role

ALGORITHM = "HS256"
TOKEN_TYPE = "dicomflow-service+jwt"  # noqa: S105 (a media type, not a secret)
TTL_SECONDS = 60
"""Lifetime of a service token; a verifier refuses any token that claims a longer one."""
LEEWAY_SECONDS = 5
"""Clock skew between two hosts of the deployment tolerated on `iat` and `exp`."""
REQUIRED_CLAIMS = ("iss", "aud", "iat", "exp")
CACHE_MAX = 10_000

Clock = Callable[[], float]
"""Seconds since the epoch, like `time.time` (the production clock)."""


class InvalidServiceToken(Exception):
    """The token is not a current service token of this deployment for this service; the message says why."""


class ServiceClaims(BaseModel):
    """The verified claims of a service token: who signed it, for whom, and the identity it vouches for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iss: str = Field(min_length=1, max_length=64)
    aud: str = Field(min_length=1, max_length=64)
    iat: StrictInt
    exp: StrictInt
    sub: str | None = Field(default=None, min_length=1, max_length=128)
    role: Role | None = None
    email: str | None = Field(default=None, max_length=320)
    client: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _user_has_role(self) -> ServiceClaims:
        if (self.sub is None) != (self.role is None):
            raise ValueError("`sub` and `role` come together")
        return self

    def caller(self) -> Caller | None:
        """The user the calling service acts for; None for a call of the service's own (login, introspection,
        a registration batch, an operator's tool)."""
        if self.sub is None or self.role is None:
            return None
        return Caller(user_id=self.sub, role=self.role, email=self.email, client=self.client)


def _payload(issuer: str, audience: str, caller: Caller | None, client: str | None, now: int) -> dict[str, object]:
    payload: dict[str, object] = {"iss": issuer, "aud": audience, "iat": now, "exp": now + TTL_SECONDS}
    if caller is not None:
        payload.update(sub=caller.user_id, role=caller.role.value)
        if caller.email:
            payload["email"] = caller.email
        client = caller.client or client
    if client:
        payload["client"] = client
    return payload


class ServiceSigner:
    """Signs the service tokens of one calling service (`issuer`)."""

    def __init__(self, secret: str, issuer: str, *, clock: Clock = time.time) -> None:
        self._secret = secret
        self.issuer = issuer
        self.clock = clock
        # Half the lifetime: a reused token always has at least TTL_SECONDS / 2 left when it is sent.
        self._tokens: TTLCache[tuple[str, Caller | None, str | None], str] = TTLCache(
            maxsize=CACHE_MAX, ttl=TTL_SECONDS / 2, timer=clock
        )

    def token(self, audience: str, caller: Caller | None = None, *, client: str | None = None) -> str:
        """A current token for `audience` vouching for `caller` (None: the service calls on its own behalf;
        `client` then names the address it acts for, as the gateway's login relay does)."""
        key = (audience, caller, client)
        token = self._tokens.get(key)
        if token is None:
            payload = _payload(self.issuer, audience, caller, client, int(self.clock()))
            token = jwt.encode(payload, self._secret, algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE})
            self._tokens[key] = token
        return token

    def headers(self, audience: str, caller: Caller | None = None, *, client: str | None = None) -> dict[str, str]:
        """The `Authorization: Bearer <service token>` header of a request to `audience`."""
        return {AUTHORIZATION: f"Bearer {self.token(audience, caller, client=client)}"}


def decode_service_token(token: str, secret: str, audience: str) -> ServiceClaims:
    """The claims of a token signed with `secret` for `audience` (lifetime not checked: see :func:`ensure_fresh`)."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
        token_type = jwt.get_unverified_header(token).get("typ")  # the signature covers the header too
    except jwt.InvalidSignatureError as exc:
        raise InvalidServiceToken("its signature is invalid") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidServiceToken("it is meant for another service") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidServiceToken(f"it lacks the `{exc.claim}` claim") from exc
    except jwt.PyJWTError as exc:
        raise InvalidServiceToken("it is malformed") from exc
    if token_type != TOKEN_TYPE:
        raise InvalidServiceToken("it is not a service token")
    try:
        claims = ServiceClaims.model_validate(payload)
    except ValidationError as exc:
        raise InvalidServiceToken("it carries unexpected claims") from exc
    if not 0 < claims.exp - claims.iat <= TTL_SECONDS:
        raise InvalidServiceToken(f"its lifetime is not between 1 and {TTL_SECONDS} seconds")
    return claims


def ensure_fresh(claims: ServiceClaims, *, leeway_seconds: int = LEEWAY_SECONDS, clock: Clock = time.time) -> None:
    """Raise :class:`InvalidServiceToken` unless `clock()` lies within the token's lifetime, give or take the leeway."""
    now = clock()
    if claims.exp + leeway_seconds <= now:
        raise InvalidServiceToken("it has expired")
    if claims.iat - leeway_seconds > now:
        raise InvalidServiceToken("it is not valid yet")


class ServiceVerifier:
    """Verifies the service tokens presented to one service (`audience`)."""

    def __init__(
        self, secret: str, audience: str, *, leeway_seconds: int = LEEWAY_SECONDS, clock: Clock = time.time
    ) -> None:
        self._secret = secret
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self.clock = clock
        self._verified: LRUCache[str, ServiceClaims] = LRUCache(maxsize=CACHE_MAX)

    def verify(self, token: str) -> ServiceClaims:
        """The claims of a current token for this service, or :class:`InvalidServiceToken`.

        Claims are kept by the token's exact text once its signature verified (any other text is verified
        afresh); the lifetime is checked on every use.
        """
        claims = self._verified.get(token)
        if claims is None:
            claims = decode_service_token(token, self._secret, self.audience)
            ensure_fresh(claims, leeway_seconds=self.leeway_seconds, clock=self.clock)
            self._verified[token] = claims
            return claims
        try:
            ensure_fresh(claims, leeway_seconds=self.leeway_seconds, clock=self.clock)
        except InvalidServiceToken:
            self._verified.pop(token, None)
            raise
        return claims
