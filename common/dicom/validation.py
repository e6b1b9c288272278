"""Is a staged file a DICOM instance the pipeline can process? Decided at the door, without pixel data in memory.

The header is read with pydicom up to (not including) the pixel data; the pixel data element is
then checked by walking its header (native: its length against the image size; encapsulated:
its items up to the sequence delimiter), so a truncated upload is rejected here rather than
failing later in a worker. Every rejection carries a reason a person can act on.

`validate_file` is the one place where a file's bytes meet pydicom, so it is also where any failure
while reading them becomes that file's rejection: pydicom converts values lazily and raises many
types on malformed input (NotImplementedError for an unknown VR, TypeError from a value of the
wrong type, ...), and one hostile file must never fail more than itself.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom import uid as uids
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import get_expected_length

from common.app.logs import get_logger
from common.schemas.instances import DicomMetadata

log = get_logger(__name__)

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
PIXEL_DATA_TAG = 0x7FE00010
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})  # Pixel, Float Pixel, Double Float Pixel Data
UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM_TAG = (0xFFFE, 0xE000)
SEQUENCE_DELIMITER_TAG = (0xFFFE, 0xE0DD)
_DEFER_SIZE = 64 * 1024
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_IMAGE_PIXEL_MODULE = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_MESSAGE_LIMIT = 300


class InvalidDicom(Exception):
    """The file is not a DICOM instance the pipeline accepts; `reason` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate_file(source: Path | BinaryIO) -> DicomMetadata:
    """Validate the DICOM file at a path or in a seekable file object (closed afterwards) and return its
    identifying metadata (blocking: run it in a thread).

    Raises InvalidDicom, and only InvalidDicom, for anything wrong with the file: an unexpected exception
    while reading it is logged with its traceback and becomes a rejection whose reason names the problem.
    """
    try:
        with source.open("rb") if isinstance(source, Path) else source as fp:
            return _validate(fp)
    except InvalidDicom:
        raise
    except Exception as exc:  # the boundary between untrusted bytes and the pipeline: see the module docstring
        log.warning("dicom_check_failed", error=type(exc).__name__, exc_info=exc)
        raise InvalidDicom(unreadable_reason(exc)) from exc


def unreadable_reason(exc: Exception) -> str:
    """A person's reason for a file that made a check raise: pydicom's message (it names the element), never a
    path (an OSError's text may name one of ours)."""
    if isinstance(exc, OSError) and exc.errno is not None:  # the system's error (pydicom raises plain ones too)
        return f"unreadable file: {exc.strerror or type(exc).__name__}"
    message = _UNPRINTABLE.sub("?", str(exc)).strip()[:_MESSAGE_LIMIT]
    return f"unreadable DICOM header: {type(exc).__name__}: {message}" if message else "unreadable DICOM header"


def _validate(fp: BinaryIO) -> DicomMetadata:
    size = fp.seek(0, 2)
    fp.seek(0)
    _check_magic(fp, size)
    ds = _read_header(fp)
    pixel_offset = fp.tell()
    transfer_syntax = _check_file_meta(ds)
    for keyword in _REQUIRED_UIDS:
        _check_uid(ds, keyword)
    deflated = transfer_syntax == uids.DeflatedExplicitVRLittleEndian
    # A deflated dataset is read from an inflated copy: file offsets mean nothing there.
    pixel_tag = None if deflated else _next_tag(fp, pixel_offset, size, ds)
    if _is_image(ds, pixel_tag):
        if not deflated and pixel_tag != PIXEL_DATA_TAG:
            raise InvalidDicom("image has no pixel data (7FE0,0010)")
        _check_image_module(ds, transfer_syntax)
        if not deflated:
            _check_pixel_data(ds, fp, pixel_offset, size, transfer_syntax)
    return _metadata(ds, transfer_syntax)


def _check_magic(fp: BinaryIO, size: int) -> None:
    if size == 0:
        raise InvalidDicom("empty file (0 bytes)")
    head = fp.read(PREAMBLE_LENGTH + len(MAGIC))
    if head[PREAMBLE_LENGTH:] != MAGIC:
        raise InvalidDicom("not a DICOM file: no DICM marker at byte 128")


def _read_header(fp: BinaryIO) -> Dataset:
    fp.seek(0)
    return pydicom.dcmread(fp, stop_before_pixels=True, defer_size=_DEFER_SIZE)


