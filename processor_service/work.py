"""The CPU-bound part of a job, run inside a worker process (picklable arguments and result)."""

from __future__ import annotations

from common.storage.blobs import BlobStore, BlobUnreadable
from common.storage.crypto_keys import CryptoError
from processor_service.imaging import Analysis, analyse


def measure_blob(store: BlobStore, sha256: str, worker: str) -> Analysis:
    """Measure the pixel data of one stored file, read frame by frame through its decrypting reader.

    Neither the ciphertext nor the plaintext is ever held whole: memory stays about one frame and one
    64 KiB chunk whatever the file's size, at the CPU cost of reading it whole (bench/README.md,
    bench_crypto). Raises BlobNotFound, BlobUnreadable (also for a chunk that fails authentication
    mid-way) or ImagingError.
    """
    with store.open(sha256) as reader:
        try:
            return analyse(reader, worker=worker)
        except CryptoError as exc:
            raise BlobUnreadable(f"blob {sha256}: {exc}") from exc
