"""processor_service.imaging: decoding every supported transfer syntax and figures equal to numpy on the whole array."""

from __future__ import annotations

import io
import math
from decimal import Context, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from common.messaging.messages import ImageResult, Statistics
from processor_service.imaging import (
    HISTOGRAM_BINS,
    NO_PIXEL_DATA,
    ImagingError,
    analyse,
    normalize,
    preferred_plugin,
)


def _bundled(name: str) -> Path:
    """A test file that ships inside the pydicom wheel (no download)."""
    path = get_testdata_file(name)
    assert path is not None and Path(path).is_file(), name
    return Path(path)


def _exact(values: np.ndarray) -> tuple[Statistics, Statistics]:
    """Correctly rounded original and normalised figures of integer data, from exact integer sums."""
    v = values.astype(np.int64).ravel()
    n, s, q = v.size, int(v.sum()), int(np.dot(v, v))
    low, high = int(v.min()), int(v.max())
    with localcontext(Context(prec=80)):
        root = Decimal(n * q - s * s).sqrt()
        original = Statistics(min=low, max=high, mean=float(Fraction(s, n)), std=float(root / n))
        span = high - low
        normalized = Statistics(
            min=0.0, max=1.0, mean=float(Fraction(s - n * low, n * span)), std=float(root / (n * span))
        )
    return original, normalized


def _assert_like_numpy(result: ImageResult, array: np.ndarray, *, frames: int, rel: float = 1e-13) -> None:
    """Shape, histogram and figures equal numpy's on the whole array (to float64 rounding)."""
    x = array.astype(np.float64)
    low, high = x.min(), x.max()
    assert result.has_pixel_data
    assert result.frames == frames
    assert result.dtype == str(array.dtype)
    samples = result.samples_per_pixel or 1
    assert result.rows * result.columns * frames * samples == array.size
    assert result.pixel_count == array.size // samples
    assert result.original is not None and result.normalized is not None and result.histogram is not None
    assert (result.original.min, result.original.max) == (low, high)
    assert math.isclose(result.original.mean, x.mean(), rel_tol=rel)
    assert math.isclose(result.original.std, x.std(), rel_tol=rel)
    norm = (x - low) / (high - low)
    assert (result.normalized.min, result.normalized.max) == (0.0, 1.0)
    assert math.isclose(result.normalized.mean, norm.mean(), rel_tol=rel)
    assert math.isclose(result.normalized.std, norm.std(), rel_tol=rel)
    counts, edges = np.histogram(array, bins=HISTOGRAM_BINS, range=(float(low), float(high)))
    assert result.histogram.counts == counts.tolist()
    assert (result.histogram.low, result.histogram.high) == (edges[0], edges[-1])
    assert sum(result.histogram.counts) == array.size


def _assert_preview(png: bytes | None, *, mode: str = "L") -> Image.Image:
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG" and image.mode == mode
    assert max(image.size) <= 256
    return image


def test_sample_01_figures_equal_numpy_exactly(samples_dir: Path) -> None:
    path = samples_dir / "sample-01-dicom.dcm"
    array = pydicom.dcmread(path).pixel_array
    analysis = analyse(path.read_bytes(), worker="test:1")
    result = analysis.result
    x = array.astype(np.float64)
    assert (result.rows, result.columns, result.frames, result.samples_per_pixel) == (512, 512, 1, 1)
    assert result.dtype == "uint16" and result.pixel_count == 512 * 512
    assert result.original == Statistics(min=x.min(), max=x.max(), mean=x.mean(), std=x.std())
    original, normalized = _exact(array)
    assert result.original == original
    assert result.normalized == normalized
    _assert_like_numpy(result, array, frames=1, rel=1e-15)
    assert result.worker == "test:1" and result.processing_ms > 0
    image = _assert_preview(analysis.preview_png)
    assert image.size == (256, 256)


