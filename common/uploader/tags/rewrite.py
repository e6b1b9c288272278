"""Tags rewritten on streamed copies: the original file is only ever read, and never held whole in memory.

For each file the header is read with pydicom up to (not including) the pixel data, values over `DEFER_SIZE`
deferred; the changed elements are set and the header is written again (the original preamble, the file meta
with its group length recomputed, the same transfer syntax; unchanged elements keep their raw bytes). The copy
is that new header followed by the original's bytes from its Pixel Data element onward, read in chunks, so a
2 GB multi-frame file costs its header and one chunk. A file without pixel data (a structured report) is all
header. A file none of whose tags change is streamed as it is, so its SHA-256 is the original's. The new header
is not kept between uses: it is encoded again (the same bytes) for each stream, so a run that prepares thousands
of files holds a few numbers per file, not their headers.

A deflated file (1.2.840.10008.1.2.1.99), whose whole dataset is one deflate stream, is rewritten by inflating
and deflating it again a chunk at a time (`deflated`): bounded memory, more CPU. Refused, per file
(`TagRewriteError`): a file pydicom cannot read as Part 10.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import os
import struct
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from common.app.logs import get_logger
from common.uploader.tags import deflated
from common.uploader.tags.rules import TagRule, TagRuleError, check_encodable, typed_value, value_text
from common.uploader.tags.template import MissingField

log = get_logger("dicomflow.uploader.tags")

DEFER_SIZE = 64 * 1024
CHUNK_SIZE = 1024 * 1024
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


class TagRewriteError(ValueError):
    """One file cannot be checked or rewritten: `reason` says why; the message also names the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TagChange:
    """One tag of one file: what it holds now (None when absent) and what the copy will hold."""

    keyword: str
    current: str | None
    new: str


@dataclass(frozen=True, slots=True)
class _Source:
    """What was read of a file: its size and mtime (to notice a change before streaming) and where its pixel data
    begins (its size when it has none)."""

    size: int
    mtime_ns: int
    rest_offset: int
    deflated_start: int | None = None
    """Where a deflated file's deflate stream begins (then `rest_offset` counts inflated bytes)."""


@dataclass
class RewrittenFile:
    """A file's copy, ready to stream as often as needed (one `chunks()` per attempt).

    A new header of `header_size` bytes replaces the original's first `rest_offset` bytes; `size` is the copy's
    length. Unchanged files have no header and `rest_offset` 0: the copy is the original.
    """

    path: Path
    changes: list[TagChange]
    header_size: int
    rest_offset: int
    size: int
    _source: _Source
    _encode: Callable[[], bytes] | None = field(default=None, repr=False)
    _digest: str | None = field(default=None, repr=False)

    async def chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The copy's bytes, at most `chunk_size` at a time; TagRewriteError when the original changed since it was
        read (its rest would no longer match the header)."""
        handle = await asyncio.to_thread(_open_unchanged, self.path, self._source)
        try:
            header = await asyncio.to_thread(self._encode) if self._encode is not None else b""
            for start in range(0, len(header), chunk_size):
                yield header[start : start + chunk_size]
            del header
            await asyncio.to_thread(handle.seek, self.rest_offset)
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def sha256(self) -> str:
        """The copy's SHA-256 (hex), computed once by streaming it without keeping it (for the resume lookup)."""
        if self._digest is None:
            digest = hashlib.sha256()
            async for chunk in self.chunks():
                digest.update(chunk)
            self._digest = digest.hexdigest()
        return self._digest


