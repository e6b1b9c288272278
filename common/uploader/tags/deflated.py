"""Deflated files (transfer syntax 1.2.840.10008.1.2.1.99): the dataset after the file meta is one raw deflate
stream, so a tag cannot be changed in place. The header is read through an inflating reader that stops at the
pixel data, and the copy is the new file meta followed by a new deflate stream of the new header and the original's
inflated rest, inflated and deflated again a chunk at a time: memory stays bounded, the CPU pays for the
compression (once to learn the copy's size and SHA-256, once per attempt to send it). zlib's output is the same
for the same input and settings, so a run again on the same machine makes the same bytes (the resume lookup
finds them).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import BaseTag

WBITS = -zlib.MAX_WBITS  # raw deflate, no zlib header (PS3.5 A.5)
LEVEL = 6
PREFIX = 128 + 4  # preamble and "DICM"
_GROUP_LENGTH = struct.pack("<HH2sH", 0x0002, 0x0000, b"UL", 4)
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_READ = 256 * 1024


class DeflatedError(ValueError):
    """The file's deflated dataset cannot be read."""


def dataset_start(handle: BinaryIO) -> int:
    """Where the deflate stream begins: after the file meta, whose group length (0002,0000) is read here."""
    handle.seek(PREFIX)
    head = handle.read(12)
    if len(head) < 12 or head[:8] != _GROUP_LENGTH:
        raise DeflatedError("the file meta does not start with its group length (0002,0000)")
    return PREFIX + 12 + int(struct.unpack("<I", head[8:])[0])


class InflatingReader:
    """A read/seek/tell view of the inflated dataset for pydicom's reader, inflating only as far as it is read.
    What was inflated is kept (it is the header: reading stops at the pixel data)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._inflater = zlib.decompressobj(WBITS)
        self._data = bytearray()
        self._position = 0

    def _fill(self, end: int) -> None:
        while len(self._data) < end and not self._inflater.eof:
            compressed = self._inflater.unconsumed_tail or self._handle.read(_READ)
            plain = self._inflater.decompress(compressed, end - len(self._data))
            if not compressed and not plain:
                raise DeflatedError("the deflated dataset ends early")
            self._data += plain

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise DeflatedError("the deflated dataset is read a piece at a time")
        self._fill(self._position + size)
        piece = bytes(self._data[self._position : self._position + size])
        self._position += len(piece)
        return piece

    def seek(self, offset: int, whence: int = 0) -> int:
        self._position = offset if whence == 0 else self._position + offset
        if whence == 2:
            raise DeflatedError("the deflated dataset has no known end")
        return self._position

    def tell(self) -> int:
        return self._position


def read_deflated(handle: BinaryIO, start: int) -> tuple[Dataset, int]:
    """The dataset up to the pixel data and where the pixel data begins in the inflated stream."""

    def at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
        return int(tag) in _PIXEL_TAGS

    handle.seek(start)
    reader = InflatingReader(handle)
    dataset = read_dataset(reader, False, True, stop_when=at_pixels)  # type: ignore[arg-type]
    return dataset, reader.tell()


def encode_header(preamble: bytes, meta: FileMetaDataset, dataset: Dataset) -> tuple[bytes, bytes]:
    """(preamble + DICM + file meta with its group length recomputed, the dataset up to the pixel data as explicit
    VR little endian, not yet deflated)."""
    prefix = DicomBytesIO()
    prefix.is_little_endian, prefix.is_implicit_VR = True, False
    prefix.write(preamble)
    prefix.write(b"DICM")
    write_file_meta_info(prefix, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, dataset)
    return prefix.getvalue(), body.getvalue()


def deflated_copy(
    handle: BinaryIO, start: int, skip: int, prefix: bytes, header: bytes, chunk_size: int
) -> Iterator[bytes]:
    """The copy's bytes: `prefix`, then one deflate stream of `header` and the original's inflated dataset from
    `skip` on (the original's deflate stream begins at `start`), padded to an even length."""
    yield prefix
    deflater = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS)
    length = 0
    inflater = zlib.decompressobj(WBITS)
    handle.seek(start)
    to_skip = skip
    pending = deflater.compress(header)
    while not inflater.eof:
        compressed = inflater.unconsumed_tail or handle.read(_READ)
        plain = inflater.decompress(compressed, chunk_size)
        if not compressed and not plain:
            raise DeflatedError("the deflated dataset ends early")
        if to_skip:
            dropped = min(to_skip, len(plain))
            plain, to_skip = plain[dropped:], to_skip - dropped
        if out := pending + deflater.compress(plain):  # yielded as zlib gives it: at most about one chunk
            length += len(out)
            yield out
        pending = b""
    out = pending + deflater.flush()
    length += len(out)
    yield out + (b"\0" if length % 2 else b"")
