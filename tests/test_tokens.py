"""Access tokens: what verifies, and every way a token is refused.

Time is a FakeClock handed to issue_token and verify_token: expiry is reached by moving it, never by waiting.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest

from common.auth.tokens import InvalidToken, Role, issue_token, verify_token
from tests.fake_clock import FakeClock

SECRET = "s" * 64


def _raw_claims(clock: FakeClock, **overrides: object) -> dict[str, object]:
    """The claims of a user token issued at `clock()` for 60 s, as a hand-made JWT would carry them."""
    now = int(clock())
    return {"sub": "u", "email": "e@x", "role": "user", "jti": "j", "iat": now, "exp": now + 60, **overrides}


def test_issued_token_verifies_with_all_claims() -> None:
    clock = FakeClock()
    token, claims = issue_token(SECRET, user_id="u-1", email="a@b.c", role=Role.ADMIN, ttl_seconds=600, clock=clock)
    verified = verify_token(token, SECRET, clock=clock)
    assert verified == claims
    assert verified.iat.timestamp() == int(clock())
    assert verified.sub == "u-1" and verified.email == "a@b.c" and verified.role is Role.ADMIN
    assert verified.exp - verified.iat == timedelta(seconds=600)
    assert len(verified.jti) == 32


def test_each_token_has_its_own_jti() -> None:
    first = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=60)[1]
    second = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=60)[1]
    assert first.jti != second.jti


def test_expired_token_is_refused_beyond_the_leeway_only() -> None:
    clock = FakeClock()
    token, _ = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=60, clock=clock)
    clock.advance(70)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(token, SECRET, leeway_seconds=5, clock=clock)
    assert verify_token(token, SECRET, leeway_seconds=30, clock=clock).sub == "u"


def test_a_token_verifies_until_its_expiry_plus_the_leeway() -> None:
    clock = FakeClock()
    token, claims = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=60, clock=clock)
    clock.now = claims.exp.timestamp() + 10 - 1
    assert verify_token(token, SECRET, leeway_seconds=10, clock=clock).jti == claims.jti
    clock.advance(1)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(token, SECRET, leeway_seconds=10, clock=clock)


def test_token_signed_with_another_secret_is_refused() -> None:
    token, _ = issue_token("other" * 10, user_id="u", email="e@x", role=Role.USER, ttl_seconds=60)
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(token, SECRET)


def test_token_with_edited_claims_is_refused() -> None:
    token, _ = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=60)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(f"{header}.{forged}.{signature}", SECRET)


def test_unsigned_alg_none_token_is_refused() -> None:
    claims = _raw_claims(FakeClock(), role="admin")
    token = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(InvalidToken):
        verify_token(token, SECRET)


def test_other_algorithm_is_refused() -> None:
    claims = _raw_claims(FakeClock(), role="admin")
    token = jwt.encode(claims, SECRET, algorithm="HS512")
    with pytest.raises(InvalidToken, match="malformed"):
        verify_token(token, SECRET)


@pytest.mark.parametrize("missing", ["sub", "email", "role", "jti", "exp", "iat"])
def test_token_missing_a_claim_is_refused(missing: str) -> None:
    clock = FakeClock()
    claims = _raw_claims(clock)
    del claims[missing]
    with pytest.raises(InvalidToken):
        verify_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET, clock=clock)


def test_unknown_role_is_refused() -> None:
    clock = FakeClock()
    claims = _raw_claims(clock, role="root")
    with pytest.raises(InvalidToken, match="unexpected claims"):
        verify_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET, clock=clock)


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_a_lifetime_claim_that_is_not_a_number_is_refused(claim: str) -> None:
    clock = FakeClock()
    claims = _raw_claims(clock, **{claim: "soon"})
    with pytest.raises(InvalidToken, match="malformed"):
        verify_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET, clock=clock)


def test_token_issued_in_the_future_is_refused() -> None:
    clock = FakeClock()
    token, _ = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=7200, clock=clock)
    clock.advance(-3600)  # the verifier's clock is an hour behind the issuer's
    with pytest.raises(InvalidToken, match="not valid yet"):
        verify_token(token, SECRET, clock=clock)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z", "é.é.é"])
def test_garbage_is_refused_without_echoing_it(garbage: str) -> None:
    with pytest.raises(InvalidToken) as info:
        verify_token(garbage, SECRET)
    assert garbage not in str(info.value) or garbage == ""