def _check_file_meta(ds: Dataset) -> uids.UID:
    meta = ds.file_meta
    for keyword in ("TransferSyntaxUID", "MediaStorageSOPClassUID"):
        if not meta.get(keyword):
            raise InvalidDicom(f"file meta information has no {keyword}")
    if str(meta.MediaStorageSOPClassUID) == uids.MediaStorageDirectoryStorage:
        raise InvalidDicom("DICOMDIR is a media index, not an instance; upload the files it lists")
    transfer_syntax = uids.UID(str(meta.TransferSyntaxUID))
    if not transfer_syntax.is_valid or not transfer_syntax.is_transfer_syntax:
        raise InvalidDicom(f"unknown transfer syntax {transfer_syntax}")
    return transfer_syntax


def _raw_text(ds: Dataset, keyword: str) -> str | None:
    """A string value straight from its bytes: no pydicom value validation (and its warnings) on bad input."""
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return None
    element = ds.get_item(tag)
    value: Any = element.value
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
    else:
        text = "" if value is None else str(value)
    return text.strip(" \0") or None


def _check_uid(ds: Dataset, keyword: str) -> None:
    value = _raw_text(ds, keyword)
    if not value:
        raise InvalidDicom(f"missing {keyword}")
    if not uids.UID(value, validation_mode=pydicom.config.IGNORE).is_valid:
        raise InvalidDicom(f"{keyword} {value[:80]!r} is not a valid UID")


def _is_image(ds: Dataset, pixel_tag: int | None) -> bool:
    """Image storage classes, and anything carrying the Image Pixel module or pixel data, need valid pixels."""
    sop_class = uids.UID(_raw_text(ds, "SOPClassUID") or "")
    return "Image Storage" in sop_class.name or "Rows" in ds or pixel_tag is not None


def _next_tag(fp: BinaryIO, offset: int, size: int, ds: Dataset) -> int | None:
    """The pixel-data tag pydicom stopped at, if any."""
    if size - offset < 4:
        return None
    fp.seek(offset)
    group, element = struct.unpack(_endian(ds) + "HH", fp.read(4))
    tag = (group << 16) | element
    return tag if tag in PIXEL_TAGS else None


def _endian(ds: Dataset) -> str:
    return "<" if uids.UID(str(ds.file_meta.TransferSyntaxUID)).is_little_endian else ">"


def _check_image_module(ds: Dataset, transfer_syntax: uids.UID) -> None:
    for keyword in _IMAGE_PIXEL_MODULE:
        if ds.get(keyword) in (None, ""):
            raise InvalidDicom(f"image is missing {keyword}")
    _check_decoder(transfer_syntax)


def _check_pixel_data(ds: Dataset, fp: BinaryIO, offset: int, size: int, transfer_syntax: uids.UID) -> None:
    """The pixel data element starting at `offset` is complete for the image it describes."""
    value_offset, length = _element_header(fp, offset, transfer_syntax)
    if transfer_syntax.is_encapsulated:
        if length != UNDEFINED_LENGTH:
            raise InvalidDicom(f"pixel data of compressed transfer syntax {transfer_syntax.name} is not encapsulated")
        _check_fragments(fp, value_offset, size, _frames(ds), _endian(ds))
        return
    if length == UNDEFINED_LENGTH:
        raise InvalidDicom(f"pixel data is encapsulated but {transfer_syntax.name} is a native transfer syntax")
    _frames(ds)  # pydicom multiplies by NumberOfFrames as it finds it: a malformed value is named here first
    expected = get_expected_length(ds, unit="bytes")
    available = min(length, size - value_offset)
    if available < expected:
        raise InvalidDicom(f"truncated: pixel data is {available} bytes, expected {expected} ({_shape(ds)})")
    if available < length:
        raise InvalidDicom(f"truncated: file ends {length - available} bytes before the end of its pixel data")


