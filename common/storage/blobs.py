"""Content-addressed blob store: files kept under their SHA-256, encrypted at rest, written atomically, never twice.

Every blob is written one way (`_Sealer`): into a new temporary file in `tmp/`, sealed with Tink's
streaming AEAD as the bytes arrive (`common.storage.crypto`, under the keyring's active key), so no
plaintext ever reaches the disk, not even in `tmp/`; then fsynced, and `commit` renames it under its
key and fsyncs the directory, so no partial blob is ever visible under its final name. The key is the
SHA-256 of the *plaintext*, so the same bytes uploaded twice are still one blob (each sealing has its
own salt, so ciphertexts differ) and a second copy is dropped. Where committed blobs are kept is the
object backend's business (`common.storage.objects`: a local directory, or an S3 bucket that receives
the sealed file by a multipart upload and shows it under its key only once it is complete); staging,
sealing and hashing are the same for both. Uploads are streamed (`write_stream`,
one piece at a time); a file held whole (`put_bytes`) goes through the same sealer in one thread call.
Every read decrypts through a seekable plaintext file object (`open`, `open_staged`, `iter_chunks`,
`read_bytes`) that holds a bounded window of the plaintext (processors read files frame by frame).

A store out of space (ENOSPC, or EDQUOT over a quota) on any write, fsync, directory or rename raises
`BlobStoreFull`: an OSError like the one it replaces (a consumer holds its message and retries, see
`common.messaging.faults`) and a 503 problem with `Retry-After` (ingest answers the upload with it). The
temporary file is removed, nothing is committed, so no row is registered for the file. Tink reports a
failed write of its destination only as text; the sealer's destination keeps the OSError itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from typing_extensions import Buffer

from common.storage.blob_errors import (
    FULL_RETRY_AFTER,
    BlobError,
    BlobNotFound,
    BlobStoreFull,
    BlobStoreUnavailable,
    BlobTooLarge,
    BlobUnreadable,
    space_checked,
)
from common.storage.crypto import Keyring
from common.storage.crypto_keys import CryptoError
from common.storage.crypto_reader import open_decrypting
from common.storage.objects import LocalObjects, ObjectBackend, object_key

Bytes = bytes | bytearray | memoryview
_HEX = frozenset("0123456789abcdef")
READ_CHUNK = 64 * 1024
SEAL_PIECE = 64 * 1024
__all__ = [
    "FULL_RETRY_AFTER",
    "BlobError",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreFull",
    "BlobStoreUnavailable",
    "BlobTooLarge",
    "BlobUnreadable",
    "StagedFile",
]


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


class _Destination(io.RawIOBase):
    """The descriptor a sealer writes to, as Tink's destination: it keeps the OSError of a failed write (Tink
    raises its own error with the OSError's text only) and leaves the descriptor open when closed."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        try:
            return os.write(self._fd, data)
        except OSError as exc:
            self.error = exc
            raise


class _Sealer:
    """One new blob being written: a temporary file in `tmp/`, sealed piece by piece as the bytes arrive.

    The one write path of the store: `finish` seals the final segment, fsyncs and closes the file; `abort`
    removes it. Neither the plaintext nor its ciphertext is ever held whole here.
    """

    def __init__(self, tmp: Path, keyring: Keyring) -> None:
        self._fd, name = tempfile.mkstemp(dir=tmp, prefix="staged-")
        self.path = Path(name)
        try:
            # Tink closes its destination when it seals the last segment: it gets a view of the descriptor
            # that leaves it open for the fsync.
            self._destination = _Destination(self._fd)
            self._stream = keyring.encrypting(cast(BinaryIO, self._destination))
        except BaseException:
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
            raise

    def write(self, data: Bytes) -> None:
        """Seal `data`, handed to Tink's raw stream in pieces of at most SEAL_PIECE bytes.

        Tink's binding copies what it is given; a copy of a whole file would be a fresh allocation, which
        costs a page fault per 4 KiB on our VMs, where pieces reuse the same heap memory.
        """
        view = memoryview(data).cast("B")
        raw = self._stream.raw
        at = 0
        with self._disk_errors():
            while at < len(view):
                at += raw.write(view[at : at + SEAL_PIECE]) or 0

    @contextlib.contextmanager
    def _disk_errors(self) -> Iterator[None]:
        """Raise the OSError of the destination's failed write as itself, not as the text in Tink's error."""
        try:
            yield
        except Exception as exc:
            error = self._destination.error
            if error is None or exc is error:
                raise
            raise OSError(error.errno, error.strerror) from exc

    def finish(self) -> Path:
        """Seal the final segment, make the file durable and close it; return its path."""
        try:
            with self._disk_errors():
                self._stream.close()
            os.fsync(self._fd)
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        self._fd = -1
        return self.path

    def abort(self) -> None:
        """Close and remove the temporary file (a failed, refused or oversized write); safe to call twice."""
        if self._fd < 0:
            return
        with contextlib.suppress(Exception):
            self._stream.close()  # before the descriptor goes: a stream closed later must not write to its number
        os.close(self._fd)
        self._fd = -1
        self.path.unlink(missing_ok=True)


