"""glibc malloc tuning shared by the services and the processor's worker processes.

glibc hands every allocation over 128 KiB a fresh mmap and unmaps it on free, so each large buffer
(an uploaded file held whole, its ciphertext, a decoded frame) is mapped and zeroed again by the
kernel: about 0.6 ms of CPU per new uploaded file in ingest, and about 3 ms of system time per
sample-01 file in a processor worker, measured. Blocks up to 4 MiB are served from the heap, and up
to 32 MiB of freed heap is kept before trimming. A module of its own (ctypes only), so that a
spawned worker can apply it without importing the web stack.
"""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024


_tuned = False


def tune_malloc() -> bool:
    """Keep large buffers on the heap (glibc only; elsewhere nothing changes). True when applied."""
    global _tuned
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    _tuned = bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    )
    return _tuned


def is_tuned() -> bool:
    """Whether this process applied the tuning (glibc has no call that reads the settings back)."""
    return _tuned
