"""DICOM tag reading (the brief's exercise 3): patient name, study date, modality and any requested tag.

Tags are accepted in every spelling people use: the brief's group and element pair
(`0x0008 0x0016`, two words), `0008,0016`, `(0008,0016)`, `00080016`, `0x00080016` or a keyword
(`SOPClassUID`). Files are read with values over 1 KiB deferred, so a 2 GB multi-frame file costs
only its header: bulk values are described by their length and never loaded.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_description, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

DEFER_SIZE = 1024
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_HEX_WORD = re.compile(r"(?:0x)?([0-9a-f]{1,4})", re.IGNORECASE)
_PAIR = re.compile(r"\(?\s*(?:0x)?([0-9a-f]{4})\s*[,|]\s*(?:0x)?([0-9a-f]{4})\s*\)?", re.IGNORECASE)
_PACKED = re.compile(r"(?:0x)?([0-9a-f]{8})", re.IGNORECASE)
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")

JsonValue = str | int | float | list[Any] | None


class DicomError(ValueError):
    """The file cannot be read as DICOM, or a tag cannot be understood; the message says why."""


class DicomNotFound(DicomError):
    """The path does not exist or is a folder."""


class NotDicom(DicomError):
    """The file is not a DICOM Part 10 file (no preamble and `DICM` prefix), or is truncated."""


class TagSpecError(DicomError):
    """A requested tag is neither a known keyword nor a group/element number."""


@dataclass(frozen=True, slots=True)
class TagValue:
    """One requested tag: where it is, what it is called, and its value if the file holds it."""

    tag: str
    keyword: str
    name: str
    vr: str | None
    present: bool
    value: JsonValue


@dataclass(frozen=True, slots=True)
class DicomSummary:
    """The brief's three fields (None when the file lacks them) and the requested tags."""

    path: str
    patient_name: str | None
    study_date: str | None
    modality: str | None
    tags: list[TagValue]


def parse_tag_specs(specs: Sequence[str | int | tuple[int, int]]) -> list[BaseTag]:
    """Turn the words of a command line (or ints, or (group, element) pairs) into tags.

    A word that is a bare hex group of at most 4 digits must be followed by its element, as in
    the brief's `0x0008 0x0016`.
    """
    tags: list[BaseTag] = []
    index = 0
    while index < len(specs):
        spec = specs[index]
        index += 1
        if isinstance(spec, tuple):
            tags.append(_checked_tag(*spec))
        elif isinstance(spec, int):
            tags.append(_checked_tag(spec >> 16, spec & 0xFFFF))
        elif (group := _HEX_WORD.fullmatch(spec.strip())) is not None:
            following = specs[index] if index < len(specs) else None
            element = _HEX_WORD.fullmatch(following.strip()) if isinstance(following, str) else None
            if element is None:
                raise TagSpecError(f"tag {spec!r} is a group number without its element: write e.g. '{spec} 0x0016'")
            index += 1
            tags.append(_checked_tag(int(group[1], 16), int(element[1], 16)))
        else:
            tags.append(parse_tag(spec))
    return tags


def parse_tag(spec: str) -> BaseTag:
    """One tag written in one word: `0008,0016`, `(0008,0016)`, `00080016`, `0x00080016` or a keyword."""
    text = spec.strip()
    if (pair := _PAIR.fullmatch(text)) is not None:
        return _checked_tag(int(pair[1], 16), int(pair[2], 16))
    if (packed := _PACKED.fullmatch(text)) is not None:
        value = int(packed[1], 16)
        return _checked_tag(value >> 16, value & 0xFFFF)
    if _KEYWORD.fullmatch(text) is not None:
        number = tag_for_keyword(text)
        if number is None:
            raise TagSpecError(f"{text!r} is not a DICOM keyword (e.g. SOPClassUID, PatientName)")
        return Tag(number)
    raise TagSpecError(
        f"cannot read {spec!r} as a tag: use 0008,0016, (0008,0016), 00080016, 0x0008 0x0016 or a keyword"
    )


def _checked_tag(group: int, element: int) -> BaseTag:
    if not (0 <= group <= 0xFFFF and 0 <= element <= 0xFFFF):
        raise TagSpecError(f"group and element must be 16-bit numbers, got {group:#x}, {element:#x}")
    return Tag(group, element)


