"""The CPU-bound part of a job, run inside a worker process (picklable arguments and result)."""

from __future__ import annotations

from common.blobs import BlobStore
from common.imaging import Analysis, analyse


def measure_blob(store: BlobStore, sha256: str, worker: str) -> Analysis:
    """Read (decrypt in memory) one stored file and measure its pixel data.

    Raises BlobNotFound, BlobUnreadable or ImagingError.
    """
    data = store.read_bytes_sync(sha256)
    return analyse(data, worker=worker)
