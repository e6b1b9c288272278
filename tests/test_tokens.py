"""Access tokens: what verifies, and every way a token is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from common.auth.tokens import InvalidToken, Role, issue_token, verify_token

SECRET = "s" * 64


def test_issued_token_verifies_with_all_claims() -> None:
    now = datetime.now(UTC)
    token, claims = issue_token(SECRET, user_id="u-1", email="a@b.c", role=Role.ADMIN, ttl_seconds=600, now=now)
    verified = verify_token(token, SECRET)
    assert verified == claims
    assert verified.sub == "u-1" and verified.email == "a@b.c" and verified.role is Role.ADMIN
    assert verified.exp - verified.iat == timedelta(seconds=600)
    assert len(verified.jti) == 32


def test_each_token_has_its_own_jti() -> None:
    first = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=60)[1]
    second = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=60)[1]
    assert first.jti != second.jti


def test_expired_token_is_refused_beyond_the_leeway_only() -> None:
    past = datetime.now(UTC) - timedelta(seconds=70)
    token, _ = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=60, now=past)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(token, SECRET, leeway_seconds=5)
    assert verify_token(token, SECRET, leeway_seconds=30).sub == "u"


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
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "u", "email": "e@x", "role": "admin", "jti": "j", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(InvalidToken):
        verify_token(token, SECRET)


def test_other_algorithm_is_refused() -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "u", "email": "e@x", "role": "admin", "jti": "j", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, SECRET, algorithm="HS512")
    with pytest.raises(InvalidToken, match="malformed"):
        verify_token(token, SECRET)


@pytest.mark.parametrize("missing", ["sub", "email", "role", "jti", "exp", "iat"])
def test_token_missing_a_claim_is_refused(missing: str) -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "u", "email": "e@x", "role": "user", "jti": "j", "iat": now, "exp": now + 60}
    del claims[missing]
    with pytest.raises(InvalidToken):
        verify_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET)


def test_unknown_role_is_refused() -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "u", "email": "e@x", "role": "root", "jti": "j", "iat": now, "exp": now + 60}
    with pytest.raises(InvalidToken, match="unexpected claims"):
        verify_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET)


def test_token_issued_in_the_future_is_refused() -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    token, _ = issue_token(SECRET, user_id="u", email="e@x", role=Role.USER, ttl_seconds=7200, now=future)
    with pytest.raises(InvalidToken, match="not valid yet"):
        verify_token(token, SECRET)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z", "é.é.é"])
def test_garbage_is_refused_without_echoing_it(garbage: str) -> None:
    with pytest.raises(InvalidToken) as info:
        verify_token(garbage, SECRET)
    assert garbage not in str(info.value) or garbage == ""
