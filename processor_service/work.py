"""The CPU-bound part of a job, run inside a worker process (picklable arguments and result)."""

from __future__ import annotations

from common.storage.blobs import BlobStore, BlobUnreadable
from common.storage.crypto_keys import CryptoError
from processor_service.imaging import Analysis, analyse


def measure_blob(store: BlobStore, sha256: str, worker: str) -> Analysis:
    """Measure the pixel data of one stored file, read frame by frame through its decrypting reader.

    Neither the ciphertext nor the plaintext is ever held whole: memory stays about one frame and the
    reader's window whatever the file's size, and the file is decrypted once, front to back. Raises
    BlobNotFound, BlobUnreadable (also for a segment that fails authentication mid-way) or ImagingError.
    """
    with store.open(sha256) as reader:
        try:
            return analyse(reader, worker=worker)
        except CryptoError as exc:
            raise BlobUnreadable(f"blob {sha256}: {exc}") from exc
