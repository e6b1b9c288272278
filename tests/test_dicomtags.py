"""DICOM tags: every spelling of a tag, the three fields and requested tags as pydicom reads them, clear errors."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from pydicom.tag import Tag

from common.dicom.tags import (
    DicomNotFound,
    NotDicom,
    TagSpecError,
    parse_tag,
    parse_tag_specs,
    summarise_dicom,
)

SOP_CLASS = Tag(0x0008, 0x0016)


@pytest.mark.parametrize(
    "words",
    [
        ["0x0008", "0x0016"],
        ["0008", "0016"],
        ["8", "16"],
        ["0008,0016"],
        ["(0008,0016)"],
        ["(0008, 0016)"],
        ["00080016"],
        ["0x00080016"],
        ["SOPClassUID"],
        [(0x0008, 0x0016)],
        [0x00080016],
    ],
)
def test_every_spelling_of_a_tag_means_the_same_tag(words: list[str | int | tuple[int, int]]) -> None:
    assert parse_tag_specs(words) == [SOP_CLASS]


def test_several_tags_in_one_command_line() -> None:
    words = ["0x0008", "0x0016", "PatientName", "(0028,0008)", "0x0028", "0x0010"]

    assert parse_tag_specs(words) == [SOP_CLASS, Tag(0x0010, 0x0010), Tag(0x0028, 0x0008), Tag(0x0028, 0x0010)]


@pytest.mark.parametrize(
    ("words", "reason"),
    [
        (["0x0008"], "without its element"),
        (["0x0008", "SOPClassUID"], "without its element"),
        (["NotAKeyword"], "not a DICOM keyword"),
        (["00zz,0016"], "cannot read"),
        (["0008-0016"], "cannot read"),
        ([(0x10000, 0)], "16-bit"),
    ],
)
def test_a_tag_that_cannot_be_understood_is_refused(words: list[str | int | tuple[int, int]], reason: str) -> None:
    with pytest.raises(TagSpecError, match=reason):
        parse_tag_specs(words)


def test_parse_tag_reads_one_word() -> None:
    assert parse_tag("  (7fe0,0010) ") == Tag(0x7FE0, 0x0010)


@pytest.mark.parametrize("name", ["sample-01-dicom.dcm", "sample-02-dicom.dcm"])
def test_the_three_fields_and_requested_tags_are_what_pydicom_reads(samples_dir: Path, name: str) -> None:
    path = samples_dir / name
    reference = pydicom.dcmread(path)
    keywords = ["SOPClassUID", "SOPInstanceUID", "Rows", "Columns", "SeriesNumber", "ImageType"]

    summary = summarise_dicom(path, keywords)

    assert summary.patient_name == str(reference.PatientName)
    assert summary.study_date == dt.datetime.strptime(reference.StudyDate, "%Y%m%d").date().isoformat()
    assert summary.modality == reference.Modality
    assert [tag.keyword for tag in summary.tags] == keywords
    assert all(tag.present for tag in summary.tags)
    by_keyword = {tag.keyword: tag.value for tag in summary.tags}
    assert by_keyword["SOPClassUID"] == str(reference.SOPClassUID)
    assert by_keyword["SOPInstanceUID"] == str(reference.SOPInstanceUID)
    assert by_keyword["Rows"] == reference.Rows == 512
    assert by_keyword["Columns"] == reference.Columns == 512
    assert by_keyword["SeriesNumber"] == int(reference.SeriesNumber)
    assert by_keyword["ImageType"] == list(reference.ImageType)


def test_sample_fields_are_the_known_ones(samples_dir: Path) -> None:
    first = summarise_dicom(samples_dir / "sample-01-dicom.dcm")
    second = summarise_dicom(samples_dir / "sample-02-dicom.dcm", ["NumberOfFrames"])

    assert (first.patient_name, first.study_date, first.modality) == ("Anonymous", "2009-09-25", "MR")
    assert (second.patient_name, second.study_date, second.modality) == ("Rubo DEMO", "1994-10-13", "XA")
    assert second.tags[0].value == 96


def test_a_missing_tag_is_reported_as_missing(samples_dir: Path) -> None:
    summary = summarise_dicom(samples_dir / "sample-01-dicom.dcm", ["NumberOfFrames", "0x0009", "0x0010"])

    assert [(tag.tag, tag.keyword, tag.present, tag.value) for tag in summary.tags] == [
        ("(0028,0008)", "NumberOfFrames", False, None),
        ("(0009,0010)", "", False, None),
    ]


def test_pixel_data_is_described_by_its_length_and_never_loaded(samples_dir: Path) -> None:
    reference = pydicom.dcmread(samples_dir / "sample-01-dicom.dcm", stop_before_pixels=True)
    expected_bytes = reference.Rows * reference.Columns * reference.BitsAllocated // 8

    native = summarise_dicom(samples_dir / "sample-01-dicom.dcm", ["PixelData"]).tags[0]
    tracemalloc.start()
    try:
        encapsulated = summarise_dicom(samples_dir / "sample-02-dicom.dcm", ["PixelData"]).tags[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert native.value == f"<{expected_bytes} bytes, not loaded>"
    assert encapsulated.value == "<undefined length (encapsulated), not loaded>"
    assert peak < 1_000_000  # the file is 1.7 MB, nearly all of it pixel data


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DicomNotFound, match="does not exist"):
        summarise_dicom(tmp_path / "nope.dcm")


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DicomNotFound, match="is a folder"):
        summarise_dicom(tmp_path)


@pytest.mark.parametrize("content", [b"", b"PatientID,Age\nab1,25\n", b"\x00" * 128 + b"NOPE" + b"\x00" * 64])
def test_a_file_that_is_not_dicom_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.dcm"
    path.write_bytes(content)

    with pytest.raises(NotDicom, match="is not a DICOM file"):
        summarise_dicom(path)


def test_a_bad_tag_is_refused_before_the_file_is_opened(tmp_path: Path) -> None:
    with pytest.raises(TagSpecError):
        summarise_dicom(tmp_path / "nope.dcm", ["NoSuchKeyword"])
