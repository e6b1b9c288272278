"""AES-256-GCM encryption of blobs at rest, streamed in chunks, with key ids for rotation.

Layout of an encrypted blob (format version 1)::

    header  = MAGIC(4) | VERSION(1) | len(kid)(1) | kid | salt(16) | nonce_prefix(7) | chunk_size(4, big-endian)
    body    = chunk_0 | chunk_1 | ... | chunk_n      each chunk = AES-GCM(plaintext[<= chunk_size]) + tag(16)

Each blob gets its own AES-256 key, derived with HKDF-SHA256 from the master key named by `kid`
and a random salt, so nonces never repeat across blobs. The nonce of chunk i is
`nonce_prefix | i (4 bytes) | final flag (1 byte)` and every chunk authenticates the header as
associated data (the "STREAM" construction): reordering, dropping, appending or truncating
chunks, or editing the header, makes decryption fail. Streaming holds at most one chunk, so a
2 GB file goes through in 64 KiB pieces.

Chunks are sealed and opened with `encrypt_into`/`decrypt_into` from memoryview slices of the input
straight into one output of exact size: a blob held whole costs one allocation and no copy beyond
the cipher's pass, and a streamed piece copies only the partial chunk it leaves behind.

Rotation: new blobs are written with the active key; old blobs name their key id in their
header and stay readable as long as that key is kept in `BLOB_KEYS`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.storage.crypto_keys import KEY_BYTES, CryptoError, DecryptionError, KeyConfigError, UnknownKeyId, parse_keys

MAGIC = b"DFEB"
VERSION = 1
SALT_BYTES = 16
PREFIX_BYTES = 7
TAG_BYTES = 16
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_CHUNKS = 2**32
_FIXED_HEADER = struct.Struct(">4sBB")
_CHUNK_SIZE = struct.Struct(">I")
_NONCE = struct.Struct(">7sIB")  # nonce prefix | chunk index | final flag
# Enough for the largest header: fixed part, a 255-byte key id, salt, nonce prefix, chunk size.
MAX_HEADER_BYTES = _FIXED_HEADER.size + 255 + SALT_BYTES + PREFIX_BYTES + _CHUNK_SIZE.size

Bytes: TypeAlias = bytes | bytearray | memoryview


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

    def encrypt_bytes(self, data: Bytes) -> bytearray:
        """The whole encrypted blob of a plaintext held in memory, built in one buffer of exact size."""
        return self.encryptor().seal(data)

    def decrypt_bytes(self, blob: Bytes) -> bytearray:
        """The plaintext of a whole blob held in memory, opened into one buffer of exact size."""
        view = memoryview(blob).cast("B")
        parsed = parse_header(view, self._keys)
        if parsed is None:
            raise DecryptionError("encrypted blob is truncated (incomplete header)")
        body = view[len(parsed.header) :]
        chunks, _ = body_layout(len(body), parsed.chunk_size)
        out = bytearray(len(body) - chunks * TAG_BYTES)
        parsed.open_run(0, body, memoryview(out), final=True)
        return out

    def encrypt_iter(self, chunks: Iterable[Bytes]) -> Iterator[bytes | bytearray]:
        """Encrypt a stream of plaintext pieces of any size (header first)."""
        encryptor = self.encryptor()
        return _through(encryptor, encryptor.header, chunks)

    def decrypt_iter(self, chunks: Iterable[Bytes]) -> Iterator[bytes | bytearray]:
        """Decrypt a stream of ciphertext pieces of any size; raises at the end if it was truncated."""
        return _through(self.decryptor(), b"", chunks)

    def encrypt_stream(self, chunks: AsyncIterable[Bytes]) -> AsyncIterator[bytes | bytearray]:
        """Async form of :meth:`encrypt_iter`, for aiohttp request bodies."""
        encryptor = self.encryptor()
        return _through_async(encryptor, encryptor.header, chunks)

    def decrypt_stream(self, chunks: AsyncIterable[Bytes]) -> AsyncIterator[bytes | bytearray]:
        """Async form of :meth:`decrypt_iter`."""
        return _through_async(self.decryptor(), b"", chunks)


def _through(stream: _ChunkStream, first: bytes, chunks: Iterable[Bytes]) -> Iterator[bytes | bytearray]:
    if first:
        yield first
    for chunk in chunks:
        if out := stream.update(chunk):
            yield out
    yield stream.finalize()


async def _through_async(
    stream: _ChunkStream, first: bytes, chunks: AsyncIterable[Bytes]
) -> AsyncIterator[bytes | bytearray]:
    if first:
        yield first
    async for chunk in chunks:
        if out := stream.update(chunk):
            yield out
    yield stream.finalize()


def _subkey(master: bytes, salt: bytes, kid: str) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=b"dicomflow-blob-v1:" + kid.encode())
    return AESGCM(hkdf.derive(master))


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    if index >= MAX_CHUNKS:
        raise CryptoError("blob too large for one encryption stream")
    return _NONCE.pack(prefix, index, final)


def _chunk_count(size: int, chunk_size: int, *, final: bool) -> int:
    """How many chunks of `chunk_size` (plaintext or sealed) `size` bytes make; a final run has at least one."""
    count = -(-size // chunk_size)
    return max(1, count) if final else count


def body_layout(body_size: int, chunk_size: int) -> tuple[int, int]:
    """(chunk count, sealed size of the last chunk) of a blob body; raises when the final chunk is cut short.

    Every chunk but the last has the full sealed size, so a body's layout follows from its length alone.
    """
    sealed = chunk_size + TAG_BYTES
    chunks = _chunk_count(body_size, sealed, final=True)
    last = body_size - (chunks - 1) * sealed
    if last < TAG_BYTES:
        raise DecryptionError("encrypted blob is truncated (final chunk missing)")
    return chunks, last


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """A blob's header bytes (the associated data of every chunk), its key, nonce prefix and chunk size.

    Seals and opens runs of chunks from one buffer's slices straight into another's, no bytes in between.
    """

    header: bytes
    aead: AESGCM
    prefix: bytes
    chunk_size: int

    def seal_run(self, first: int, plaintext: memoryview, out: memoryview, *, final: bool) -> int:
        """Seal `plaintext` as chunks `first`, `first + 1`, ... into `out` (its exact sealed size); return the count.

        Only a final run may end in a partial (or empty) chunk, and its last chunk carries the final flag.
        """
        size = self.chunk_size
        count = _chunk_count(len(plaintext), size, final=final)
        for i in range(count):
            piece, at = plaintext[i * size : (i + 1) * size], i * (size + TAG_BYTES)
            nonce = _nonce(self.prefix, first + i, final and i == count - 1)
            self.aead.encrypt_into(nonce, piece, self.header, out[at : at + len(piece) + TAG_BYTES])
        return count

    def open_run(self, first: int, sealed: memoryview, out: memoryview, *, final: bool) -> int:
        """Open and authenticate chunks from `first` into `out` (their exact plaintext size); return the count."""
        size, step = self.chunk_size, self.chunk_size + TAG_BYTES
        count = _chunk_count(len(sealed), step, final=final)
        for i in range(count):
            piece, at = sealed[i * step : (i + 1) * step], i * size
            nonce = _nonce(self.prefix, first + i, final and i == count - 1)
            try:
                self.aead.decrypt_into(nonce, piece, self.header, out[at : at + len(piece) - TAG_BYTES])
            except InvalidTag as exc:
                raise DecryptionError(
                    "encrypted blob failed authentication (tampered, truncated or wrong key)"
                ) from exc
        return count


def parse_header(buffer: Bytes, keys: Mapping[str, bytes]) -> BlobHeader | None:
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


class _ChunkStream:
    """What Encryptor and Decryptor share: whole chunks go straight from the input, a partial one waits in `_buffer`.

    The last complete chunk is held back (it may turn out to be the final one), so once data has arrived
    `_buffer` keeps between 1 and `_step` bytes; `finalize` processes them with the final flag.
    """

    _step: int  # input bytes per chunk: the plaintext chunk size to seal, the sealed size to open
    _grow: int  # output minus input bytes per chunk: +TAG_BYTES sealing, -TAG_BYTES opening

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._index = 0
        self._finished = False

    def update(self, data: Bytes) -> bytearray:
        """Process every chunk that `data` completes but the last; keep the rest for later or for `finalize`."""
        self._check_open()
        return self._chunks(memoryview(data).cast("B"))

    def finalize(self) -> bytearray:
        """Process the remaining bytes as the final chunk (possibly empty when sealing)."""
        self._check_open()
        self._finished = True
        with memoryview(self._buffer) as pending:
            out = bytearray(len(pending) + self._grow)
            self._run(pending, memoryview(out), final=True)
        self._buffer.clear()
        return out

    def _run(self, data: memoryview, out: memoryview, *, final: bool) -> None:
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._finished:
            raise CryptoError(f"{type(self).__name__.lower()} already finalized")

    def _chunks(self, view: memoryview) -> bytearray:
        step, pending = self._step, len(self._buffer)
        total = pending + len(view)
        count = (total - 1) // step if total > step else 0
        out = bytearray(count * (step + self._grow))
        taken = 0
        if count:
            target = memoryview(out)
            if pending:  # complete the waiting chunk from the head of `view`
                taken = step - pending
                self._buffer += view[:taken]
                with memoryview(self._buffer) as waiting:
                    self._run(waiting, target[: step + self._grow], final=False)
                self._buffer.clear()
                target, count = target[step + self._grow :], count - 1
            self._run(view[taken : taken + count * step], target, final=False)
            taken += count * step
        self._buffer += view[taken:]
        return out


class Encryptor(_ChunkStream):
    """Encrypts one blob: `seal()` a whole plaintext, or write `header`, every `update()` output, then `finalize()`."""

    def __init__(self, master: bytes, kid: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        super().__init__()
        salt, prefix, kid_bytes = os.urandom(SALT_BYTES), os.urandom(PREFIX_BYTES), kid.encode()
        fixed = _FIXED_HEADER.pack(MAGIC, VERSION, len(kid_bytes))
        self.header = b"".join((fixed, kid_bytes, salt, prefix, _CHUNK_SIZE.pack(chunk_size)))
        self._blob = BlobHeader(self.header, _subkey(master, salt, kid), prefix, chunk_size)
        self._step, self._grow = chunk_size, TAG_BYTES

    def sealed_size(self, plaintext_size: int) -> int:
        """Bytes of the whole blob (header and every chunk) for a plaintext of this size."""
        return len(self.header) + plaintext_size + _chunk_count(plaintext_size, self._step, final=True) * TAG_BYTES

    def seal(self, data: Bytes) -> bytearray:
        """The whole blob, header and every chunk, in one buffer of exact size (instead of update + finalize)."""
        out = bytearray(self.sealed_size(memoryview(data).nbytes))
        self.seal_into(data, memoryview(out))
        return out

    def seal_into(self, data: Bytes, out: memoryview) -> int:
        """Seal a whole plaintext into the start of `out` (at least `sealed_size` bytes); return the bytes written."""
        self._check_open()
        if self._index or self._buffer:
            raise CryptoError("seal() encrypts a whole blob; this encryptor has already started")
        self._finished = True
        view, head = memoryview(data).cast("B"), len(self.header)
        size = self.sealed_size(len(view))
        if len(out) < size:
            raise CryptoError(f"seal_into needs {size} bytes, got {len(out)}")
        out[:head] = self.header
        self._blob.seal_run(0, view, out[head:size], final=True)
        return size

    def _run(self, data: memoryview, out: memoryview, *, final: bool) -> None:
        self._index += self._blob.seal_run(self._index, data, out, final=final)


class Decryptor(_ChunkStream):
    """Decrypts one blob incrementally; `finalize()` raises if the stream ended early."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        super().__init__()
        self._keys = keys
        self._blob: BlobHeader | None = None
        self._step, self._grow = 0, -TAG_BYTES

    def update(self, data: Bytes) -> bytearray:
        """Decrypt every complete chunk that is known not to be the last one."""
        self._check_open()
        view = memoryview(data).cast("B")
        if self._blob is None:  # `_buffer` holds the header's first bytes (never more than MAX_HEADER_BYTES)
            head = self._buffer + view[:MAX_HEADER_BYTES]
            self._blob = parse_header(head, self._keys)
            if self._blob is None:
                self._buffer = head
                return bytearray()
            self._step = self._blob.chunk_size + TAG_BYTES
            view = view[len(self._blob.header) - len(self._buffer) :]
            self._buffer.clear()
        return self._chunks(view)

    def finalize(self) -> bytearray:
        """Decrypt the final chunk; a missing header or final chunk means truncation."""
        self._check_open()
        if self._blob is None or len(self._buffer) < TAG_BYTES:
            self._finished = True
            missing = "incomplete header" if self._blob is None else "final chunk missing"
            raise DecryptionError(f"encrypted blob is truncated ({missing})")
        return super().finalize()

    def _run(self, data: memoryview, out: memoryview, *, final: bool) -> None:
        assert self._blob is not None
        self._index += self._blob.open_run(self._index, data, out, final=final)
