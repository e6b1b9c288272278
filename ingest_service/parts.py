"""Split an upload body into its files, each one a stream of chunks read only when it is taken.

A source yields :class:`IncomingFile` objects one at a time; the caller reads each file's
chunks to the end before asking for the next (a multipart body is one stream). Nothing here
holds a whole file in memory.

A multipart body is held to the same number of files as a zip archive (`UPLOAD_MAX_FILES`): each
part counts, and the part past the limit stops the upload with 413 before it is read. An empty part
holds no file: it is reported as rejected but never registered, so a body of empty parts writes
nothing. A body that ends early (the client went away) or is malformed is a 400; the file cut off
never reaches the store or the database.
"""

from __future__ import annotations

import email.message
import unicodedata
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.hdrs import CONTENT_DISPOSITION, CONTENT_TYPE
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError

from common.app.problems import BadRequest, PayloadTooLarge

CHUNK_SIZE = 256 * 1024
DICOM_TYPE = "application/dicom"
_RELATED_PART_TYPES = frozenset({DICOM_TYPE, "application/octet-stream", ""})
# How aiohttp says that a body is malformed (RuntimeError: a `_charset_` field too long), or ended early:
# a lost connection cancels the request's payload with ConnectionResetError.
_MALFORMED = (ValueError, AssertionError, RuntimeError, HttpProcessingError, ConnectionResetError)
_NAME_LIMIT = 1024


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
    registered: bool = True
    """False for a part that holds no file (an empty part): it is answered, never written anywhere."""


def display_name(raw: str | None, fallback: str) -> str:
    """A client-side name fit for display (never used as a path): control, format (bidi overrides) and
    unpaired surrogate characters become '?', at most 1024 characters."""
    name = (raw or "")[: _NAME_LIMIT * 2]
    if not name.isprintable():  # the cheap test first: most names are plain
        name = "".join("?" if unicodedata.category(c)[0] == "C" else c for c in name)
    name = name.strip()
    return name[:_NAME_LIMIT] if name else fallback


def disposition_filename(header: str) -> str | None:
    """The `filename` (or RFC 2231 `filename*`) of a Content-Disposition header; None without one.

    The standard library's parser, not aiohttp's: it never warns on a malformed header (aiohttp's does, and
    falls back to no name) and costs a third as much per part.
    """
    message = email.message.Message()
    message[CONTENT_DISPOSITION] = header
    return message.get_filename()


def _malformed(exc: Exception, what: str = "multipart body") -> BadRequest:
    if isinstance(exc, ConnectionResetError):
        return BadRequest("The body ended early: the connection was closed before its end.")
    return BadRequest(f"The {what} is malformed: {exc}")


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
    """The raw request body, chunk by chunk; 400 when it ends early or its framing is broken."""
    try:
        async for chunk in request.content.iter_chunked(CHUNK_SIZE):
            yield chunk
    except _MALFORMED as exc:
        raise _malformed(exc, "body") from exc


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
    filename = disposition_filename(header) if header else None  # parsed only when sent
    yield IncomingFile(display_name(filename, "file.dcm"), chunks=_require_bytes(meter.wrap(body_chunks(request))))


def _media_type(value: str | None) -> str:
    mime = parse_mimetype(value or "")
    return f"{mime.type}/{mime.subtype}".lower() if mime.type else ""


def related_type_is_dicom(request: web.Request) -> bool:
    """`multipart/related` must declare `type="application/dicom"` (PS3.18 STOW-RS style)."""
    params = parse_mimetype(request.headers.get(CONTENT_TYPE, "")).parameters
    return params.get("type", "").strip('"').lower() == DICOM_TYPE


async def _part_chunks(part: BodyPartReader, first: bytes) -> AsyncIterator[bytes]:
    yield first
    try:
        while chunk := await part.read_chunk(CHUNK_SIZE):
            yield chunk
    except _MALFORMED as exc:
        raise _malformed(exc) from exc


async def multipart_files(request: web.Request, meter: BodyMeter, max_parts: int) -> AsyncGenerator[IncomingFile, None]:
    """`multipart/form-data` (file fields; other fields are skipped) or `multipart/related` (every part).

    At most `max_parts` parts, form fields included: the next one is refused with 413 before it is read.
    """
    form = request.content_type == "multipart/form-data"
    try:
        reader = await request.multipart()
        index = 0
        while (part := await reader.next()) is not None:
            if index >= max_parts:
                raise PayloadTooLarge(
                    f"The multipart body has more than {max_parts} parts; an upload holds at most {max_parts} files."
                )
            fallback = f"part-{index}"
            index += 1
            if isinstance(part, MultipartReader):
                yield IncomingFile(fallback, reason="nested multipart bodies are not supported; send the files flat")
                continue
            header = part.headers.get(CONTENT_DISPOSITION)
            filename = disposition_filename(header) if header else None
            if form and filename is None:
                continue  # a plain form field, not a file
            name = display_name(filename or part.headers.get("Content-Location"), fallback)
            part_type = _media_type(part.headers.get(CONTENT_TYPE))
            if not form and part_type not in _RELATED_PART_TYPES:
                yield IncomingFile(name, reason=f"part of type {part_type!r} is not application/dicom")
                continue
            first = await part.read_chunk(CHUNK_SIZE)
            if not first:
                yield IncomingFile(name, reason="empty part (0 bytes): it holds no file", registered=False)
                continue
            yield IncomingFile(name, chunks=meter.wrap(_part_chunks(part, first)))
    except _MALFORMED as exc:
        raise _malformed(exc) from exc
