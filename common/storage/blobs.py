"""Content-addressed blob store: files kept under their SHA-256, encrypted at rest, written atomically, never twice.

Uploads are streamed into a temporary file while they are hashed and encrypted (AES-256-GCM,
`common.storage.crypto`, under the keyring's active key), so no file is ever held whole in memory and
no plaintext ever reaches the disk, not even in `tmp/`; `commit` then moves the file under its
key. The key is the SHA-256 of the *plaintext*, so the same bytes uploaded twice are still one
blob (each encryption has its own salt, so ciphertexts differ). A file held whole (`put_bytes`) is
sealed into this thread's aligned buffer and written from it with O_DIRECT (`common.storage.direct_write`:
no page-cache copy), or, where the filesystem refuses O_DIRECT, sealed into one buffer and written
with `os.write`. Every read
decrypts: whole into one buffer (`read_bytes`, for small blobs such as previews) or through a
seekable plaintext file object (`open`, `open_staged`, `iter_chunks`) that holds a chunk at a time
(processors read their files frame by frame through it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from common.storage.crypto import Bytes, Encryptor, Keyring, is_encrypted
from common.storage.crypto_keys import CryptoError
from common.storage.crypto_reader import open_decrypting
from common.storage.direct_write import MAX_DIRECT_BYTES, aligned_buffer, open_direct, write_direct

_HEX = frozenset("0123456789abcdef")
READ_CHUNK = 64 * 1024


class BlobError(Exception):
    """Base of blob store errors."""


class BlobTooLarge(BlobError):
    """A stream went over the byte limit it was written with."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class BlobNotFound(BlobError):
    """No blob is stored under this key."""


class BlobUnreadable(BlobError):
    """The blob cannot be decrypted: its key id is no longer configured, or it is corrupt or tampered with."""


@dataclass(frozen=True)
class StagedFile:
    """A fully written (encrypted) temporary file, hashed, waiting to be committed or discarded.

    `sha256` and `size` are those of the plaintext; read it back with `BlobStore.open_staged`.
    """

    path: Path
    sha256: str
    size: int


