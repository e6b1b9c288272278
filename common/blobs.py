"""Content-addressed blob store: files kept under their SHA-256, written atomically, never twice.

Uploads are streamed into a temporary file while they are hashed, so no file is ever held
whole in memory; `commit` then moves the file under its key. Every read and write goes through
:class:`BlobStore`, so encryption at rest can later be added behind this same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_HEX = frozenset("0123456789abcdef")


class BlobError(Exception):
    """Base of blob store errors."""


class BlobTooLarge(BlobError):
    """A stream went over the byte limit it was written with."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class BlobNotFound(BlobError):
    """No blob is stored under this key."""


@dataclass(frozen=True)
class StagedFile:
    """A fully written temporary file, hashed, waiting to be committed or discarded."""

    path: Path
    sha256: str
    size: int


def _check_key(sha256: str) -> str:
    if len(sha256) != 64 or not _HEX.issuperset(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds the new entry."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Files stored at `root/ab/cd/<sha256>`; temporary files live in `root/tmp/` (same filesystem)."""

    def __init__(self, root: Path) -> None:
        self.root = root
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
        """Write `chunks` to a temporary file while hashing; raise BlobTooLarge past `max_bytes`.

        The temporary file is removed if the stream fails or is too large.
        """
        handle, path = await asyncio.to_thread(self._open_temp)
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(max_bytes)
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(self._flush_and_close, handle)
        except BaseException:
            handle.close()
            path.unlink(missing_ok=True)
            raise
        return StagedFile(path=path, sha256=digest.hexdigest(), size=size)

    @staticmethod
    def _flush_and_close(handle: BinaryIO) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    def _commit(self, staged: StagedFile) -> str:
        target = self.path(staged.sha256)
        if target.is_file():
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

    def _put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if self.exists(sha256):
            return sha256
        handle, path = self._open_temp()
        try:
            with handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return self._commit(StagedFile(path=path, sha256=sha256, size=len(data)))

    async def put_bytes(self, data: bytes) -> str:
        """Store a small blob (a PNG preview, say) given whole; return its key."""
        return await asyncio.to_thread(self._put_bytes, data)

    def _read_bytes(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(sha256) from exc

    async def read_bytes(self, sha256: str) -> bytes:
        """The whole content of a blob; raise BlobNotFound when it is missing."""
        return await asyncio.to_thread(self._read_bytes, sha256)

    def read_bytes_sync(self, sha256: str) -> bytes:
        """Blocking `read_bytes`, for worker processes and threads that have no event loop."""
        return self._read_bytes(sha256)

    def sweep_tmp(self) -> int:
        """Remove leftover staged files (from a crash mid-upload); return how many. Call at start-up only."""
        removed = 0
        for entry in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
        return removed
