"""The files a run sends: the PATHs walked (folders recursively), and each file's bytes streamed from disk.

A file is never read whole: `DiskSource.chunks` yields it a chunk at a time from a worker thread, once per
attempt, and its SHA-256 (the resume lookup's key) is computed by `hashlib.file_digest`, also streamed. A tag
rewriter's copies (`common.uploader.tags.rewrite.RewrittenFile`) have the same shape (`FileSource`), so the
uploader sends either without knowing which.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

CHUNK_SIZE = 1024 * 1024
"""Bytes read and sent at a time: a typical instance in one or two reads, at most this much per request held."""


class FileSource(Protocol):
    """Bytes to send for one file, re-readable once per attempt."""

    @property
    def size(self) -> int:
        """Bytes the copy sent holds."""
        ...

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The bytes, at most `chunk_size` at a time."""
        ...

    async def sha256(self) -> str:
        """The SHA-256 of the bytes sent, as hex."""
        ...


@dataclass(frozen=True)
class LocalFile:
    """One file found under the PATHs: where it is, the name it is sent under, and its size when found."""

    path: Path
    name: str
    size: int


@dataclass
class DiskSource:
    """A file sent as it is on disk."""

    path: Path
    size: int
    _digest: str | None = field(default=None, repr=False)

    async def chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The file's bytes, read in a worker thread a chunk at a time."""
        handle = await asyncio.to_thread(self.path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def sha256(self) -> str:
        """The file's SHA-256, streamed in a worker thread (hashlib releases the GIL), computed once."""
        if self._digest is None:
            self._digest = await asyncio.to_thread(_file_sha256, self.path)
        return self._digest


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def collect(paths: Iterable[Path]) -> list[LocalFile]:
    """Every regular file under `paths` (folders walked recursively, symlinked files followed), in a stable order.

    Names are relative to the folder given (`scan/series1/IM0001`), or the bare name of a file given itself; a
    path met twice is sent once. Raises FileNotFoundError for a PATH that does not exist.
    """
    found: dict[Path, LocalFile] = {}
    for given in paths:
        if not given.exists():
            raise FileNotFoundError(f"{given}: no such file or folder")
        if given.is_dir():
            base = given.name or given.resolve().name
            for path in sorted(p for p in given.rglob("*") if p.is_file()):
                name = f"{base}/{path.relative_to(given).as_posix()}"
                found.setdefault(path.resolve(), LocalFile(path, name, path.stat().st_size))
        else:
            found.setdefault(given.resolve(), LocalFile(given, given.name, given.stat().st_size))
    return list(found.values())