class BlobStore:
    """Sealed blobs kept by an object backend under their SHA-256; uploads are staged in `staging` first.

    `BlobStore(root, keyring)` is the local directory store: blobs at `root/ab/cd/<sha256>`, staged files in
    `root/tmp/` (the same filesystem, so a commit is a rename). Any other backend is passed as `objects`, with
    the local directory `staging` where uploads are sealed before they are sent. Picklable (backend, staging
    directory and keyring), so a worker process can be handed the store it reads from.
    """

    def __init__(
        self, root: Path | None, keyring: Keyring, *, objects: ObjectBackend | None = None, staging: Path | None = None
    ) -> None:
        if objects is None:
            if root is None:
                raise ValueError("a blob store needs a root directory or an object backend")
            objects = LocalObjects(root)
            staging = staging or root / "tmp"
        if staging is None:
            raise ValueError("a blob store on an object backend needs a staging directory")
        self.objects = objects
        self.keyring = keyring
        self.tmp = staging
        self.tmp.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        """The directory of a local store (TypeError for any other backend)."""
        return self._local().root

    def _local(self) -> LocalObjects:
        if not isinstance(self.objects, LocalObjects):
            raise TypeError(f"blobs are not files on this machine: they are kept at {self.objects.describe()}")
        return self.objects

    def path(self, sha256: str) -> Path:
        """Where the blob with this key lives in a local store (whether or not it exists)."""
        return self._local().path(object_key(_check_key(sha256)))

    def describe(self) -> str:
        """Where the blobs are kept, for logs (no secrets)."""
        return self.objects.describe()

    def exists(self, sha256: str) -> bool:
        """True when a blob is stored under this key."""
        return self.objects.exists(object_key(_check_key(sha256)))

    async def write_stream(self, chunks: AsyncIterable[Bytes], *, max_bytes: int | None = None) -> StagedFile:
        """Seal `chunks` into a temporary file while hashing the plaintext.

        Raise BlobTooLarge past `max_bytes` (of plaintext), BlobStoreFull when the disk is full; the temporary
        file is removed if the stream fails.
        """
        with space_checked():
            sealer = await asyncio.to_thread(_Sealer, self.tmp, self.keyring)
            digest = hashlib.sha256()
            size = 0
            try:
                async for chunk in chunks:
                    if not chunk:
                        continue
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise BlobTooLarge(max_bytes)
                    await asyncio.to_thread(_absorb, sealer, digest, chunk)
                path = await asyncio.to_thread(sealer.finish)
            except BaseException:
                await asyncio.to_thread(sealer.abort)
                raise
        return StagedFile(path=path, sha256=digest.hexdigest(), size=size)

    def _commit(self, staged: StagedFile) -> str:
        try:
            with space_checked():
                self.objects.put_file(object_key(_check_key(staged.sha256)), staged.path)
        finally:
            staged.path.unlink(missing_ok=True)  # committed (moved or sent) or not: nothing of it is left behind
        return staged.sha256

    async def commit(self, staged: StagedFile) -> str:
        """Move a staged file under its key (a no-op when the key exists); return the key. If it cannot be
        committed (BlobStoreFull when the disk is full, BlobStoreUnavailable when the object store cannot be
        used), the staged file is removed."""
        return await asyncio.to_thread(self._commit, staged)

    async def discard(self, staged: StagedFile) -> None:
        """Remove a staged file that will not be kept."""
        await asyncio.to_thread(staged.path.unlink, True)

    def put_bytes_sync(self, data: Bytes) -> str:
        """Store a file held whole (blocking: ingest stores a small file in one thread call); return its key.

        BlobStoreFull when the disk is full (nothing is left of the file)."""
        sha256 = hashlib.sha256(data).hexdigest()
        if self.exists(sha256):
            return sha256
        with space_checked():
            sealer = _Sealer(self.tmp, self.keyring)
            try:
                sealer.write(data)
            except BaseException:
                sealer.abort()
                raise
            path = sealer.finish()
        return self._commit(StagedFile(path=path, sha256=sha256, size=memoryview(data).nbytes))

    async def put_bytes(self, data: Bytes) -> str:
        """Store a small blob (a PNG preview, say) given whole; return its key."""
        return await asyncio.to_thread(self.put_bytes_sync, data)

    def read_bytes_sync(self, sha256: str) -> bytes:
        """Blocking `read_bytes`, for threads that have no event loop."""
        with self.open(sha256) as reader:
            try:
                return reader.read()
            except CryptoError as exc:
                raise BlobUnreadable(f"blob {sha256}: {exc}") from exc

    async def read_bytes(self, sha256: str) -> bytes:
        """The whole plaintext of a small blob; BlobNotFound when missing, BlobUnreadable when it cannot be decrypted.

        Large files are read through `open` instead.
        """
        return await asyncio.to_thread(self.read_bytes_sync, sha256)

    def _decrypting(self, raw: BinaryIO, name: str) -> BinaryIO:
        try:
            return open_decrypting(raw, self.keyring)
        except CryptoError as exc:
            raise BlobUnreadable(f"blob {name}: {exc}") from exc

    def open(self, sha256: str) -> BinaryIO:
        """A seekable plaintext file object of a stored blob (blocking; close it); each segment is authenticated.

        BlobNotFound when missing; BlobStoreUnavailable when the object store cannot be used."""
        return self._decrypting(self.objects.open(object_key(_check_key(sha256))), sha256)

    def open_staged(self, staged: StagedFile) -> BinaryIO:
        """A seekable plaintext file object of a staged file (to validate it before it is committed)."""
        try:
            raw = staged.path.open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(staged.path.name) from exc
        return self._decrypting(raw, staged.path.name)

    async def iter_chunks(self, reader: BinaryIO, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The plaintext of an open blob from `start` to `end` (default: its end), read off the event loop.

        A segment that fails authentication raises BlobUnreadable; `reader` is left open for the caller to close.
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


def _absorb(sealer: _Sealer, digest: hashlib._Hash, chunk: Bytes) -> None:
    """Hash and seal one piece (off the event loop: both cost CPU)."""
    digest.update(chunk)
    sealer.write(chunk)
