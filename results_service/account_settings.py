"""Settings of results_service's accounts: token issuing, password hashing cost, the first admin."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import Field, SecretStr

from common.app.secret_settings import AuthSettings


class AccountSettings(AuthSettings):
    """Mixed into `ResultsSettings`; tests lower the argon2 cost to stay fast."""

    password_time_cost: int = Field(default=3, ge=1, le=20, description="argon2id iterations (`PASSWORD_TIME_COST`).")
    password_memory_kib: int = Field(
        default=64 * 1024, ge=8, le=4 * 1024 * 1024, description="argon2id memory in KiB (`PASSWORD_MEMORY_KIB`)."
    )
    password_parallelism: int = Field(default=4, ge=1, le=64, description="argon2id lanes (`PASSWORD_PARALLELISM`).")
    admin_email: str = Field(default="", description="First admin created by `make up` (`ADMIN_EMAIL`).")
    admin_password: SecretStr = Field(
        default=SecretStr(""), description="Its password (`ADMIN_PASSWORD`); generated and printed once if unset."
    )

    def deid_uid_key(self) -> bytes:
        """The key of de-identified UIDs, derived from AUTH_SECRET (one secret fewer to manage; the same
        study keeps its new UIDs across downloads as long as AUTH_SECRET stays)."""
        return hmac.new(self.auth_secret.get_secret_value().encode(), b"dicomflow-deid-uid-v1", hashlib.sha256).digest()
