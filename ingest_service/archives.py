"""`application/zip` uploads: the archive is staged to disk, then its entries are streamed out one at a time.

Entry names are for display only, never paths on disk (no zip-slip). Limits on the number of
entries, their total uncompressed size and each entry's expansion ratio stop zip bombs before
any entry is inflated; zipfile itself stops reading an entry at its declared size and checks
its CRC, which turns a lying or corrupt entry into a rejection of that entry alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import re
import zipfile
import zlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import IO

from common.app.problems import BadRequest, PayloadTooLarge
from common.storage.blobs import BlobStore, BlobTooLarge, StagedFile
from ingest_service.parts import CHUNK_SIZE, BodyMeter, IncomingFile, UnreadableFile, display_name
from ingest_service.settings import IngestSettings

# Below this size an entry cannot be a bomb worth the name; text and padding compress extremely well.
_RATIO_MIN_BYTES = 1024 * 1024
_SUPPORTED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
_DRIVE = re.compile(r"^[A-Za-z]:")
_NON_DICOM_NAMES = frozenset({"DICOMDIR"})


def entry_problem(info: zipfile.ZipInfo, settings: IngestSettings) -> str | None:
    """Why an entry is refused before it is read, or None."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts or "\x00" in name:
        return "unsafe path in zip entry (absolute, or with '..'); entries must be relative names"
    if info.flag_bits & 0x1:
        return "encrypted zip entry; upload it unencrypted"
    if info.compress_type not in _SUPPORTED_METHODS:
        return f"zip compression method {info.compress_type} is not supported; use deflate or store"
    if posixpath.basename(name.replace("\\", "/")).upper() in _NON_DICOM_NAMES:
        return "DICOMDIR is a media index, not an instance; the files it lists are taken on their own"
    if info.file_size > _RATIO_MIN_BYTES:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > settings.zip_max_ratio:
            return (
                f"zip entry expands {ratio:.0f}:1 ({info.file_size} bytes), over the limit of "
                f"{settings.zip_max_ratio:.0f}:1 (zip bomb?)"
            )
    return None


async def _entry_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> AsyncIterator[bytes]:
    try:
        handle: IO[bytes] = await asyncio.to_thread(archive.open, info)
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_SIZE):
                yield chunk
        finally:
            handle.close()
    except OSError as exc:  # its text may name the staged file: never shown
        raise UnreadableFile(f"corrupt zip entry ({exc.strerror or type(exc).__name__})") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise UnreadableFile(f"corrupt zip entry: {exc}") from exc


def _check_archive(archive: zipfile.ZipFile, settings: IngestSettings) -> list[zipfile.ZipInfo]:
    files = [info for info in archive.infolist() if not info.is_dir()]
    if not files:
        raise BadRequest("The zip archive holds no files.")
    if len(files) > settings.upload_max_files:
        raise PayloadTooLarge(f"The zip archive has {len(files)} entries; the limit is {settings.upload_max_files}.")
    total = sum(info.file_size for info in files)
    if total > settings.zip_max_total_bytes:
        raise PayloadTooLarge(
            f"The zip archive's entries total {total} bytes uncompressed; the limit is {settings.zip_max_total_bytes}."
        )
    return files


async def _stage_archive(chunks: AsyncIterator[bytes], store: BlobStore, settings: IngestSettings) -> StagedFile:
    try:
        staged = await store.write_stream(chunks, max_bytes=settings.upload_max_bytes)
    except BlobTooLarge as exc:
        raise PayloadTooLarge(f"The upload exceeds the limit of {exc.limit} bytes.") from exc
    if staged.size == 0:
        await store.discard(staged)
        raise BadRequest("The body is empty; send the zip archive as the body.")
    return staged


async def zip_files(
    chunks: AsyncIterator[bytes], meter: BodyMeter, store: BlobStore, settings: IngestSettings
) -> AsyncGenerator[IncomingFile, None]:
    """Stage the archive (hashing it like any blob), check its limits, then yield its entries in order."""
    staged = await _stage_archive(meter.wrap(chunks), store, settings)
    archive: zipfile.ZipFile | None = None
    reader: IO[bytes] | None = None
    try:
        try:
            # The staged archive is encrypted like every blob: zipfile reads a seekable plaintext view of it.
            reader = await asyncio.to_thread(store.open_staged, staged)
            archive = await asyncio.to_thread(zipfile.ZipFile, reader)
        except zipfile.BadZipFile as exc:
            raise BadRequest(f"The body is not a readable zip archive: {exc}") from exc
        except OSError as exc:  # its text may name the staged file: never shown
            raise BadRequest(f"The body is not a readable zip archive ({exc.strerror or 'unreadable'}).") from exc
        for index, info in enumerate(_check_archive(archive, settings)):
            name = display_name(info.filename, f"entry-{index}")
            reason = entry_problem(info, settings)
            if reason is not None:
                yield IncomingFile(name, reason=reason)
            else:
                yield IncomingFile(name, chunks=_entry_chunks(archive, info), max_bytes=info.file_size)
    finally:
        if archive is not None:
            with contextlib.suppress(OSError):
                archive.close()
        if reader is not None:
            reader.close()  # zipfile leaves a file object it was given open
        await store.discard(staged)