@dataclass
class DeflatedCopy:
    """A deflated file's copy (see `deflated`): its new file meta and header are kept (deflated files are mostly
    small reports); the rest is inflated and deflated again for each stream. `size` and the digest are measured
    by one pass when it is prepared."""

    path: Path
    changes: list[TagChange]
    _source: _Source
    _prefix: bytes = field(repr=False)
    _header: bytes = field(repr=False)
    size: int = 0
    _digest: str = ""

    def _stream(self, handle: BinaryIO, chunk_size: int) -> Iterator[bytes]:
        start, skip = self._source.deflated_start or 0, self._source.rest_offset
        return deflated.deflated_copy(handle, start, skip, self._prefix, self._header, chunk_size)

    def measure(self) -> None:
        """Compute `size` and the SHA-256 by one pass (blocking: call from a worker thread)."""
        digest, size = hashlib.sha256(), 0
        with _open_unchanged(self.path, self._source) as handle:
            for chunk in self._stream(handle, CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
        self.size, self._digest = size, digest.hexdigest()

    async def chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The copy's bytes, deflated a chunk at a time in a worker thread."""
        handle = await asyncio.to_thread(_open_unchanged, self.path, self._source)
        try:
            pieces = self._stream(handle, chunk_size)
            while (chunk := await asyncio.to_thread(next, pieces, None)) is not None:
                yield chunk
        finally:
            handle.close()

    async def sha256(self) -> str:
        """The copy's SHA-256 (hex), measured when it was prepared."""
        return self._digest


class TagRewriter:
    """Applies `rules` to files, filling templates from `values` (sample_id, attempt, metadata fields, as text)
    and then from each file's own tags.

    Built once per run: a name a template reads that is not in `values` must be a DICOM keyword (read from each
    file), and a rule that reads no file tag is rendered and checked here, so a wrong value stops the run before
    any file is touched.
    """

    def __init__(self, rules: list[TagRule], values: Mapping[str, str]) -> None:
        self.rules = rules
        self.values = dict(values)
        names = frozenset[str]().union(*(rule.template.fields for rule in rules)) - self.values.keys()
        self.file_tags: dict[str, int] = {}
        for name in sorted(names):
            if (tag := tag_for_keyword(name)) is None:
                users = ", ".join(rule.origin for rule in rules if name in rule.template.fields)
                if name == "sample_id":
                    raise TagRuleError(f"{users}: {{sample_id}} has no value: give --sample-id")
                raise TagRuleError(
                    f"{users}: {{{name}}} is neither --sample-id, --attempt, a metadata field nor a DICOM keyword"
                )
            self.file_tags[name] = tag
        for rule in rules:
            if not rule.template.fields & self.file_tags.keys():
                typed_value(rule, rule.template.render(self.values))

    async def inspect(self, path: Path) -> list[TagChange]:
        """The changes `path`'s copy would get (nothing is encoded or streamed): for verify and dry-run."""
        return (await asyncio.to_thread(self._plan, path))[1]

    async def prepare(self, path: Path) -> RewrittenFile | DeflatedCopy:
        """The copy of `path` with its tags rewritten (or the original itself when nothing changes)."""
        return await asyncio.to_thread(self._prepare, path)

    def _prepare(self, path: Path) -> RewrittenFile | DeflatedCopy:
        ds, changes, source = self._changed(path)
        # keywords only: the values may be patient data, and the run's log may be sent to the server
        log.info("tags_rewritten" if changes else "tags_agree", file=str(path), keywords=[c.keyword for c in changes])
        if not changes:
            return RewrittenFile(path, [], 0, 0, source.size, source)
        if source.deflated_start is not None:
            prefix, header_bytes = deflated.encode_header(ds.preamble or bytes(128), ds.file_meta, ds)
            copy = DeflatedCopy(path, changes, source, prefix, header_bytes)
            copy.measure()
            return copy
        header = _encode(path, ds)
        size = len(header) + source.size - source.rest_offset
        encode = functools.partial(self._header_again, path, source, len(header))
        return RewrittenFile(path, changes, len(header), source.rest_offset, size, source, encode)

    def _header_again(self, path: Path, source: _Source, length: int) -> bytes:
        """The header `_prepare` encoded, encoded again for one stream; TagRewriteError if the file changed."""
        ds, _, now = self._changed(path)
        header = _encode(path, ds)
        if now != source or len(header) != length:
            raise TagRewriteError(path, "the file changed after its tags were read; run again")
        return header

    def _changed(self, path: Path) -> tuple[FileDataset, list[TagChange], _Source]:
        """The header with the changes applied, the changes, and what was read of the file."""
        ds, changes, typed, source = self._plan(path)
        for rule in self.rules:
            if rule.keyword in typed:
                ds[rule.tag] = DataElement(rule.tag, rule.vr, typed[rule.keyword])
                if rule.meta_keyword is not None:
                    setattr(ds.file_meta, rule.meta_keyword, typed[rule.keyword])
        return ds, changes, source

    def _plan(self, path: Path) -> tuple[FileDataset, list[TagChange], dict[str, Any], _Source]:
        """Read the header; the changes, the typed new values by keyword, and where the original's rest begins."""
        ds, source = _read_header(path)
        values = dict(self.values)
        for name, tag in self.file_tags.items():
            text = value_text(ds.get(tag))
            if text is not None:
                values[name] = text
        charset = ds.get("SpecificCharacterSet")
        changes: list[TagChange] = []
        typed: dict[str, Any] = {}
        for rule in self.rules:
            try:
                text = rule.template.render(values)
                new_value = typed_value(rule, text)
                check_encodable(rule, text, charset)
            except MissingField as e:
                reason = f"{rule.origin} reads {{{e.name}}}, which the file does not have"
                raise TagRewriteError(path, reason) from None
            except TagRuleError as e:
                raise TagRewriteError(path, str(e)) from None
            current = value_text(ds.get(rule.tag))
            new_text = value_text(DataElement(rule.tag, rule.vr, new_value)) or ""
            if current != new_text:
                changes.append(TagChange(rule.keyword, current, new_text))
                typed[rule.keyword] = new_value
        return ds, changes, typed, source


def _encode(path: Path, ds: FileDataset) -> bytes:
    """The new header: preamble, file meta (group length recomputed), the dataset up to the pixel data."""
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except Exception as e:  # pydicom raises many types on an element it cannot encode again
        raise TagRewriteError(path, f"the header cannot be written again: {type(e).__name__}: {e}") from None
    return buffer.getvalue()


def _read_header(path: Path) -> tuple[FileDataset, _Source]:
    """The dataset up to the pixel data, and the original's size, mtime and pixel data offset."""
    try:
        meta = read_file_meta_info(path)
        if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            return _read_deflated_header(path, meta)
        with path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            ds = dcmread(handle, stop_before_pixels=True, defer_size=DEFER_SIZE)
            offset = handle.tell()
            if offset < stat.st_size and not _is_pixel_tag(handle, ds):
                raise TagRewriteError(path, f"the header stops at byte {offset}, which is not the pixel data")
    except TagRewriteError:
        raise
    except InvalidDicomError:
        raise TagRewriteError(path, "not a DICOM Part 10 file (no 'DICM' prefix after the preamble)") from None
    except Exception as e:  # pydicom raises many types on a malformed header: that file alone is refused
        raise TagRewriteError(path, f"cannot be read as DICOM: {type(e).__name__}: {e}") from None
    return ds, _Source(stat.st_size, stat.st_mtime_ns, offset)


def _read_deflated_header(path: Path, meta: FileMetaDataset) -> tuple[FileDataset, _Source]:
    """`_read_header` for a deflated file: the header read through an inflating reader."""
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        preamble = handle.read(128)
        start = deflated.dataset_start(handle)
        dataset, offset = deflated.read_deflated(handle, start)
    ds = FileDataset(str(path), dataset, preamble=preamble, file_meta=meta, is_implicit_VR=False, is_little_endian=True)
    return ds, _Source(stat.st_size, stat.st_mtime_ns, offset, start)


def _is_pixel_tag(handle: BinaryIO, ds: FileDataset) -> bool:
    """Whether the bytes at the handle's position are a pixel data tag (the handle is left where it was)."""
    position = handle.tell()
    raw = handle.read(4)
    handle.seek(position)
    if len(raw) < 4:
        return False
    big = ds.file_meta.get("TransferSyntaxUID") == ExplicitVRBigEndian
    group, element = struct.unpack(">HH" if big else "<HH", raw)
    return (group << 16 | element) in _PIXEL_TAGS


def _open_unchanged(path: Path, source: _Source) -> BinaryIO:
    """Open `path` for streaming, refusing a file whose size or mtime differs from when its header was read."""
    handle = path.open("rb")
    stat = os.fstat(handle.fileno())
    if (stat.st_size, stat.st_mtime_ns) != (source.size, source.mtime_ns):
        handle.close()
        raise TagRewriteError(path, "the file changed after its tags were read; run again")
    return handle