def _check_key(sha256: str) -> str:
    if len(sha256) != 64 or not _HEX.issuperset(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


def _write_all(fd: int, data: Bytes) -> None:
    """Write every byte of `data` to `fd` from the buffer itself (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds the new entry."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Encrypted files stored at `root/ab/cd/<sha256>`; temporary files live in `root/tmp/` (same filesystem).

    Picklable (root and keyring), so a worker process can be handed the store it reads from.
    """

    def __init__(self, root: Path, keyring: Keyring, *, direct_io: bool = True) -> None:
        self.root = root
        self.keyring = keyring
        self.direct_io = direct_io
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Where the blob with this key lives (whether or not it exists)."""
        key = _check_key(sha256)
        return self.root / key[:2] / key[2:4] / key

    def exists(self, sha256: str) -> bool:
        """True when a blob is stored under this key."""
        return self.path(sha256).is_file()

    def _open_temp(self) -> tuple[BinaryIO, Path]:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="staged-")
        return os.fdopen(fd, "wb"), Path(name)

    async def write_stream(self, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> StagedFile:
        """Write `chunks` encrypted to a temporary file while hashing the plaintext.

        Raise BlobTooLarge past `max_bytes` (of plaintext); the temporary file is removed if the stream fails.
        """
        handle, path = await asyncio.to_thread(self._open_temp)
        digest = hashlib.sha256()
        encryptor = self.keyring.encryptor()
        size = 0
        try:
            await asyncio.to_thread(handle.write, encryptor.header)
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(max_bytes)
                await asyncio.to_thread(self._absorb, handle, digest, encryptor, chunk)
            await asyncio.to_thread(handle.write, encryptor.finalize())
            await asyncio.to_thread(self._flush_and_close, handle)
        except BaseException:
            handle.close()
            path.unlink(missing_ok=True)
            raise
        return StagedFile(path=path, sha256=digest.hexdigest(), size=size)

    @staticmethod
    def _absorb(handle: BinaryIO, digest: hashlib._Hash, encryptor: Encryptor, chunk: bytes) -> None:
        """Hash and encrypt one piece and write what it completes (off the event loop: all three cost CPU)."""
        digest.update(chunk)
        sealed = encryptor.update(chunk)
        if sealed:
            handle.write(sealed)

    @staticmethod
    def _flush_and_close(handle: BinaryIO) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    def _commit(self, staged: StagedFile) -> str:
        target = self.path(staged.sha256)
        if target.is_file() and self._encrypted_on_disk(target):
            staged.path.unlink(missing_ok=True)
            return staged.sha256
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.path.replace(target)
        _fsync_dir(target.parent)
        return staged.sha256

    async def commit(self, staged: StagedFile) -> str:
        """Move a staged file under its key (a no-op when the key exists); return the key."""
        return await asyncio.to_thread(self._commit, staged)

    async def discard(self, staged: StagedFile) -> None:
        """Remove a staged file that will not be kept."""
        await asyncio.to_thread(staged.path.unlink, True)

    @staticmethod
    def _encrypted_on_disk(target: Path) -> bool:
        """False for a plaintext blob stored before encryption was switched on (a new copy replaces it)."""
        with target.open("rb") as handle:
            return is_encrypted(handle.read(8))

    def _put_bytes(self, data: Bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.is_file() and self._encrypted_on_disk(target):
            return sha256
        staged = self._write_direct(data) if self.direct_io else None
        if staged is None:
            staged = self._write_buffered(data)
        return self._commit(StagedFile(path=staged, sha256=sha256, size=memoryview(data).nbytes))

    def _write_direct(self, data: Bytes) -> Path | None:
        """Seal into this thread's aligned buffer and write it with O_DIRECT; None when that is not possible here."""
        encryptor = self.keyring.encryptor()
        size = encryptor.sealed_size(memoryview(data).nbytes)
        if size > MAX_DIRECT_BYTES:
            return None
        path = self.tmp / f"staged-{os.urandom(12).hex()}"
        fd = open_direct(path)
        if fd is None:
            self.direct_io = False  # this filesystem refuses O_DIRECT: stop trying
            return None
        try:
            try:
                buffer = aligned_buffer(size)
                encryptor.seal_into(data, buffer)
                write_direct(fd, buffer, size)
            finally:
                os.close(fd)
        except OSError as exc:
            path.unlink(missing_ok=True)
            if exc.errno != errno.EINVAL:
                raise
            self.direct_io = False  # opened, but its writes refused (an alignment it wants and we cannot know)
            return None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _write_buffered(self, data: Bytes) -> Path:
        sealed = self.keyring.encrypt_bytes(data)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="staged-")
        try:
            try:
                _write_all(fd, sealed)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    async def put_bytes(self, data: Bytes) -> str:
        """Store a small blob (a PNG preview, say) given whole; return its key."""
        return await asyncio.to_thread(self._put_bytes, data)

    def put_bytes_sync(self, data: Bytes) -> str:
        """Blocking `put_bytes`, for code already off the event loop (ingest stores a small file in one thread call)."""
        return self._put_bytes(data)

    def _read_bytes(self, sha256: str) -> bytearray:
        try:
            sealed = self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(sha256) from exc
        try:
            return self.keyring.decrypt_bytes(sealed)
        except CryptoError as exc:
            raise BlobUnreadable(f"blob {sha256}: {exc}") from exc

    async def read_bytes(self, sha256: str) -> bytearray:
        """The whole plaintext of a small blob; BlobNotFound when missing, BlobUnreadable when it cannot be decrypted.

        Holds the ciphertext and the plaintext at once: large files are read through `open` instead.
        """
        return await asyncio.to_thread(self._read_bytes, sha256)

    def read_bytes_sync(self, sha256: str) -> bytearray:
        """Blocking `read_bytes`, for threads that have no event loop."""
        return self._read_bytes(sha256)

    def _open_path(self, path: Path, name: str) -> BinaryIO:
        try:
            raw = path.open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(name) from exc
        try:
            return open_decrypting(raw, self.keyring.keys)
        except CryptoError as exc:
            raise BlobUnreadable(f"blob {name}: {exc}") from exc

    def open(self, sha256: str) -> BinaryIO:
        """A seekable plaintext file object of a stored blob (blocking; close it). Chunks are authenticated as read."""
        return self._open_path(self.path(sha256), sha256)

    def open_staged(self, staged: StagedFile) -> BinaryIO:
        """A seekable plaintext file object of a staged file (to validate it before it is committed)."""
        return self._open_path(staged.path, staged.path.name)

    async def iter_chunks(self, reader: BinaryIO, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The plaintext of an open blob from `start` to `end` (default: its end), read off the event loop.

        A chunk that fails authentication raises BlobUnreadable; `reader` is left open for the caller to close.
        """
        position = await asyncio.to_thread(reader.seek, start)
        while end is None or position < end:
            want = READ_CHUNK if end is None else min(READ_CHUNK, end - position)
            try:
                chunk = await asyncio.to_thread(reader.read, want)
            except CryptoError as exc:
                raise BlobUnreadable(str(exc)) from exc
            if not chunk:
                return
            position += len(chunk)
            yield chunk

    def sweep_tmp(self) -> int:
        """Remove leftover staged files (from a crash mid-upload); return how many. Call at start-up only."""
        removed = 0
        for entry in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
        return removed
