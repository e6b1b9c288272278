"""A de-identified copy of a stored DICOM file, planned from its header so the pixel data can be streamed.

Only the attributes before the pixel data are read and de-identified (PS3.15 basic profile,
`results_service.deid`); the pixel data element is then copied byte for byte from the original (the
transfer syntax is unchanged, so its encoding still fits), so a multi-GB file goes out without
ever being held in memory. Attributes after the pixel data (trailing padding, signatures) are
left out. A deflated data set cannot be cut at a byte offset and is de-identified whole.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

import pydicom
from pydicom import uid as uids

from common.dicom.validation import PIXEL_TAGS, element_end
from results_service.deid import Deidentifier


@dataclass(frozen=True, slots=True)
class DeidentifiedCopy:
    """What to send: `head` (a de-identified Part 10 file up to the pixel data), then the original's bytes
    in `pixels` = (start, end)."""

    head: bytes
    pixels: tuple[int, int]

    @property
    def size(self) -> int:
        """Length of the whole copy in bytes."""
        return len(self.head) + self.pixels[1] - self.pixels[0]


def plan_deidentified_copy(fp: BinaryIO, deidentifier: Deidentifier) -> DeidentifiedCopy:
    """Read the header of the Part 10 file in `fp` (seekable) and plan its de-identified copy (blocking)."""
    fp.seek(0)
    dataset = pydicom.dcmread(fp, stop_before_pixels=True)
    transfer_syntax = uids.UID(str(dataset.file_meta.TransferSyntaxUID))
    if transfer_syntax == uids.DeflatedExplicitVRLittleEndian:
        fp.seek(0)
        return DeidentifiedCopy(deidentifier.deidentify_bytes(fp.read()), (0, 0))
    start = fp.tell()
    end = start
    tag = fp.read(4)
    if len(tag) == 4:
        group, element = struct.unpack(("<" if transfer_syntax.is_little_endian else ">") + "HH", tag)
        if (group << 16) | element in PIXEL_TAGS:
            end = element_end(fp, start, transfer_syntax)
    dataset.buffer = None  # read whole (nothing deferred): the copy must not try to carry the open file along
    head = io.BytesIO()
    deidentifier.deidentify(dataset).save_as(head, enforce_file_format=True)
    return DeidentifiedCopy(head.getvalue(), (start, end))
