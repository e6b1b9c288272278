"""argon2id password hashing, run off the event loop, with constant-time behaviour for unknown accounts."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from results_service.account_settings import AccountSettings


class Passwords:
    """Hashes and verifies passwords with the configured argon2id cost.

    `verify(None, password)` checks against a dummy hash of the same cost, so a login for an
    unknown email takes as long as one with a wrong password (no account enumeration by timing).
    """

    def __init__(self, settings: AccountSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.password_time_cost,
            memory_cost=settings.password_memory_kib,
            parallelism=settings.password_parallelism,
            type=Type.ID,
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        """An argon2id hash (PHC string with salt and parameters)."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if `password` matches; always does the full work, even without a stored hash."""
        target = stored_hash if stored_hash is not None else self._dummy
        try:
            ok = await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than today's (upgraded at next login)."""
        return self._hasher.check_needs_rehash(stored_hash)
