"""What a processing job will cost in memory, estimated from the file's header alone: the one rule.

    decoded  = rows x columns x frames x samples per pixel x ⌈bits allocated / 8⌉
    encoded  = ⌈file size / frames⌉   for an encapsulated (compressed) transfer syntax: the encoded frame
                                       the decoder holds beside its output
             = file size               for Deflated Explicit VR Little Endian: pydicom inflates the file whole
             = 0                       for a native syntax (frames are read straight into their arrays)
    estimate = decoded + encoded

An object without pixel data (no Rows/Columns: SR, RT plan) costs 0. A header field that is missing (an
instance registered before these fields were recorded) is taken as 1 frame, 1 sample and 16 bits.

The estimate is an upper bound of what a worker holds: it decodes frame by frame
(`processor_service.imaging`), so a native multi-frame file really needs a few frames' worth, not all of
them. Admission by it is therefore safe rather than tight; the benchmark (bench/README.md) shows the gap.

Ingest computes it when it queues a job (`common.messaging.jobs.build_job`), results_service when it
registers the instance (the reconciler republishes with the stored figure), and a processor given a job
without one (a message published before the field existed) from the stored file's header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from pydicom import uid as uids

DEFAULT_BITS_ALLOCATED = 16


class PixelHeader(Protocol):
    """The header fields the estimate reads (a `DicomMetadata`, or an instance row)."""

    @property
    def rows(self) -> int | None: ...

    @property
    def columns(self) -> int | None: ...

    @property
    def number_of_frames(self) -> int | None: ...

    @property
    def samples_per_pixel(self) -> int | None: ...

    @property
    def bits_allocated(self) -> int | None: ...

    @property
    def transfer_syntax_uid(self) -> str: ...


@dataclass(frozen=True)
class JobCost:
    """A job's estimated memory: the decoded pixels and the encoded bytes held beside them."""

    decoded_bytes: int
    encoded_bytes: int

    @property
    def memory_bytes(self) -> int:
        """What admission reserves and size routing compares: decoded plus encoded bytes."""
        return self.decoded_bytes + self.encoded_bytes


def estimate_job_cost(header: PixelHeader, size: int) -> JobCost:
    """The memory estimate of processing a file of `size` bytes with this header (formula in the module doc)."""
    if not header.rows or not header.columns:
        return JobCost(decoded_bytes=0, encoded_bytes=0)
    frames = header.number_of_frames or 1
    samples = header.samples_per_pixel or 1
    bytes_per_sample = math.ceil((header.bits_allocated or DEFAULT_BITS_ALLOCATED) / 8)
    decoded = header.rows * header.columns * frames * samples * bytes_per_sample
    syntax = uids.UID(header.transfer_syntax_uid)
    if syntax == uids.DeflatedExplicitVRLittleEndian:
        encoded = size
    elif syntax.is_transfer_syntax and syntax.is_encapsulated:
        encoded = math.ceil(size / frames)
    else:
        encoded = 0
    return JobCost(decoded_bytes=decoded, encoded_bytes=encoded)