def read_dataset(path: str | os.PathLike[str]) -> pydicom.Dataset:
    """The file's data set with bulk values left on disk; missing, folder, not-DICOM and truncated refused."""
    file = Path(path)
    if not file.exists():
        raise DicomNotFound(f"DICOM file {str(file)!r} does not exist")
    if file.is_dir():
        raise DicomNotFound(f"{str(file)!r} is a folder, not a DICOM file")
    try:
        dataset = pydicom.dcmread(file, defer_size=DEFER_SIZE)
    except InvalidDicomError as e:
        raise NotDicom(f"{file.name} is not a DICOM file (no 'DICM' prefix after the preamble)") from e
    except PermissionError as e:
        raise DicomError(f"DICOM file {str(file)!r} cannot be read: permission denied") from e
    except (EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise NotDicom(f"{file.name} could not be read as DICOM: {e}") from e
    return dataset


def summarise_dicom(path: str | os.PathLike[str], specs: Sequence[str | int | tuple[int, int]] = ()) -> DicomSummary:
    """Patient name, study date (ISO when valid) and modality, then every requested tag."""
    tags = parse_tag_specs(specs)  # a bad spec is refused before the file is opened
    dataset = read_dataset(path)
    return DicomSummary(
        path=str(path),
        patient_name=text_value(dataset, "PatientName"),
        study_date=_iso_date(text_value(dataset, "StudyDate")),
        modality=text_value(dataset, "Modality"),
        tags=read_tags(dataset, tags),
    )


def text_value(dataset: pydicom.Dataset, keyword: str) -> str | None:
    """A single-valued text attribute, or None when it is absent or empty; invalid values come back as written."""
    try:
        with _quiet_validation():
            value = dataset.get(keyword)
    except (ValueError, TypeError, KeyError):
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def _iso_date(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return dt.datetime.strptime(value, "%Y%m%d").date().isoformat()
    except ValueError:
        return value


def read_tags(dataset: pydicom.Dataset, tags: Iterable[BaseTag]) -> list[TagValue]:
    """Each tag's value, or `present=False` when the file lacks it; bulk values are described, not loaded."""
    return [_read_tag(dataset, tag) for tag in tags]


def _read_tag(dataset: pydicom.Dataset, tag: BaseTag) -> TagValue:
    keyword = keyword_for_tag(tag) or ""
    try:
        name = dictionary_description(tag)
        dictionary_vr: str | None = dictionary_VR(tag)
    except KeyError:
        name, dictionary_vr = ("Private tag" if tag.is_private else "Unknown tag"), None
    label = f"({tag.group:04X},{tag.element:04X})"
    raw = dataset.get_item(tag, keep_deferred=True) if tag in dataset else None
    if raw is None:
        return TagValue(label, keyword, name, dictionary_vr, present=False, value=None)
    if isinstance(raw, RawDataElement) and raw.value is None:  # deferred: left on disk
        size = "undefined length (encapsulated)" if raw.length == 0xFFFFFFFF else f"{raw.length} bytes"
        return TagValue(label, keyword, name, raw.VR, present=True, value=f"<{size}, not loaded>")
    try:
        with _quiet_validation():
            element = dataset[tag]
    except (ValueError, TypeError, KeyError, OSError) as e:
        return TagValue(label, keyword, name, dictionary_vr, present=True, value=f"<unreadable: {e}>")
    return TagValue(label, keyword, name, element.VR, present=True, value=_json_value(element))


@contextmanager
def _quiet_validation() -> Iterator[None]:
    """pydicom warns about values that break their VR; the caller reports those in its own words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _json_value(element: DataElement) -> JsonValue:
    value = element.value
    if element.VR == "SQ":
        return f"<sequence of {len(value)} item(s)>"
    if element.VR in _BULK_VRS or isinstance(value, bytes | bytearray):
        return f"<{len(value) if value is not None else 0} bytes>"
    if isinstance(value, MultiValue | list | tuple):
        return [_scalar(item) for item in value]
    return _scalar(value)


def _scalar(value: object) -> str | int | float | None:
    """pydicom's IS/DS/PersonName/UID as plain JSON types."""
    if value is None:
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)
