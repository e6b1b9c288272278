"""AES-256-GCM encryption of blobs at rest, streamed in chunks, with key ids for rotation.

Layout of an encrypted blob (format version 1)::

    header  = MAGIC(4) | VERSION(1) | len(kid)(1) | kid | salt(16) | nonce_prefix(7) | chunk_size(4, big-endian)
    body    = chunk_0 | chunk_1 | ... | chunk_n      each chunk = AES-GCM(plaintext[<= chunk_size]) + tag(16)

Each blob gets its own AES-256 key, derived with HKDF-SHA256 from the master key named by `kid`
and a random salt, so nonces never repeat across blobs. The nonce of chunk i is
`nonce_prefix | i (4 bytes) | final flag (1 byte)` and every chunk authenticates the header as
associated data (the "STREAM" construction): reordering, dropping, appending or truncating
chunks, or editing the header, makes decryption fail. Nothing is ever held in memory beyond
one chunk, so a 2 GB file streams through in 64 KiB pieces.

Rotation: new blobs are written with the active key; old blobs name their key id in their
header and stay readable as long as that key is kept in `BLOB_KEYS`.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"DFEB"
VERSION = 1
KEY_BYTES = 32
SALT_BYTES = 16
PREFIX_BYTES = 7
TAG_BYTES = 16
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_CHUNKS = 2**32
_FIXED_HEADER = struct.Struct(">4sBB")
_CHUNK_SIZE = struct.Struct(">I")


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


def is_encrypted(head: bytes) -> bool:
    """True if these first bytes of a blob start an encrypted blob (lets readers accept legacy plaintext)."""
    return head[: len(MAGIC)] == MAGIC


class Keyring:
    """The configured master keys and the id of the one that encrypts new blobs."""

    def __init__(self, keys: Mapping[str, bytes], active: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if active not in keys:
            raise KeyConfigError(f"BLOB_ACTIVE_KEY {active!r} is not one of the BLOB_KEYS ids")
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise KeyConfigError("chunk size out of range")
        self._keys = dict(keys)
        self.active = active
        self.chunk_size = chunk_size

    @classmethod
    def from_spec(cls, spec: str, active: str | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Keyring:
        """Build from the `BLOB_KEYS` text; the active key defaults to the first listed."""
        keys = parse_keys(spec)
        return cls(keys, active or next(iter(keys)), chunk_size=chunk_size)

    @property
    def keys(self) -> Mapping[str, bytes]:
        """The master keys by id (readers pick one from each blob's header)."""
        return self._keys

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The configured key ids."""
        return tuple(self._keys)

    def encryptor(self) -> Encryptor:
        """An encryptor for one new blob, under the active key."""
        return Encryptor(self._keys[self.active], self.active, self.chunk_size)

    def decryptor(self) -> Decryptor:
        """A decryptor for one blob; the key is chosen from the blob's header."""
        return Decryptor(self._keys)

    def encrypt_bytes(self, data: bytes) -> bytes:
        """Encrypt a whole (small) blob, e.g. a PNG preview."""
        encryptor = self.encryptor()
        return encryptor.header + encryptor.update(data) + encryptor.finalize()

    def decrypt_bytes(self, blob: bytes) -> bytes:
        """Decrypt a whole blob held in memory."""
        decryptor = self.decryptor()
        return decryptor.update(blob) + decryptor.finalize()

    def encrypt_iter(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Encrypt a stream of plaintext pieces of any size (header first)."""
        encryptor = self.encryptor()
        yield encryptor.header
        for chunk in chunks:
            out = encryptor.update(chunk)
            if out:
                yield out
        yield encryptor.finalize()

    def decrypt_iter(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Decrypt a stream of ciphertext pieces of any size; raises at the end if it was truncated."""
        decryptor = self.decryptor()
        for chunk in chunks:
            out = decryptor.update(chunk)
            if out:
                yield out
        yield decryptor.finalize()

    async def encrypt_stream(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """Async form of :meth:`encrypt_iter`, for aiohttp request bodies."""
        encryptor = self.encryptor()
        yield encryptor.header
        async for chunk in chunks:
            out = encryptor.update(chunk)
            if out:
                yield out
        yield encryptor.finalize()

    async def decrypt_stream(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """Async form of :meth:`decrypt_iter`."""
        decryptor = self.decryptor()
        async for chunk in chunks:
            out = decryptor.update(chunk)
            if out:
                yield out
        yield decryptor.finalize()


def _subkey(master: bytes, salt: bytes, kid: str) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=b"dicomflow-blob-v1:" + kid.encode())
    return AESGCM(hkdf.derive(master))


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    if index >= MAX_CHUNKS:
        raise CryptoError("blob too large for one encryption stream")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


class Encryptor:
    """Encrypts one blob incrementally: write `header`, then every `update()` output, then `finalize()`."""

    def __init__(self, master: bytes, kid: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        salt = os.urandom(SALT_BYTES)
        self._prefix = os.urandom(PREFIX_BYTES)
        kid_bytes = kid.encode()
        self.header = (
            _FIXED_HEADER.pack(MAGIC, VERSION, len(kid_bytes))
            + kid_bytes
            + salt
            + self._prefix
            + _CHUNK_SIZE.pack(chunk_size)
        )
        self._aead = _subkey(master, salt, kid)
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._index = 0
        self._finished = False

    def update(self, data: bytes) -> bytes:
        """Encrypt what fills whole chunks; keep the rest (at least one byte is kept for the final chunk)."""
        if self._finished:
            raise CryptoError("encryptor already finalized")
        self._buffer += data
        out = bytearray()
        # Strictly more than a chunk: the last full chunk may turn out to be the final one.
        while len(self._buffer) > self._chunk_size:
            out += self._seal(bytes(self._buffer[: self._chunk_size]), final=False)
            del self._buffer[: self._chunk_size]
        return bytes(out)

    def finalize(self) -> bytes:
        """Encrypt the remaining bytes as the final chunk (possibly empty)."""
        if self._finished:
            raise CryptoError("encryptor already finalized")
        self._finished = True
        out = self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        return out

    def _seal(self, plaintext: bytes, *, final: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, final), plaintext, self.header)
        self._index += 1
        return sealed


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """A parsed header: its bytes (the associated data of every chunk), the blob's key, nonce prefix, chunk size."""

    header: bytes
    aead: AESGCM
    prefix: bytes
    chunk_size: int


def parse_header(buffer: bytes | bytearray, keys: Mapping[str, bytes]) -> BlobHeader | None:
    """The header at the start of `buffer`, or None if `buffer` is too short to hold it all."""
    fixed = _FIXED_HEADER.size
    if len(buffer) < fixed:
        return None
    magic, version, kid_len = _FIXED_HEADER.unpack_from(buffer)
    if magic != MAGIC:
        raise DecryptionError("not an encrypted blob (bad magic)")
    if version != VERSION:
        raise DecryptionError(f"unsupported encrypted blob version {version}")
    size = fixed + kid_len + SALT_BYTES + PREFIX_BYTES + _CHUNK_SIZE.size
    if len(buffer) < size:
        return None
    header = bytes(buffer[:size])
    kid = header[fixed : fixed + kid_len].decode("ascii", errors="replace")
    salt_at = fixed + kid_len
    master = keys.get(kid)
    if master is None:
        raise UnknownKeyId(f"blob is encrypted with key id {kid!r}, which is not configured in BLOB_KEYS")
    salt = header[salt_at : salt_at + SALT_BYTES]
    prefix = header[salt_at + SALT_BYTES : salt_at + SALT_BYTES + PREFIX_BYTES]
    (chunk_size,) = _CHUNK_SIZE.unpack_from(header, size - _CHUNK_SIZE.size)
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise DecryptionError(f"corrupt encrypted blob header (chunk size {chunk_size})")
    return BlobHeader(header, _subkey(master, salt, kid), prefix, chunk_size)


def open_chunk(parsed: BlobHeader, index: int, sealed: bytes, *, final: bool) -> bytes:
    """Decrypt and authenticate chunk `index` of a blob (the final one must say so)."""
    try:
        return parsed.aead.decrypt(_nonce(parsed.prefix, index, final), sealed, parsed.header)
    except InvalidTag as exc:
        raise DecryptionError("encrypted blob failed authentication (tampered, truncated or wrong key)") from exc


class Decryptor:
    """Decrypts one blob incrementally; `finalize()` raises if the stream ended early."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._keys = keys
        self._buffer = bytearray()
        self._parsed: BlobHeader | None = None
        self._sealed_size = 0
        self._index = 0
        self._finished = False

    def update(self, data: bytes) -> bytes:
        """Decrypt every complete chunk that is known not to be the last one."""
        if self._finished:
            raise CryptoError("decryptor already finalized")
        self._buffer += data
        if self._parsed is None and not self._read_header():
            return b""
        out = bytearray()
        while len(self._buffer) > self._sealed_size:
            out += self._open(bytes(self._buffer[: self._sealed_size]), final=False)
            del self._buffer[: self._sealed_size]
        return bytes(out)

    def finalize(self) -> bytes:
        """Decrypt the final chunk; a missing header or final chunk means truncation."""
        if self._finished:
            raise CryptoError("decryptor already finalized")
        self._finished = True
        if self._parsed is None and not self._read_header():
            raise DecryptionError("encrypted blob is truncated (incomplete header)")
        if len(self._buffer) < TAG_BYTES:
            raise DecryptionError("encrypted blob is truncated (final chunk missing)")
        out = self._open(bytes(self._buffer), final=True)
        self._buffer.clear()
        return out

    def _read_header(self) -> bool:
        self._parsed = parse_header(self._buffer, self._keys)
        if self._parsed is None:
            return False
        self._sealed_size = self._parsed.chunk_size + TAG_BYTES
        del self._buffer[: len(self._parsed.header)]
        return True

    def _open(self, sealed: bytes, *, final: bool) -> bytes:
        assert self._parsed is not None
        plaintext = open_chunk(self._parsed, self._index, sealed, final=final)
        self._index += 1
        return plaintext
