"""Validation at the door: every accepted shape and every rejection reason, on files made from the samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom import uid as uids
from pydicom.dataset import Dataset, FileMetaDataset

from common.dicom.validation import InvalidDicom, validate_file

SAMPLE_01 = "sample-01-dicom.dcm"
SAMPLE_02 = "sample-02-dicom.dcm"
FRAME_BYTES_01 = 512 * 512 * 2  # sample-01: 512 x 512, 16 bits allocated, one sample, one frame


@pytest.fixture
def rewrite(samples_dir: Path, tmp_path: Path) -> Callable[..., Path]:
    """Write a changed copy of a sample: `change(ds)` edits the dataset before it is saved."""

    def make(sample: str, change: Callable[[Dataset], None], **save: object) -> Path:
        ds = pydicom.dcmread(samples_dir / sample)
        change(ds)
        out = tmp_path / f"changed-{sample}"
        ds.save_as(out, **save)
        return out

    return make


def cut(samples_dir: Path, tmp_path: Path, sample: str, drop: int) -> Path:
    data = (samples_dir / sample).read_bytes()
    out = tmp_path / f"cut-{drop}-{sample}"
    out.write_bytes(data[:-drop])
    return out


def reason_of(path: Path) -> str:
    with pytest.raises(InvalidDicom) as info:
        validate_file(path)
    return info.value.reason


def test_both_samples_are_accepted_with_their_metadata(samples_dir: Path) -> None:
    mr = validate_file(samples_dir / SAMPLE_01)
    ds = pydicom.dcmread(samples_dir / SAMPLE_01, stop_before_pixels=True)
    assert mr.sop_instance_uid == ds.SOPInstanceUID
    assert mr.study_instance_uid == ds.StudyInstanceUID
    assert mr.series_instance_uid == ds.SeriesInstanceUID
    assert (mr.modality, mr.transfer_syntax_uid, mr.rows, mr.columns, mr.number_of_frames) == (
        "MR",
        uids.ExplicitVRLittleEndian,
        512,
        512,
        1,
    )
    xa = validate_file(samples_dir / SAMPLE_02)
    assert (xa.modality, xa.transfer_syntax_uid, xa.number_of_frames) == ("XA", uids.JPEGBaseline8Bit, 96)
    assert xa.sop_class_uid == uids.XRayAngiographicImageStorage


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    assert reason_of(empty) == "empty file (0 bytes)"


@pytest.mark.parametrize("content", [b"patient list\n" * 20, b"short"], ids=["text", "tiny"])
def test_file_without_dicm_marker_is_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    assert reason_of(path) == "not a DICOM file: no DICM marker at byte 128"


@pytest.mark.parametrize("drop", [1000, 524_000])
def test_truncated_native_pixel_data_is_rejected(samples_dir: Path, tmp_path: Path, drop: int) -> None:
    size = (samples_dir / SAMPLE_01).stat().st_size
    ds = pydicom.dcmread(samples_dir / SAMPLE_01, defer_size=1024)
    available = FRAME_BYTES_01 - drop
    assert size - ds["PixelData"].file_tell == FRAME_BYTES_01  # the pixel data is the last element
    assert reason_of(cut(samples_dir, tmp_path, SAMPLE_01, drop)) == (
        f"truncated: pixel data is {available} bytes, expected {FRAME_BYTES_01} "
        "(512x512, 1 sample(s), 16 bits, 1 frame(s))"
    )


def test_header_claiming_more_frames_than_stored_is_rejected(rewrite: Callable[..., Path]) -> None:
    path = rewrite(SAMPLE_01, lambda ds: setattr(ds, "NumberOfFrames", 3))
    assert reason_of(path).startswith(f"truncated: pixel data is {FRAME_BYTES_01} bytes, expected {3 * FRAME_BYTES_01}")


@pytest.mark.parametrize(
    ("drop", "reason"),
    [
        (4, "truncated: compressed pixel data ends after 96 fragment(s), before its sequence delimiter"),
        (8, "truncated: compressed pixel data ends after 96 fragment(s), before its sequence delimiter"),
        (100, "truncated: fragment 96 of the compressed pixel data runs past the file end"),
        (1_000_000, "truncated: fragment"),
    ],
)
def test_truncated_compressed_pixel_data_is_rejected(samples_dir: Path, tmp_path: Path, drop: int, reason: str) -> None:
    assert reason_of(cut(samples_dir, tmp_path, SAMPLE_02, drop)).startswith(reason)


def test_compressed_pixel_data_with_too_few_fragments_is_rejected(rewrite: Callable[..., Path]) -> None:
    path = rewrite(SAMPLE_02, lambda ds: setattr(ds, "NumberOfFrames", 120))
    assert reason_of(path) == "compressed pixel data has 96 fragment(s) for 120 frame(s)"


@pytest.mark.parametrize("keyword", ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_missing_uid_is_rejected(rewrite: Callable[..., Path], keyword: str) -> None:
    path = rewrite(SAMPLE_01, lambda ds: delattr(ds, keyword))
    assert reason_of(path) == f"missing {keyword}"


def test_malformed_uid_is_rejected(rewrite: Callable[..., Path]) -> None:
    def corrupt(ds: Dataset) -> None:
        with pytest.warns(UserWarning, match="Invalid value for VR UI"):
            ds.SeriesInstanceUID = "1.2.abc"

    path = rewrite(SAMPLE_01, corrupt)
    assert reason_of(path) == "SeriesInstanceUID '1.2.abc' is not a valid UID"


def test_missing_media_storage_class_is_rejected(rewrite: Callable[..., Path]) -> None:
    path = rewrite(SAMPLE_01, lambda ds: delattr(ds.file_meta, "MediaStorageSOPClassUID"))
    assert reason_of(path) == "file meta information has no MediaStorageSOPClassUID"


def test_image_without_pixel_data_is_rejected(rewrite: Callable[..., Path]) -> None:
    path = rewrite(SAMPLE_01, lambda ds: delattr(ds, "PixelData"))
    assert reason_of(path) == "image has no pixel data (7FE0,0010)"


def test_image_without_rows_is_rejected(rewrite: Callable[..., Path]) -> None:
    path = rewrite(SAMPLE_02, lambda ds: delattr(ds, "Rows"))
    assert reason_of(path) == "image is missing Rows"


def test_transfer_syntax_without_decoder_is_rejected(rewrite: Callable[..., Path]) -> None:
    path = rewrite(SAMPLE_02, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", uids.MPEG2MPML))
    assert (
        reason_of(path)
        == f"transfer syntax {uids.MPEG2MPML} (MPEG2 Main Profile / Main Level) has no decoder installed"
    )


def test_implicit_vr_copy_is_accepted(rewrite: Callable[..., Path]) -> None:
    path = rewrite(SAMPLE_01, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", uids.ImplicitVRLittleEndian))
    assert validate_file(path).transfer_syntax_uid == uids.ImplicitVRLittleEndian


def test_rle_copy_is_accepted_and_its_truncation_caught(rewrite: Callable[..., Path], tmp_path: Path) -> None:
    path = rewrite(SAMPLE_01, lambda ds: ds.compress(uids.RLELossless))
    assert validate_file(path).transfer_syntax_uid == uids.RLELossless
    data = path.read_bytes()
    short = tmp_path / "short-rle.dcm"
    short.write_bytes(data[: len(data) // 2])
    assert reason_of(short).startswith("truncated: fragment 1 of the compressed pixel data")


def test_non_image_object_is_accepted_without_pixel_data(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID = uids.BasicTextSRStorage
    ds.SOPInstanceUID = uids.generate_uid()
    ds.StudyInstanceUID = uids.generate_uid()
    ds.SeriesInstanceUID = uids.generate_uid()
    ds.Modality = "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    meta = validate_file(path)
    assert (meta.modality, meta.rows, meta.number_of_frames) == ("SR", None, None)
    assert meta.sop_instance_uid == ds.SOPInstanceUID


def test_deflated_copy_is_accepted(rewrite: Callable[..., Path]) -> None:
    path = rewrite(
        SAMPLE_01, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", uids.DeflatedExplicitVRLittleEndian)
    )
    assert validate_file(path).transfer_syntax_uid == uids.DeflatedExplicitVRLittleEndian


def test_dicomdir_is_rejected(rewrite: Callable[..., Path]) -> None:
    path = rewrite(
        SAMPLE_01, lambda ds: setattr(ds.file_meta, "MediaStorageSOPClassUID", uids.MediaStorageDirectoryStorage)
    )
    assert reason_of(path) == "DICOMDIR is a media index, not an instance; upload the files it lists"
