"""The memory estimate of a job published without one (before `ProcessJob.cost_bytes` existed), from the stored
file's header; run in a worker process, like the job itself, because reading a blob may block for long."""

from __future__ import annotations

from common.dicom.cost import estimate_job_cost
from common.dicom.validation import InvalidDicom, validate_file
from common.storage.blobs import BlobNotFound, BlobStore, BlobUnreadable


def blob_cost(store: BlobStore, sha256: str, size: int) -> int:
    """The estimate of `common.dicom.cost` for the stored file; its size when its header cannot be read (the job
    then fails in its worker with the reason)."""
    try:
        return estimate_job_cost(validate_file(store.open(sha256)), size).memory_bytes
    except (InvalidDicom, BlobNotFound, BlobUnreadable, OSError):
        return size
