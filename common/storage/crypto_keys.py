"""Blob keys: the errors of blob encryption, and the `BLOB_KEYS` format (`kid:base64key,...`).

Kept apart from the cipher (`common.storage.crypto`) so that settings and set-up code can read and make
key specs without the streaming machinery.
"""

from __future__ import annotations

import base64
import binascii
import os

KEY_BYTES = 32


class CryptoError(Exception):
    """A blob cannot be encrypted or decrypted (bad key configuration or bad ciphertext)."""


class KeyConfigError(CryptoError):
    """`BLOB_KEYS`/`BLOB_ACTIVE_KEY` are malformed."""


class UnknownKeyId(CryptoError):
    """The blob names a key id that is not configured (a rotated-out key)."""


class DecryptionError(CryptoError):
    """The ciphertext is corrupt, tampered with, truncated or encrypted with another key."""


def parse_keys(spec: str) -> dict[str, bytes]:
    """Parse `"kid1:base64key,kid2:base64key"` into {kid: 32-byte key}."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        kid, sep, encoded = item.partition(":")
        kid = kid.strip()
        if not sep or not kid:
            raise KeyConfigError("each BLOB_KEYS entry must look like `kid:base64key`")
        if len(kid.encode()) > 64 or not kid.isascii() or not kid.isprintable():
            raise KeyConfigError(f"key id {kid!r} must be printable ASCII of at most 64 characters")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyConfigError(f"key {kid!r} is not valid base64") from exc
        if len(key) != KEY_BYTES:
            raise KeyConfigError(f"key {kid!r} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
        if kid in keys:
            raise KeyConfigError(f"key id {kid!r} appears twice")
        keys[kid] = key
    if not keys:
        raise KeyConfigError("BLOB_KEYS holds no key")
    return keys


def generate_key_spec(kid: str) -> str:
    """A fresh `kid:base64key` entry (for `make setup` and operators rotating keys)."""
    return f"{kid}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"
