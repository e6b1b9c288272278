"""Turn one incoming file's chunks into a validated blob in the store, or a reason to refuse it.

Most DICOM files are small (a CT or MR slice is well under a MiB), and for them the per-chunk
round trips to a worker thread cost more than the work itself. So a file is first read into
memory up to `memory_limit` bytes: if it ends there, validation, hashing, encryption, the write,
its fsync and the atomic rename all happen in ONE worker-thread call (`BlobStore.put_bytes_sync`),
and an invalid file never touches the disk. A larger file continues as a stream through
`BlobStore.write_stream` (what was read so far first), is validated through a decrypting reader of
the staged file, then committed or discarded — so memory per file never exceeds about
`memory_limit` plus one chunk, whatever the size of the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

from common.dicom.validation import InvalidDicom, validate_file
from common.schemas.instances import DicomMetadata
from common.storage.blobs import BlobStore, BlobTooLarge, StagedFile
from ingest_service.parts import UnreadableFile


@dataclass(frozen=True)
class StoredFile:
    """A valid DICOM file, durably stored under its SHA-256."""

    sha256: str
    size: int
    metadata: DicomMetadata


class Refused(Exception):
    """The file is not taken; `sha256`/`size` are known when it was read to the end."""

    def __init__(self, reason: str, sha256: str | None = None, size: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sha256 = sha256
        self.size = size


def _too_large(limit: int) -> Refused:
    return Refused(f"entry holds more than its declared {limit} bytes")


async def _read_head(chunks: AsyncIterator[bytes], limit: int, max_bytes: int | None) -> tuple[list[bytes], bool]:
    """The first chunks, up to just over `limit` bytes; True when that is the whole file."""
    head: list[bytes] = []
    size = 0
    async for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise _too_large(max_bytes)
        if size > limit:
            return head, False
    return head, True


async def _replay(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


def _validate_whole(data: bytes) -> DicomMetadata:
    """The header of a whole file held in memory; Refused (with its hash and size) when it is not valid."""
    try:
        return validate_file(io.BytesIO(data))
    except InvalidDicom as exc:
        raise Refused(exc.reason, hashlib.sha256(data).hexdigest(), len(data)) from exc


def store_whole(store: BlobStore, pieces: list[bytes]) -> StoredFile:
    """Validate a whole file held in memory, then write it (encrypted, fsynced, renamed); blocking.

    Raises Refused when it is not valid. The benchmark's design floor runs this same function alone.
    """
    data = b"".join(pieces)
    metadata = _validate_whole(data)
    return StoredFile(store.put_bytes_sync(data), len(data), metadata)


@dataclass(frozen=True)
class StagedDicom:
    """A valid DICOM file sealed into the store's `tmp/`, not yet committed: `commit` or `discard` it."""

    staged: StagedFile
    metadata: DicomMetadata

    @property
    def stored(self) -> StoredFile:
        """What it will be once committed."""
        return StoredFile(self.staged.sha256, self.staged.size, self.metadata)


async def _stage_streamed(store: BlobStore, chunks: AsyncIterator[bytes], max_bytes: int | None) -> StagedDicom:
    """Seal the chunks into `tmp/`, then validate the staged file through a decrypting reader; a refused or failed
    file is discarded."""
    try:
        staged: StagedFile = await store.write_stream(chunks, max_bytes=max_bytes)
    except BlobTooLarge as exc:
        raise _too_large(exc.limit) from exc
    try:
        metadata = await asyncio.to_thread(lambda: validate_file(store.open_staged(staged)))
    except InvalidDicom as exc:
        await store.discard(staged)
        raise Refused(exc.reason, staged.sha256, staged.size) from exc
    except BaseException:
        await store.discard(staged)
        raise
    return StagedDicom(staged, metadata)


async def _store_streamed(store: BlobStore, chunks: AsyncIterator[bytes], max_bytes: int | None) -> StoredFile:
    staged = await _stage_streamed(store, chunks, max_bytes)
    await store.commit(staged.staged)
    return staged.stored


async def _chunks_of(head: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk


async def store_file(
    store: BlobStore, chunks: AsyncIterator[bytes], *, max_bytes: int | None, memory_limit: int
) -> StoredFile:
    """Read, validate and durably store one file; raise Refused with a reason a person can act on."""
    try:
        head, whole = await _read_head(chunks, memory_limit, max_bytes)
        if whole:
            return await asyncio.to_thread(store_whole, store, head)
        return await _store_streamed(store, _replay(head, chunks), max_bytes)
    except UnreadableFile as exc:
        raise Refused(exc.reason) from exc


async def stage_file(
    store: BlobStore, chunks: AsyncIterator[bytes], *, max_bytes: int | None, memory_limit: int
) -> StagedDicom:
    """Read, validate and seal one file into `tmp/` without committing it (all-or-nothing uploads decide later);
    raise Refused with a reason a person can act on. A small file is validated in memory first, so a refused one
    never touches the disk."""
    try:
        head, whole = await _read_head(chunks, memory_limit, max_bytes)
        if whole:
            metadata = await asyncio.to_thread(_validate_whole, b"".join(head))
            return StagedDicom(await store.write_stream(_chunks_of(head)), metadata)
        return await _stage_streamed(store, _replay(head, chunks), max_bytes)
    except UnreadableFile as exc:
        raise Refused(exc.reason) from exc
