"""Blobs at rest are sealed with Tink's streaming AEAD (AES256-GCM-HKDF), under a key named in each blob's header.

Layout of an encrypted blob (format version 2)::

    header = MAGIC "DFEB" (4) | VERSION (1) | len(kid) (1) | kid
    body   = Tink AES-GCM-HKDF streaming ciphertext, with the header as associated data

The construction is Tink's, not ours: a fresh salt and nonce prefix per blob, a per-blob key derived
with HKDF-SHA256 from the master key, segments of `SEGMENT_SIZE` bytes each sealed with AES-256-GCM,
the last one flagged, so editing, reordering, dropping or appending segments, cutting the blob short,
or editing our header (the associated data) all fail authentication. The version fixes Tink's
parameters (key size, hash, segment size): another segment size would be another version.

Rotation: new blobs are sealed with the active key; every blob names its key id, so a blob sealed
with an older key stays readable while that key is listed in `BLOB_KEYS`, and one whose key was
dropped is a clear `UnknownKeyId` rather than a failed authentication. Keysets are built from the raw
32-byte master keys (`kid:base64key`), so the key file stays one line an operator can read and extend.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from tink import proto_keyset_format, secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from common.storage.crypto_keys import KEY_BYTES, DecryptionError, KeyConfigError, UnknownKeyId, parse_keys

MAGIC = b"DFEB"
VERSION = 2
SEGMENT_SIZE = 64 * 1024  # Tink's parameter; against 4 KiB and 1 MiB: the same cost to seal, the cheapest to read
TAG_BYTES = 16
TINK_HEADER_BYTES = 1 + KEY_BYTES + 7  # Tink's own header: its length, the salt, the nonce prefix
_FIXED = struct.Struct(">4sBB")
_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"

streaming_aead.register()


def _primitive(master: bytes) -> streaming_aead.StreamingAead:
    """Tink's streaming AEAD over a keyset of one key: `master` with the parameters of this format version."""
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=SEGMENT_SIZE, derived_key_size=KEY_BYTES, hkdf_hash_type=common_pb2.SHA256
    )
    key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(version=0, params=params, key_value=master)
    keyset = tink_pb2.Keyset(
        primary_key_id=1,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url=_TYPE_URL, value=key.SerializeToString(), key_material_type=tink_pb2.KeyData.SYMMETRIC
                ),
                status=tink_pb2.ENABLED,
                key_id=1,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return cast(streaming_aead.StreamingAead, handle.primitive(streaming_aead.StreamingAead))


def plaintext_size(body_size: int) -> int:
    """Plaintext bytes of a Tink ciphertext of `body_size` bytes (every segment but the last is full).

    Lets a reader answer `seek(0, SEEK_END)` without decrypting; raises when no valid ciphertext has this size.
    """
    segments = max(1, -(-body_size // SEGMENT_SIZE))
    last = body_size - (segments - 1) * SEGMENT_SIZE - (TINK_HEADER_BYTES if segments == 1 else 0)
    if last < TAG_BYTES:
        raise DecryptionError("encrypted blob is truncated (final segment missing)")
    return body_size - TINK_HEADER_BYTES - segments * TAG_BYTES


class Keyring:
    """The configured master keys and the id of the one that seals new blobs (picklable: worker processes)."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if active not in keys:
            raise KeyConfigError(f"BLOB_ACTIVE_KEY {active!r} is not one of the BLOB_KEYS ids")
        self._keys = dict(keys)
        self.active = active
        self._primitives: dict[str, streaming_aead.StreamingAead] = {}

    @classmethod
    def from_spec(cls, spec: str, active: str | None = None) -> Keyring:
        """Build from the `BLOB_KEYS` text; the active key defaults to the first listed."""
        keys = parse_keys(spec)
        return cls(keys, active or next(iter(keys)))

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The configured key ids."""
        return tuple(self._keys)

    def __getstate__(self) -> dict[str, Any]:
        return {"_keys": self._keys, "active": self.active}  # Tink primitives are rebuilt in the receiving process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _primitives={})

    def _aead(self, kid: str) -> streaming_aead.StreamingAead:
        aead = self._primitives.get(kid)
        if aead is None:
            master = self._keys.get(kid)
            if master is None:
                raise UnknownKeyId(f"blob is sealed with key id {kid!r}, which is not configured in BLOB_KEYS")
            aead = self._primitives[kid] = _primitive(master)
        return aead

    def encrypting(self, destination: BinaryIO) -> io.BufferedWriter:
        """Write the header of a new blob to `destination`; return the stream that seals what is written to it.

        Tink's unbuffered stream is its `raw`: it takes `bytes` without a copy (any other buffer, as the
        buffered stream passes on, is copied first). Closing writes the final segment, then closes `destination`.
        """
        header = _header(self.active)
        destination.write(header)
        return cast(io.BufferedWriter, self._aead(self.active).new_encrypting_stream(destination, header))

    def opener(self, source: BinaryIO) -> Opener:
        """Read the header at the start of `source` (left just after it): what opens this blob's body.

        Raises UnknownKeyId when the header names a key that is not configured, DecryptionError when it is no header.
        """
        header = read_header(source)
        return Opener(header, self._aead(header[_FIXED.size :].decode("ascii")))


@dataclass(frozen=True, slots=True)
class Opener:
    """One blob's header (the associated data) and the Tink primitive of the key it names."""

    header: bytes
    aead: streaming_aead.StreamingAead

    def open(self, body: BinaryIO) -> BinaryIO:
        """A forward-only plaintext stream of the ciphertext in `body`, positioned just after the header.

        Each segment is authenticated as it is read; a failure raises `tink.TinkError` from `read`.
        Closing the stream closes `body`.
        """
        return cast(BinaryIO, self.aead.new_decrypting_stream(body, self.header))


def _header(kid: str) -> bytes:
    encoded = kid.encode("ascii")
    return _FIXED.pack(MAGIC, VERSION, len(encoded)) + encoded


def read_header(source: BinaryIO) -> bytes:
    """Our header at the start of `source` (left just after it); DecryptionError when it is not one."""
    fixed = source.read(_FIXED.size)
    if len(fixed) < _FIXED.size:
        raise DecryptionError("encrypted blob is truncated (incomplete header)")
    magic, version, kid_len = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise DecryptionError("not an encrypted blob (bad magic)")
    if version != VERSION:
        raise DecryptionError(f"unsupported encrypted blob version {version}")
    kid = source.read(kid_len)
    if len(kid) < kid_len or not kid.isascii():
        raise DecryptionError("encrypted blob is truncated or corrupt (key id)")
    return fixed + kid