def test_sample_02_jpeg_figures_equal_numpy_with_the_same_decoder(samples_dir: Path) -> None:
    path = samples_dir / "sample-02-dicom.dcm"
    ds = pydicom.dcmread(path)
    assert preferred_plugin(ds) == "pillow"
    analysis = analyse(path.read_bytes(), worker="test:1")
    array = pixel_array(path, decoding_plugin="pillow")
    assert array.shape == (96, 512, 512)
    _assert_like_numpy(analysis.result, array, frames=96)
    original, normalized = _exact(array)
    assert analysis.result.original == original and analysis.result.normalized == normalized
    _assert_preview(analysis.preview_png)


def test_sample_02_jpeg_figures_within_a_grey_level_of_pydicoms_default_decoder(samples_dir: Path) -> None:
    path = samples_dir / "sample-02-dicom.dcm"
    result = analyse(path.read_bytes(), worker="w").result
    x = pydicom.dcmread(path).pixel_array.astype(np.float64)  # pylibjpeg: IDCTs differ by at most one level
    assert result.original is not None and result.histogram is not None
    assert (result.original.min, result.original.max) == (x.min(), x.max())
    assert abs(result.original.mean - x.mean()) < 0.1
    assert abs(result.original.std - x.std()) < 0.1
    reference = np.histogram(x, bins=HISTOGRAM_BINS, range=(x.min(), x.max()))[0]
    assert np.abs(np.array(result.histogram.counts) - reference).sum() < 0.05 * x.size


