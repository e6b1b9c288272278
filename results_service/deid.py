"""De-identification of a DICOM dataset: the PS3.15 Annex E Basic Application Level Confidentiality Profile.

The action of each attribute (D dummy, Z empty, X remove, U new UID, and the combined ones)
comes from the standard's Table E.1-1 as shipped, machine-readable, by the maintained
`dicom-anonymizer` package (its `dicomfields_2026c` table, generated from the standard); the
actions themselves are applied here so that:

- UIDs are replaced consistently and deterministically: HMAC-SHA256 of the original UID under a
  key, written as a `2.25.<decimal>` UID. The same study keeps one new Study UID across all its
  files and across calls, and no mapping table has to be stored; without the key the original
  cannot be recovered or confirmed.
- Private attributes are removed; pixel data is untouched (burned-in text is out of the basic
  profile's scope and is not claimed to be handled).
- `PatientIdentityRemoved` = YES, `DeidentificationMethod` and the code 113100 are recorded.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
from collections.abc import Callable
from typing import Any

import pydicom
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

TABLE_VERSION = "dicomfields_2026c"
METHOD = "DICOM PS3.15 E.1 Basic Profile (dicomflow, table 2026c)"  # LO: at most 64 chars
_UID_ROOT = "2.25."
_DUMMY_TEXT = "ANONYMIZED"
_DUMMIES: dict[str, Any] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "PN": "ANONYMOUS",
    "UR": "http://anonymized.invalid",
    "DS": "0",
    "IS": "0",
}
_NUMERIC_VRS = frozenset({"FD", "FL", "SS", "US", "SL", "UL", "SV", "UV"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

Action = Callable[[Dataset, DataElement, "Deidentifier"], None]


def _remove(dataset: Dataset, element: DataElement, _: Deidentifier) -> None:
    del dataset[element.tag]


def _empty(dataset: Dataset, element: DataElement, _: Deidentifier) -> None:
    if element.VR == "SQ":
        element.value = Sequence()
    elif element.VR in _NUMERIC_VRS or element.VR in _BINARY_VRS:
        element.value = None
    else:
        element.value = ""


def _dummy(dataset: Dataset, element: DataElement, deid: Deidentifier) -> None:
    vr = element.VR
    if vr == "UI":
        _new_uid(dataset, element, deid)
    elif vr == "SQ":
        element.value = Sequence()  # a sequence's content cannot be faked safely: drop its items
    elif vr in _NUMERIC_VRS:
        element.value = 0
    elif vr in _BINARY_VRS:
        element.value = b"\x00\x00"
    else:
        element.value = _DUMMIES.get(vr, _DUMMY_TEXT)


def _new_uid(dataset: Dataset, element: DataElement, deid: Deidentifier) -> None:
    if element.VR != "UI":
        _dummy(dataset, element, deid)
        return
    value = element.value
    if isinstance(value, list | pydicom.multival.MultiValue):
        element.value = [deid.uid(str(v)) for v in value]
    elif value:
        element.value = deid.uid(str(value))


def _uid_or_empty(dataset: Dataset, element: DataElement, deid: Deidentifier) -> None:
    """X/Z/U*: UIDs are replaced, a sequence keeps its items (whose UIDs the walk replaces), else emptied."""
    if element.VR == "UI":
        _new_uid(dataset, element, deid)
    elif element.VR != "SQ":
        _empty(dataset, element, deid)


# Table category -> action, applied in this order so that later categories win (as the package does).
_CATEGORIES: tuple[tuple[str, Action], ...] = (
    ("D_TAGS", _dummy),
    ("Z_TAGS", _empty),
    ("X_TAGS", _remove),
    ("U_TAGS", _new_uid),
    ("Z_D_TAGS", _dummy),  # Z/D: dummy keeps Type 1 attributes valid
    ("X_Z_TAGS", _empty),
    ("X_D_TAGS", _dummy),
    ("X_Z_D_TAGS", _dummy),
    ("X_Z_U_STAR_TAGS", _uid_or_empty),
)


def _load_table() -> tuple[dict[BaseTag, Action], list[tuple[int, int, int, int, Action]]]:
    table = dicom_anonymization_database_selector(TABLE_VERSION)
    exact: dict[BaseTag, Action] = {}
    masked: list[tuple[int, int, int, int, Action]] = []
    for category, action in _CATEGORIES:
        for entry in table[category]:
            if len(entry) == 2:
                exact[Tag(entry[0], entry[1])] = action
            else:
                group, elem, group_mask, elem_mask = entry
                masked.append((group & group_mask, elem & elem_mask, group_mask, elem_mask, action))
    return exact, masked


_EXACT, _MASKED = _load_table()


class Deidentifier:
    """Applies the basic profile; one instance (one key) gives consistent UIDs across files."""

    def __init__(self, uid_key: bytes) -> None:
        if len(uid_key) < 16:
            raise ValueError("the UID key must be at least 16 bytes")
        self._key = uid_key

    def uid(self, original: str) -> str:
        """The replacement of a UID: `2.25.` + 128 bits of HMAC-SHA256(key, uid) in decimal (at most 44 chars)."""
        digest = hmac.new(self._key, original.strip().encode(), hashlib.sha256).digest()[:16]
        return _UID_ROOT + str(int.from_bytes(digest, "big"))

    def deidentify(self, dataset: Dataset) -> Dataset:
        """A de-identified deep copy of `dataset` (the original is left untouched)."""
        result = copy.deepcopy(dataset)
        result.remove_private_tags()
        result.walk(self._apply)
        meta = getattr(result, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = self.uid(str(meta.MediaStorageSOPInstanceUID))
        result.PatientIdentityRemoved = "YES"
        result.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        result.DeidentificationMethodCodeSequence = Sequence([code])
        return result

    def deidentify_bytes(self, data: bytes) -> bytes:
        """A de-identified copy of a Part 10 file, as a Part 10 file (pixel data byte for byte)."""
        dataset = pydicom.dcmread(io.BytesIO(data))
        out = io.BytesIO()
        self.deidentify(dataset).save_as(out, enforce_file_format=True)
        return out.getvalue()

    def _apply(self, dataset: Dataset, element: DataElement) -> None:
        action = _EXACT.get(element.tag)
        if action is None:
            group, elem = element.tag.group, element.tag.element
            action = next(
                (a for g, e, gm, em, a in _MASKED if group & gm == g and elem & em == e),
                None,
            )
        if action is not None:
            action(dataset, element, self)
