"""Decode a DICOM instance's pixel data and measure it: shape, statistics, histogram, PNG preview.

Pixel data is decoded one frame at a time (`pydicom.pixels.iter_pixels`) and, given a file object,
read from it one frame at a time: a large multi-frame file is never held whole, nor one float64 copy
of all its frames. Figures are of the stored values as decoded by pydicom (no modality LUT, no
rescale), over every sample of every pixel:

* integer data of 8 or 16 bits: a table of how often each value occurs is accumulated frame by
  frame; min, max, count and the sum come out of it exactly, mean = sum / count with one rounding,
  and the variance is summed over the distinct values in float64 (two-pass, around the exact mean);
* anything else (32-bit integers, float pixel data): per-frame float64 moments combined with
  Chan's parallel formula, and a second decoding pass for the histogram.

The normalised figures are derived from the originals exactly: for x' = (x - min) / (max - min),
min' = 0, max' = 1, mean' = (mean - min) / (max - min), std' = std / (max - min). A flat image
(max == min) normalises to all zeros, so its four normalised figures are 0.
"""

from __future__ import annotations

import decimal
import io
import math
import operator
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import iter_pixels
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit

from common.messaging.messages import Histogram, ImageResult, Statistics
from common.storage.crypto_keys import CryptoError

HISTOGRAM_BINS = 64
PREVIEW_MAX_SIDE = 256
NO_PIXEL_DATA = "no pixel data"
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAG_NUMBERS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

# Measured on sample-02 (96 JPEG Baseline frames, see bench/README.md): Pillow (libjpeg-turbo) decodes
# about 4.5x faster than pylibjpeg (libjpeg). For every other syntax pylibjpeg is at least as fast.
_JPEG_8BIT_PREFERENCE = ("pillow", "pylibjpeg")
_DEFAULT_PREFERENCE = ("pylibjpeg", "pydicom", "pillow", "gdcm")


class ImagingError(Exception):
    """The file's pixel data cannot be measured; retrying will not help. The message says why."""


@dataclass(frozen=True)
class Analysis:
    """What `analyse` found: the result (without a preview key yet) and the PNG preview bytes."""

    result: ImageResult
    preview_png: bytes | None


def preferred_plugin(ds: Dataset) -> str:
    """The fastest installed pydicom decoding plugin for this dataset ("" = pydicom's own choice)."""
    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_compressed:
        return ""
    available = get_decoder(syntax).available_plugins
    jpeg_8bit = syntax in (JPEGBaseline8Bit, JPEGExtended12Bit) and int(ds.get("BitsStored", 8)) <= 8
    preference = _JPEG_8BIT_PREFERENCE if jpeg_8bit else _DEFAULT_PREFERENCE
    return next((plugin for plugin in preference if plugin in available), "")


@dataclass(frozen=True)
class _Figures:
    original: Statistics
    normalized: Statistics
    histogram: Histogram
    values: int


class _ValueTable:
    """Exact statistics of 8/16-bit integer data from how often each value occurs."""

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.dtype = dtype
        self.unsigned = np.dtype(f"u{dtype.itemsize}")
        self.counts = np.zeros(256**dtype.itemsize, dtype=np.int64)

    def add(self, frame: NDArray[np.generic]) -> None:
        self.counts += np.bincount(frame.view(self.unsigned).ravel(), minlength=self.counts.size)

    def finish(self, frames: Callable[[], Iterator[NDArray[np.generic]]]) -> _Figures:
        present = np.flatnonzero(self.counts)
        if present.size == 0:
            raise ImagingError("pixel data holds no values")
        counts = self.counts[present]
        values = present.astype(self.unsigned).view(self.dtype)
        # Python integers: the sums are exact whatever the file size (no int64 overflow of sum(c * v * v)).
        count_list, value_list = counts.tolist(), values.tolist()
        count = sum(count_list)
        total = sum(map(operator.mul, count_list, value_list))
        squares = sum(c * v * v for c, v in zip(count_list, value_list, strict=True))
        low, high = min(value_list), max(value_list)
        original, normalized = _exact_statistics(count, total, squares, low, high)
        histogram, edges = np.histogram(
            values.astype(np.float64), bins=HISTOGRAM_BINS, range=(float(low), float(high)), weights=counts
        )
        return _Figures(original, normalized, _histogram(histogram.astype(np.int64), edges), count)