ENCODINGS = [
    ("MR_small_RLE.dcm", "RLE Lossless"),
    ("image_dfl.dcm", "Deflated Explicit VR Little Endian"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless Image Compression"),
    ("JPEGLSNearLossless_16.dcm", "JPEG-LS Lossy (Near-Lossless) Image Compression"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
    ("JPEG2000.dcm", "JPEG 2000 Image Compression"),
    ("JPGExtended.dcm", "JPEG Extended (Process 2 and 4)"),
    ("SC_rgb_rle_16bit_2frame.dcm", "RLE Lossless"),
    ("SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline (Process 1)"),
    ("rtdose_rle.dcm", "RLE Lossless"),
    ("CT_small.dcm", "Explicit VR Little Endian"),
]
NO_PIXELS = ["rtplan.dcm", "test-SR.dcm", "waveform_ecg.dcm"]


@pytest.mark.parametrize(("name", "syntax"), ENCODINGS)
def test_every_encoding_decodes_to_numpys_figures(name: str, syntax: str) -> None:
    path = _bundled(name)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID.name == syntax
    ds.pixel_array_options(decoding_plugin=preferred_plugin(ds))
    array = ds.pixel_array
    frames = int(ds.get("NumberOfFrames") or 1)
    analysis = analyse(path.read_bytes(), worker="w")
    _assert_like_numpy(analysis.result, array, frames=frames, rel=1e-12)
    _assert_preview(analysis.preview_png, mode="RGB" if ds.SamplesPerPixel == 3 else "L")


@pytest.mark.parametrize("name", [name for name, _ in ENCODINGS] + NO_PIXELS + ["sample-01", "sample-02"])
def test_a_file_object_read_frame_by_frame_gives_the_figures_of_the_whole_file(name: str, samples_dir: Path) -> None:
    path = samples_dir / f"{name}-dicom.dcm" if name.startswith("sample-") else _bundled(name)
    whole = analyse(path.read_bytes(), worker="w")
    with path.open("rb") as handle:
        streamed = analyse(handle, worker="w")
    assert streamed.result.model_dump(exclude={"processing_ms"}) == whole.result.model_dump(exclude={"processing_ms"})
    assert streamed.preview_png == whole.preview_png


def test_jpeg_2000_signed_data_keeps_its_negative_values() -> None:
    result = analyse(_bundled("JPEG2000.dcm").read_bytes(), worker="w").result
    assert result.dtype == "int16" and result.original is not None and result.original.min == -30.0


def _dataset(array: np.ndarray, *, photometric: str = "MONOCHROME2") -> bytes:
    """An uncompressed Secondary Capture file holding `array` (frames, rows, columns)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    bits = array.dtype.itemsize * 8
    ds.set_pixel_data(array, photometric, bits)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_uncompressed_signed_16_bit_multi_frame_is_exact() -> None:
    rng = np.random.default_rng(7)
    array = rng.integers(-32768, 32767, size=(3, 40, 30), dtype=np.int16, endpoint=True)
    array[1, 0, 0], array[2, 0, 0] = -32768, 32767
    result = analyse(_dataset(array), worker="w").result
    _assert_like_numpy(result, array, frames=3)
    assert (result.rows, result.columns, result.dtype) == (40, 30, "int16")
    original, normalized = _exact(array)
    assert result.original == original and result.normalized == normalized


def test_flat_image_normalises_to_zeros() -> None:
    array = np.full((1, 8, 8), 500, dtype=np.uint16)
    analysis = analyse(_dataset(array), worker="w")
    result = analysis.result
    assert result.original == Statistics(min=500, max=500, mean=500, std=0)
    assert result.normalized == Statistics(min=0, max=0, mean=0, std=0)
    assert result.histogram is not None and sum(result.histogram.counts) == 64
    assert result.histogram.counts == np.histogram(array, bins=HISTOGRAM_BINS, range=(500.0, 500.0))[0].tolist()
    _assert_preview(analysis.preview_png)


def test_normalize_derives_figures_from_the_originals() -> None:
    assert normalize(Statistics(min=10, max=20, mean=15, std=2)) == Statistics(min=0, max=1, mean=0.5, std=0.2)
    assert normalize(Statistics(min=3, max=3, mean=3, std=0)) == Statistics(min=0, max=0, mean=0, std=0)


def test_preview_is_the_middle_frame_windowed_to_min_max() -> None:
    array = np.zeros((3, 4, 6), dtype=np.uint8)
    array[0], array[1], array[2] = 10, 70, 110
    array[1, 0, 0] = 10
    image = _assert_preview(analyse(_dataset(array), worker="w").preview_png)
    assert image.size == (6, 4)
    pixels = np.asarray(image)
    assert pixels[0, 0] == 0 and pixels[3, 5] == 153


def test_monochrome1_preview_is_inverted() -> None:
    array = np.array([[[0, 100]]], dtype=np.uint8)
    pixels = np.asarray(_assert_preview(analyse(_dataset(array, photometric="MONOCHROME1"), worker="w").preview_png))
    assert pixels.tolist() == [[255, 0]]


def test_large_frames_get_a_preview_at_most_256_px_keeping_the_aspect() -> None:
    array = np.arange(600 * 300, dtype=np.uint16).reshape(1, 300, 600)
    image = _assert_preview(analyse(_dataset(array), worker="w").preview_png)
    assert image.size == (256, 128)


@pytest.mark.parametrize("name", NO_PIXELS)
def test_objects_without_pixel_data_say_so(name: str) -> None:
    analysis = analyse(_bundled(name).read_bytes(), worker="w")
    assert analysis.result.has_pixel_data is False
    assert analysis.result.note == NO_PIXEL_DATA
    assert analysis.result.original is None and analysis.preview_png is None


def test_not_dicom_is_an_imaging_error() -> None:
    with pytest.raises(ImagingError, match="not a readable DICOM file"):
        analyse(b"hello, this is text", worker="w")


def test_corrupt_jpeg_frames_are_an_imaging_error(samples_dir: Path) -> None:
    ds = pydicom.dcmread(samples_dir / "sample-02-dicom.dcm")
    data = bytearray(ds.PixelData)
    start = len(data) // 2
    data[start : start + 4000] = b"\x00" * 4000
    data[24:2024] = b"\xff\xd9" * 1000  # end-of-image markers right inside the first frame
    ds.PixelData = bytes(data)
    out = io.BytesIO()
    ds.save_as(out)
    with pytest.raises(ImagingError, match="pixel data could not be decoded"):
        analyse(out.getvalue(), worker="w")


def test_truncated_pixel_data_is_an_imaging_error(samples_dir: Path) -> None:
    data = (samples_dir / "sample-01-dicom.dcm").read_bytes()
    with pytest.raises(ImagingError):
        analyse(data[: len(data) // 2], worker="w")
