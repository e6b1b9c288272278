"""Split an upload body into its files, each one a stream of chunks read only when it is taken.

A source yields :class:`IncomingFile` objects one at a time; the caller reads each file's
chunks to the end before asking for the next (a multipart body is one stream). Nothing here
holds a whole file in memory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.hdrs import CONTENT_DISPOSITION, CONTENT_TYPE
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import parse_content_disposition

from common.app.problems import BadRequest, PayloadTooLarge

CHUNK_SIZE = 256 * 1024
DICOM_TYPE = "application/dicom"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_RELATED_PART_TYPES = frozenset({DICOM_TYPE, "application/octet-stream", ""})
# How aiohttp's multipart reader says that a body is malformed.
_MALFORMED = (ValueError, AssertionError, HttpProcessingError)


class UnreadableFile(Exception):
    """One file of the body cannot be read (a corrupt zip entry): reject it, carry on with the others."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IncomingFile:
    """One file of an upload: its chunks, or the reason it is refused without being read."""

    name: str
    chunks: AsyncIterator[bytes] | None = None
    reason: str | None = None
    max_bytes: int | None = None


def display_name(raw: str | None, fallback: str) -> str:
    """A client-side name fit for display (never used as a path): printable, at most 1024 characters."""
    name = _UNPRINTABLE.sub("?", raw or "").strip()
    return name[:1024] if name else fallback


class BodyMeter:
    """Counts the body's bytes across files and refuses with 413 past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.total += len(chunk)
            if self.total > self.limit:
                raise PayloadTooLarge(f"The upload exceeds the limit of {self.limit} bytes.")
            yield chunk


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The raw request body, chunk by chunk."""
    async for chunk in request.content.iter_chunked(CHUNK_SIZE):
        yield chunk


async def _require_bytes(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    seen = False
    async for chunk in chunks:
        seen = seen or bool(chunk)
        yield chunk
    if not seen:
        raise BadRequest("The body is empty; send the DICOM file as the body.")


async def single_file(request: web.Request, meter: BodyMeter) -> AsyncGenerator[IncomingFile, None]:
    """`application/dicom`: the body is one file, named by `Content-Disposition: ...; filename=` if given."""
    header = request.headers.get(CONTENT_DISPOSITION)
    # Only when sent: aiohttp's parser rebuilds an escaping table on every call (~7 % of ingest's event-loop CPU).
    filename = parse_content_disposition(header)[1].get("filename") if header else None
    yield IncomingFile(display_name(filename, "file.dcm"), chunks=_require_bytes(meter.wrap(body_chunks(request))))


def _media_type(value: str | None) -> str:
    mime = parse_mimetype(value or "")
    return f"{mime.type}/{mime.subtype}".lower() if mime.type else ""


def related_type_is_dicom(request: web.Request) -> bool:
    """`multipart/related` must declare `type="application/dicom"` (PS3.18 STOW-RS style)."""
    params = parse_mimetype(request.headers.get(CONTENT_TYPE, "")).parameters
    return params.get("type", "").strip('"').lower() == DICOM_TYPE


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await part.read_chunk(CHUNK_SIZE):
            yield chunk
    except _MALFORMED as exc:
        raise BadRequest(f"The multipart body is malformed: {exc}") from exc


async def multipart_files(request: web.Request, meter: BodyMeter) -> AsyncGenerator[IncomingFile, None]:
    """`multipart/form-data` (file fields; other fields are skipped) or `multipart/related` (every part)."""
    form = request.content_type == "multipart/form-data"
    try:
        reader = await request.multipart()
        index = 0
        while (part := await reader.next()) is not None:
            fallback = f"part-{index}"
            index += 1
            if isinstance(part, MultipartReader):
                yield IncomingFile(fallback, reason="nested multipart bodies are not supported; send the files flat")
                continue
            # `part.filename` parses Content-Disposition, at the cost noted in `single_file`: only when sent.
            filename = part.filename if CONTENT_DISPOSITION in part.headers else None
            if form and filename is None:
                continue  # a plain form field, not a file
            name = display_name(filename or part.headers.get("Content-Location"), fallback)
            part_type = _media_type(part.headers.get(CONTENT_TYPE))
            if not form and part_type not in _RELATED_PART_TYPES:
                yield IncomingFile(name, reason=f"part of type {part_type!r} is not application/dicom")
                continue
            yield IncomingFile(name, chunks=meter.wrap(_part_chunks(part)))
    except _MALFORMED as exc:
        raise BadRequest(f"The multipart body is malformed: {exc}") from exc
