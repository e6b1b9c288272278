"""The CPU-bound part of a job, run inside a worker process (picklable arguments and result)."""

from __future__ import annotations

from pathlib import Path

from common.blobs import BlobStore
from common.imaging import Analysis, analyse


def measure_blob(blob_dir: str, sha256: str, worker: str) -> Analysis:
    """Read one stored file and measure its pixel data; raises BlobNotFound or ImagingError."""
    data = BlobStore(Path(blob_dir)).read_bytes_sync(sha256)
    return analyse(data, worker=worker)
