"""`--atomic`: the whole set as one zip archive, built while it is sent.

The standard library's `zipfile` writes to a stream that cannot seek: each entry's sizes and CRC then follow
its data (a data descriptor) and the central directory comes last, which every reader, ingest's included,
takes. Entries are stored, not deflated: DICOM pixel data rarely shrinks much, and the sender's CPU is better
spent sending. Nothing is staged on the sender's disk and at most about one chunk is held in memory.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import AsyncIterator, Sequence

from common.uploader.files import CHUNK_SIZE, FileSource

ZIP_TYPE = "application/zip"


class _Sink:
    """What zipfile writes into: a buffer the generator empties after each chunk (write-only, not seekable)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        """zipfile flushes its stream; nothing to do."""

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def entry_names(names: Sequence[str]) -> list[str]:
    """The names as zip entries, made unique (`a/IM1`, `a/IM1` -> `a/IM1`, `2/a/IM1`): a zip may hold a name
    twice, but a person reading the outcomes could not tell the two apart."""
    seen: set[str] = set()
    unique: list[str] = []
    for index, name in enumerate(names):
        candidate = name if name not in seen else f"{index}/{name}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


async def zip_chunks(entries: Sequence[tuple[str, FileSource]], chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """The archive of `entries` (name, bytes), a chunk at a time, as it is built."""
    sink = _Sink()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[call-overload]
        for name, source in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.file_size = source.size
            with archive.open(info, "w", force_zip64=source.size > 0x7FFF0000) as entry:
                async for chunk in source.chunks(chunk_size):
                    entry.write(chunk)
                    if len(sink.buffer) >= chunk_size:
                        yield sink.take()
            if sink.buffer:
                yield sink.take()
    if sink.buffer:
        yield sink.take()