def _check_decoder(transfer_syntax: uids.UID) -> None:
    try:
        available = get_decoder(transfer_syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise InvalidDicom(f"transfer syntax {transfer_syntax} ({transfer_syntax.name}) has no decoder installed")


def _element_header(fp: BinaryIO, offset: int, transfer_syntax: uids.UID) -> tuple[int, int]:
    """(offset of the value, declared length) of the element whose tag starts at `offset`."""
    endian = "<" if transfer_syntax.is_little_endian else ">"
    fp.seek(offset + 4)
    if transfer_syntax.is_implicit_VR:
        header = fp.read(4)
        if len(header) < 4:
            raise InvalidDicom("truncated: file ends inside the pixel data header")
        return offset + 8, int(struct.unpack(endian + "I", header)[0])
    header = fp.read(8)
    if len(header) < 8:
        raise InvalidDicom("truncated: file ends inside the pixel data header")
    if header[:2] in _LONG_VRS:
        return offset + 12, int(struct.unpack(endian + "I", header[4:8])[0])
    return offset + 8, int(struct.unpack(endian + "H", header[2:4])[0])


def element_end(fp: BinaryIO, offset: int, transfer_syntax: uids.UID) -> int:
    """Offset just past the element whose tag starts at `offset`; an undefined length (encapsulated pixel
    data) is walked item by item to its sequence delimiter. Raises InvalidDicom if the file ends first."""
    value_offset, length = _element_header(fp, offset, transfer_syntax)
    if length != UNDEFINED_LENGTH:
        return value_offset + length
    endian = "<" if transfer_syntax.is_little_endian else ">"
    fp.seek(value_offset)
    while True:
        header = fp.read(8)
        if len(header) < 8:
            raise InvalidDicom("truncated: encapsulated data ends before its sequence delimiter")
        group, element, item_length = struct.unpack(endian + "HHI", header)
        if (group, element) == SEQUENCE_DELIMITER_TAG:
            return fp.tell()
        if (group, element) != ITEM_TAG or item_length == UNDEFINED_LENGTH:
            raise InvalidDicom(f"corrupt encapsulated data: unexpected ({group:04X},{element:04X}) item")
        fp.seek(item_length, 1)


def _check_fragments(fp: BinaryIO, offset: int, size: int, frames: int, endian: str) -> None:
    """Walk the encapsulated items: offset table, then fragments, up to the sequence delimiter."""
    fp.seek(offset)
    items: list[int] = []
    while True:
        header = fp.read(8)
        if len(header) < 8:
            raise InvalidDicom(
                f"truncated: compressed pixel data ends after {max(len(items) - 1, 0)} fragment(s), "
                "before its sequence delimiter"
            )
        group, element, length = struct.unpack(endian + "HHI", header)
        if (group, element) == SEQUENCE_DELIMITER_TAG:
            break
        if (group, element) != ITEM_TAG or length == UNDEFINED_LENGTH:
            raise InvalidDicom(f"corrupt compressed pixel data: unexpected ({group:04X},{element:04X}) item")
        if fp.tell() + length > size:
            raise InvalidDicom(f"truncated: fragment {len(items)} of the compressed pixel data runs past the file end")
        items.append(length)
        fp.seek(length, 1)
    if not items:
        raise InvalidDicom("corrupt compressed pixel data: no basic offset table item")
    offset_table, fragments = items[0], len(items) - 1
    if fragments < frames:
        raise InvalidDicom(f"compressed pixel data has {fragments} fragment(s) for {frames} frame(s)")
    if offset_table and offset_table != 4 * frames:
        raise InvalidDicom(f"basic offset table lists {offset_table // 4} frame(s), expected {frames}")


def _frames(ds: Dataset) -> int:
    value = _raw_text(ds, "NumberOfFrames")
    try:
        frames = int(value) if value is not None else 1
    except (TypeError, ValueError) as exc:
        raise InvalidDicom(f"NumberOfFrames {value!r} is not a number") from exc
    if frames < 1:
        raise InvalidDicom(f"NumberOfFrames is {frames}")
    return frames


def _shape(ds: Dataset) -> str:
    return f"{ds.Rows}x{ds.Columns}, {ds.SamplesPerPixel} sample(s), {ds.BitsAllocated} bits, {_frames(ds)} frame(s)"


def _text(ds: Dataset, keyword: str, limit: int) -> str | None:
    """A display value: control characters (PostgreSQL refuses NUL in text) become '?'."""
    value = _raw_text(ds, keyword)
    return _UNPRINTABLE.sub("?", value)[:limit] if value is not None else None


def _integer(ds: Dataset, keyword: str) -> int | None:
    value: Any = _raw_text(ds, keyword) if keyword == "NumberOfFrames" else ds.get(keyword)
    try:
        number = int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is None or number >= 0 else None


def _metadata(ds: Dataset, transfer_syntax: uids.UID) -> DicomMetadata:
    return DicomMetadata(
        sop_class_uid=_raw_text(ds, "SOPClassUID") or "",
        sop_instance_uid=_raw_text(ds, "SOPInstanceUID") or "",
        study_instance_uid=_raw_text(ds, "StudyInstanceUID") or "",
        series_instance_uid=_raw_text(ds, "SeriesInstanceUID") or "",
        modality=_text(ds, "Modality", 16),
        transfer_syntax_uid=str(transfer_syntax),
        study_date=_text(ds, "StudyDate", 16),
        number_of_frames=_integer(ds, "NumberOfFrames") or (1 if "Rows" in ds else None),
        rows=_integer(ds, "Rows"),
        columns=_integer(ds, "Columns"),
        samples_per_pixel=_integer(ds, "SamplesPerPixel"),
        bits_allocated=_integer(ds, "BitsAllocated"),
    )
