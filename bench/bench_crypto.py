"""Cost of encrypting blobs at rest, against the sha256 pass every stored blob already pays.

Streams 64 MiB of random bytes in 64 KiB pieces (the blob store's write path) through
AES-256-GCM encryption and decryption, and through sha256 as the baseline, in the same run.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable

from common.crypto import Keyring, generate_key_spec

SIZE = 64 * 1024 * 1024
PIECE = 64 * 1024


def _best(run: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    data = os.urandom(SIZE)
    pieces = [data[i : i + PIECE] for i in range(0, SIZE, PIECE)]
    ring = Keyring.from_spec(generate_key_spec("bench"))
    encrypted = b"".join(ring.encrypt_iter(pieces))
    encrypted_pieces = [encrypted[i : i + PIECE] for i in range(0, len(encrypted), PIECE)]

    def sha() -> None:
        digest = hashlib.sha256()
        for piece in pieces:
            digest.update(piece)

    def encrypt() -> None:
        for _ in ring.encrypt_iter(pieces):
            pass

    def decrypt() -> None:
        for _ in ring.decrypt_iter(encrypted_pieces):
            pass

    baseline = _best(sha)
    mib = SIZE / 1024 / 1024
    print(f"crypto: {mib:.0f} MiB in {PIECE // 1024} KiB pieces, best of 3")
    print(f"  sha256 (baseline)   {mib / baseline:8.0f} MiB/s  1.00x")
    for name, run in (("AES-256-GCM encrypt", encrypt), ("AES-256-GCM decrypt", decrypt)):
        seconds = _best(run)
        print(f"  {name}  {mib / seconds:8.0f} MiB/s  {seconds / baseline:.2f}x the sha256 time")
    overhead = (len(encrypted) - SIZE) / SIZE * 100
    print(f"  size overhead {len(encrypted) - SIZE} bytes ({overhead:.3f} %)")


if __name__ == "__main__":
    main()