def _exact_statistics(count: int, total: int, squares: int, low: int, high: int) -> tuple[Statistics, Statistics]:
    """Correctly rounded figures of integer data from its exact count, sum and sum of squares."""
    with decimal.localcontext(decimal.Context(prec=60)):
        root = decimal.Decimal(count * squares - total * total).sqrt()  # = count * std
        std = float(root / count)
        span = high - low
        original = Statistics(min=float(low), max=float(high), mean=total / count, std=std)
        if span == 0:
            return original, Statistics(min=0.0, max=0.0, mean=0.0, std=0.0)
        normalized = Statistics(
            min=0.0, max=1.0, mean=(total - count * low) / (count * span), std=float(root / (count * span))
        )
    return original, normalized


class _Moments:
    """float64 moments combined frame by frame (Chan et al.); the histogram needs a second pass."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, frame: NDArray[np.generic]) -> None:
        values = frame.astype(np.float64)
        n = values.size
        if n == 0:
            return
        mean = float(values.mean())
        m2 = float(np.square(values - mean).sum())
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        total = self.count + n
        delta = mean - self.mean
        self.mean = mean if self.count == 0 else self.mean + delta * n / total
        self.m2 = m2 if self.count == 0 else self.m2 + m2 + delta * delta * self.count * n / total
        self.count = total

    def finish(self, frames: Callable[[], Iterator[NDArray[np.generic]]]) -> _Figures:
        if self.count == 0:
            raise ImagingError("pixel data holds no values")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ImagingError("pixel data holds NaN or infinite values")
        stats = Statistics(min=self.low, max=self.high, mean=self.mean, std=math.sqrt(self.m2 / self.count))
        counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        edges: NDArray[np.float64] = np.empty(0)
        for frame in frames():
            part, edges = np.histogram(frame, bins=HISTOGRAM_BINS, range=(self.low, self.high))
            counts += part
        return _Figures(stats, normalize(stats), _histogram(counts, edges), self.count)


def _histogram(counts: NDArray[np.int64], edges: NDArray[np.float64]) -> Histogram:
    # numpy widens a flat range (min == max) to min ± 0.5; report the edges really used.
    return Histogram(low=float(edges[0]), high=float(edges[-1]), counts=[int(c) for c in counts])


def normalize(stats: Statistics) -> Statistics:
    """The figures of (x - min) / (max - min), derived exactly from the originals (flat image → zeros)."""
    span = stats.max - stats.min
    if span == 0:
        return Statistics(min=0.0, max=0.0, mean=0.0, std=0.0)
    return Statistics(min=0.0, max=1.0, mean=(stats.mean - stats.min) / span, std=stats.std / span)


def render_preview(frame: NDArray[np.generic], low: float, high: float, *, invert: bool = False) -> bytes:
    """An 8-bit grey or RGB PNG of one frame, windowed to [low, high], at most 256 px on its long side."""
    if frame.ndim == 3 and frame.shape[2] != 3:
        frame = frame[:, :, 0]
    values = frame.astype(np.float64)
    span = high - low
    scaled = np.zeros_like(values) if span == 0 else (values - low) * (255.0 / span)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if invert:
        grey = 255 - grey
    image = Image.fromarray(grey, mode="RGB" if grey.ndim == 3 else "L")
    image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def read_dataset(source: bytes | BinaryIO) -> tuple[Dataset, Dataset | BinaryIO | None]:
    """The file's elements (up to its pixel data), and what its frames are decoded from (None: no pixel data).

    A file object is parsed up to its pixel data and its frames are read from it one at a time by
    `iter_pixels`, so a large file is never held whole. A file given whole is parsed once with its pixel
    data, which decodes faster than parsing the header again for `iter_pixels`; a deflated file is
    inflated whole by pydicom anyway, so it goes the same way. A `CryptoError` of an encrypted source
    is not the file's fault and passes through.
    """
    try:
        if isinstance(source, bytes):
            return _read_whole(io.BytesIO(source))
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            source.seek(0)
            return _read_whole(source)
        return ds, source if _at_pixel_data(source, little_endian=ds.original_encoding[1] is not False) else None
    except CryptoError:
        raise
    except Exception as exc:  # pydicom raises many types for malformed input; all mean "not readable"
        raise ImagingError(f"not a readable DICOM file: {exc}") from exc


def _read_whole(source: BinaryIO) -> tuple[Dataset, Dataset | None]:
    ds = pydicom.dcmread(source)
    return ds, ds if has_pixel_data(ds) else None


def _at_pixel_data(source: BinaryIO, *, little_endian: bool) -> bool:
    """True when the next tag is a pixel data element: pydicom stops right before one, or at the end of the file."""
    head = source.read(4)
    if len(head) < 4:
        return False
    group, element = struct.unpack("<HH" if little_endian else ">HH", head)
    return (group << 16 | element) in _PIXEL_TAG_NUMBERS


def has_pixel_data(ds: Dataset) -> bool:
    """True when the dataset carries (integer or float) pixel data."""
    return any(tag in ds for tag in _PIXEL_TAGS)


def _measure(ds: Dataset, pixels: Dataset | BinaryIO, plugin: str, worker: str, started: float) -> Analysis:
    def frames() -> Iterator[NDArray[np.generic]]:
        return iter_pixels(pixels, decoding_plugin=plugin)

    first = True
    accumulator: _ValueTable | _Moments = _Moments()
    n_frames = 0
    middle_index = int(ds.get("NumberOfFrames") or 1) // 2
    middle: NDArray[np.generic] | None = None
    shape: tuple[int, ...] = ()
    for frame in frames():
        if first:
            shape, first = frame.shape, False
            if frame.dtype.kind in "iub" and frame.dtype.itemsize <= 2:
                accumulator = _ValueTable(frame.dtype)
        accumulator.add(frame)
        if n_frames == middle_index or middle is None:
            middle = frame.copy()
        n_frames += 1
    if middle is None:
        raise ImagingError("pixel data holds no frames")
    figures = accumulator.finish(frames)
    preview = render_preview(
        middle, figures.original.min, figures.original.max, invert=ds.get("PhotometricInterpretation") == "MONOCHROME1"
    )
    samples = shape[2] if len(shape) == 3 else 1
    result = ImageResult(
        has_pixel_data=True,
        rows=shape[0],
        columns=shape[1],
        frames=n_frames,
        samples_per_pixel=samples,
        dtype=str(middle.dtype),
        pixel_count=figures.values // samples,
        original=figures.original,
        normalized=figures.normalized,
        histogram=figures.histogram,
        processing_ms=round((time.perf_counter() - started) * 1000, 3),
        worker=worker,
    )
    return Analysis(result=result, preview_png=preview)


def analyse(source: bytes | BinaryIO, *, worker: str) -> Analysis:
    """Decode and measure one DICOM file (whole, or a seekable file object read frame by frame).

    Raise ImagingError when its pixel data cannot be measured (a CryptoError of the source passes through).
    Objects without pixel data (SR, RT plan, waveform) get a result that says "no pixel data".
    """
    started = time.perf_counter()
    ds, pixels = read_dataset(source)
    if pixels is None:
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return Analysis(
            ImageResult(has_pixel_data=False, note=NO_PIXEL_DATA, processing_ms=elapsed, worker=worker), None
        )
    plugin = preferred_plugin(ds)
    try:
        return _measure(ds, pixels, plugin, worker, started)
    except (ImagingError, CryptoError):
        raise
    except Exception as first_error:  # decoder plugins raise anything from ValueError to RuntimeError
        if plugin == "":
            raise ImagingError(f"pixel data could not be decoded: {first_error}") from first_error
        try:  # the preferred plugin may refuse an unusual variant that another installed one handles
            return _measure(ds, pixels, "", worker, started)
        except (ImagingError, CryptoError):
            raise
        except Exception as exc:
            raise ImagingError(f"pixel data could not be decoded: {exc}") from exc
