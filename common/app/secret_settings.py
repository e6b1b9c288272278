"""Where secrets come from: environment variables, or files that `make setup` generates under `var/secrets/`.

No secret has a default in the repository. `python -m common.app.secret_settings` (run by
`make setup`) writes a random token-signing secret, a random service-token secret and a random
blob key into git-ignored, owner-only files when the environment does not provide them; a
service started without one it needs refuses to start with a message naming the variable. The
settings mixins below are combined with each service's settings class:
`class GatewaySettings(BaseServiceSettings, AuthSettings)`.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.storage.crypto import Keyring
from common.storage.crypto_keys import KeyConfigError, generate_key_spec

SECRETS_DIR = Path("var/secrets")
AUTH_SECRET_FILE = SECRETS_DIR / "auth_secret"
BLOB_KEYS_FILE = SECRETS_DIR / "blob_keys"
SERVICE_SECRET_FILE = SECRETS_DIR / "service_secret"
MIN_SECRET_LENGTH = 32


def _read_secret_file(path: str) -> str | None:
    file = Path(path)
    return file.read_text().strip() or None if file.is_file() else None


class AuthSettings(BaseSettings):
    """Signing and lifetime of access tokens (gateway verifies, results_service issues)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    auth_secret: SecretStr = Field(
        default=SecretStr(""),
        description="HMAC key signing access tokens (`AUTH_SECRET`); else read from AUTH_SECRET_FILE.",
    )
    auth_secret_file: str = Field(default=str(AUTH_SECRET_FILE), description="File holding AUTH_SECRET.")
    token_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600, description="Lifetime of an access token.")
    token_leeway_seconds: int = Field(default=10, ge=0, le=300, description="Clock skew tolerated on expiry.")
    max_auth_body: int = Field(
        default=16 * 1024, ge=256, description="Largest login/user/audit body, in bytes (`MAX_AUTH_BODY`)."
    )

    @model_validator(mode="after")
    def _require_secret(self) -> AuthSettings:
        secret = self.auth_secret.get_secret_value()
        if not secret:
            secret = _read_secret_file(self.auth_secret_file) or ""
            object.__setattr__(self, "auth_secret", SecretStr(secret))
        if not secret:
            raise ValueError(
                f"AUTH_SECRET is not set and {self.auth_secret_file} does not exist: "
                "run `make setup` (generates one) or set AUTH_SECRET"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"AUTH_SECRET must be at least {MIN_SECRET_LENGTH} characters")
        return self


class ServiceTokenSettings(BaseSettings):
    """The key of the service tokens that gateway, ingest_service and operators' tools present to results_service
    and ingest_service (`common.auth.service_tokens`).

    It must differ from AUTH_SECRET: a user's access token signed with AUTH_SECRET must never pass as the proof
    that a service of this deployment is calling. Checked here whenever both are in one settings object, with
    AUTH_SECRET read from its file if need be (whichever mixin's validator runs first).
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    service_secret: SecretStr = Field(
        default=SecretStr(""),
        description="HMAC key signing service tokens (`SERVICE_SECRET`); else read from SERVICE_SECRET_FILE.",
    )
    service_secret_file: str = Field(default=str(SERVICE_SECRET_FILE), description="File holding SERVICE_SECRET.")

    @model_validator(mode="after")
    def _require_service_secret(self) -> ServiceTokenSettings:
        secret = self.service_secret.get_secret_value()
        if not secret:
            secret = _read_secret_file(self.service_secret_file) or ""
            object.__setattr__(self, "service_secret", SecretStr(secret))
        if not secret:
            raise ValueError(
                f"SERVICE_SECRET is not set and {self.service_secret_file} does not exist: "
                "run `make setup` (generates one) or set SERVICE_SECRET"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"SERVICE_SECRET must be at least {MIN_SECRET_LENGTH} characters")
        auth_secret = getattr(self, "auth_secret", None)
        if isinstance(auth_secret, SecretStr):
            auth = auth_secret.get_secret_value() or _read_secret_file(str(getattr(self, "auth_secret_file", "")))
            if auth == secret:
                raise ValueError(
                    "SERVICE_SECRET must differ from AUTH_SECRET (user tokens must not pass as service tokens)"
                )
        return self


class BlobKeySettings(BaseSettings):
    """The blob store's 32-byte master keys (Tink AES256-GCM-HKDF streaming) and the id of the one sealing new blobs."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    blob_keys: SecretStr = Field(
        default=SecretStr(""),
        description="`kid1:base64key,kid2:base64key` (`BLOB_KEYS`); else read from BLOB_KEYS_FILE.",
    )
    blob_keys_file: str = Field(default=str(BLOB_KEYS_FILE), description="File holding BLOB_KEYS.")
    blob_active_key: str = Field(default="", description="Key id that encrypts new blobs; default the first listed.")

    @model_validator(mode="after")
    def _require_keys(self) -> BlobKeySettings:
        spec = self.blob_keys.get_secret_value()
        if not spec:
            spec = _read_secret_file(self.blob_keys_file) or ""
            object.__setattr__(self, "blob_keys", SecretStr(spec))
        if not spec:
            raise ValueError(
                f"BLOB_KEYS is not set and {self.blob_keys_file} does not exist: "
                "run `make setup` (generates one) or set BLOB_KEYS"
            )
        try:
            Keyring.from_spec(spec, self.blob_active_key or None)
        except KeyConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def keyring(self) -> Keyring:
        """The keyring these settings describe."""
        return Keyring.from_spec(self.blob_keys.get_secret_value(), self.blob_active_key or None)


def _write_private(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")


def ensure_local_secrets(environ: dict[str, str] | Any = os.environ) -> list[Path]:
    """Generate the secret files that neither the environment nor an earlier run provides."""
    created: list[Path] = []
    if not environ.get("AUTH_SECRET"):
        path = Path(environ.get("AUTH_SECRET_FILE") or AUTH_SECRET_FILE)
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(48))
            created.append(path)
    if not environ.get("SERVICE_SECRET"):
        path = Path(environ.get("SERVICE_SECRET_FILE") or SERVICE_SECRET_FILE)
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(48))
            created.append(path)
    if not environ.get("BLOB_KEYS"):
        path = Path(environ.get("BLOB_KEYS_FILE") or BLOB_KEYS_FILE)
        if not path.exists():
            _write_private(path, generate_key_spec("k1"))
            created.append(path)
    return created


def main() -> None:
    """`python -m common.app.secret_settings`: create missing local secret files (never prints them)."""
    for path in ensure_local_secrets():
        sys.stdout.write(f"generated {path} (owner-only; keep it out of version control)\n")


if __name__ == "__main__":
    main()
