"""A multi-frame copy of sample-01 of any size, streamed without ever being held whole (large-upload tests, bench).

`big_instance_parts(frames)` returns the Part 10 header up to and including the pixel data
element's header, and one frame; `stream_instance` yields them as an HTTP body of
`len(header) + frames * len(frame)` bytes, hashing what it yields.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import AsyncIterator

import pydicom

from samples.make_instances import SAMPLE_01

MIB = 1024 * 1024
CHUNK = 256 * 1024


def big_instance_parts(frames: int) -> tuple[bytes, bytes]:
    """(header up to and including the pixel data element's header, one frame) of a `frames`-frame copy of sample-01."""
    ds = pydicom.dcmread(SAMPLE_01)
    frame = ds.PixelData
    del ds.PixelData
    ds.NumberOfFrames = frames
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frames * len(frame))
    return buffer.getvalue() + element, frame


async def stream_instance(header: bytes, frame: bytes, frames: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """The instance in CHUNK-sized pieces, each added to `digest` as it is yielded."""
    digest.update(header)
    yield header
    for _ in range(frames):
        for start in range(0, len(frame), CHUNK):
            chunk = frame[start : start + CHUNK]
            digest.update(chunk)
            yield chunk
