"""PS3.15 basic-profile de-identification on both sample files."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from structlog.testing import capture_logs

from results_service.deid import METHOD, Deidentifier

SAMPLES = ("sample-01-dicom.dcm", "sample-02-dicom.dcm")
KEY = b"k" * 32


def uids(ds: Dataset) -> set[str]:
    return {str(e.value) for e in ds.iterall() if e.VR == "UI" and e.value and e.keyword.endswith("InstanceUID")}


@pytest.mark.parametrize("sample", SAMPLES)
def test_identifying_attributes_are_gone_or_replaced(samples_dir: Path, sample: str) -> None:
    raw = (samples_dir / sample).read_bytes()
    original = pydicom.dcmread(io.BytesIO(raw))
    out = pydicom.dcmread(io.BytesIO(Deidentifier(KEY).deidentify_bytes(raw)))
    assert str(out.get("PatientName", "")) in ("", "ANONYMOUS")
    assert str(out.get("PatientID", "")) in ("", "ANONYMIZED")
    assert str(out.get("PatientBirthDate", "")) == ""
    for keyword in ("InstitutionName", "ReferringPhysicianName", "PerformingPhysicianName", "StudyDescription"):
        value = str(out.get(keyword, ""))
        assert value in ("", "ANONYMIZED", "ANONYMOUS"), keyword
    text = str(out)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName"):
        value = str(original.get(keyword, "") or "")
        if len(value) > 3:
            assert value not in text, keyword
    assert not [e for e in out.iterall() if e.tag.is_private]
    assert out.PatientIdentityRemoved == "YES" and out.DeidentificationMethod == METHOD
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


@pytest.mark.parametrize("sample", SAMPLES)
def test_pixel_data_and_image_attributes_are_intact(samples_dir: Path, sample: str) -> None:
    raw = (samples_dir / sample).read_bytes()
    original = pydicom.dcmread(io.BytesIO(raw))
    out = pydicom.dcmread(io.BytesIO(Deidentifier(KEY).deidentify_bytes(raw)))
    assert out.PixelData == original.PixelData
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation", "SOPClassUID", "Modality"):
        assert out.get(keyword) == original.get(keyword), keyword
    assert (out.pixel_array == original.pixel_array).all()


@pytest.mark.parametrize("sample", SAMPLES)
def test_uids_are_remapped_consistently_and_deterministically(samples_dir: Path, sample: str) -> None:
    raw = (samples_dir / sample).read_bytes()
    original = pydicom.dcmread(io.BytesIO(raw))
    first = pydicom.dcmread(io.BytesIO(Deidentifier(KEY).deidentify_bytes(raw)))
    again = pydicom.dcmread(io.BytesIO(Deidentifier(KEY).deidentify_bytes(raw)))
    other_key = pydicom.dcmread(io.BytesIO(Deidentifier(b"o" * 32).deidentify_bytes(raw)))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        new = str(first[keyword].value)
        assert new != str(original[keyword].value) and new.startswith("2.25.") and len(new) <= 64
        assert new == str(again[keyword].value) != str(other_key[keyword].value)
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert not uids(original) & uids(first)


def test_the_same_study_keeps_one_new_uid_across_files() -> None:
    deid = Deidentifier(KEY)
    a, b = Dataset(), Dataset()
    a.StudyInstanceUID = b.StudyInstanceUID = "1.2.3.4"
    a.SOPInstanceUID, b.SOPInstanceUID = "1.2.3.4.1", "1.2.3.4.2"
    ref = Dataset()
    ref.ReferencedSOPInstanceUID = "1.2.3.4.1"
    b.ReferencedImageSequence = Sequence([ref])
    out_a, out_b = deid.deidentify(a), deid.deidentify(b)
    assert out_a.StudyInstanceUID == out_b.StudyInstanceUID
    assert out_a.SOPInstanceUID != out_b.SOPInstanceUID
    assert out_b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out_a.SOPInstanceUID


def test_nested_and_repeating_group_attributes_are_handled() -> None:
    ds = Dataset()
    item = Dataset()
    item.PatientName = "Nested^Person"
    item.PatientID = "NESTED-1"
    ds.OtherPatientIDsSequence = Sequence([item])
    ds.add_new(0x60003000, "OW", b"\x01\x02")  # overlay data (a repeating group the profile removes)
    ds.add_new(0x00091010, "LO", "private")
    ds.PatientComments = "lives at 1 Main Street"
    out = Deidentifier(KEY).deidentify(ds)
    assert "Nested^Person" not in str(out) and "NESTED-1" not in str(out)
    assert 0x60003000 not in out and 0x00091010 not in out and "PatientComments" not in out
    assert ds.OtherPatientIDsSequence[0].PatientName == "Nested^Person"  # the input is untouched


def test_de_identification_logs_no_patient_data(samples_dir: Path) -> None:
    raw = (samples_dir / "sample-02-dicom.dcm").read_bytes()
    with capture_logs() as logs:
        Deidentifier(KEY).deidentify_bytes(raw)
    assert "Rubo" not in repr(logs) and "556342B" not in repr(logs)


def test_short_uid_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Deidentifier(b"short")
