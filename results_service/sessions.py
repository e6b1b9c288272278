"""The tokens an account holds: each one issued at login is remembered until it expires, so that a password
change can revoke the account's other tokens and an admin's reset all of them.

Revoking reuses the one rule introspection already applies (a `RevokedToken` row per token id, kept until the
token would have expired anyway): a revoked token is refused by the gateway at once where it was changed (it
drops its cached answers) and within AUTH_CACHE_SECONDS everywhere else, exactly as after a logout.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from common.auth.tokens import TokenClaims
from results_service.models.accounts import IssuedToken, RevokedToken


async def record_issued(claims: TokenClaims) -> None:
    """Remember a token just issued; tokens that have expired are forgotten on the way."""
    await IssuedToken.filter(expires_at__lt=datetime.now(UTC)).delete()
    await IssuedToken.create(jti=claims.jti, user_id=uuid.UUID(claims.sub), expires_at=claims.exp)


async def revoke_all(user_id: uuid.UUID, *, keep: str | None = None) -> list[str]:
    """Revoke every unexpired token issued to the account but `keep`; the ids revoked.

    Runs inside the caller's transaction, so the password and the revocations are stored together or not at all.
    """
    live = IssuedToken.filter(user_id=user_id, expires_at__gt=datetime.now(UTC))
    if keep is not None:
        live = live.exclude(jti=keep)
    tokens = await live
    if not tokens:
        return []
    await RevokedToken.bulk_create(
        [RevokedToken(jti=token.jti, user_id=user_id, expires_at=token.expires_at) for token in tokens],
        ignore_conflicts=True,
    )
    revoked = [token.jti for token in tokens]
    await IssuedToken.filter(jti__in=revoked).delete()
    return revoked
