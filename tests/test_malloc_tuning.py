"""common.malloc.tune_malloc: MB-sized buffers come from the heap (reused) instead of a fresh mmap each time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT

# Prints how many bytes glibc holds in mmapped blocks while one 0.9 MB buffer is alive (mallinfo2's hblkhd).
PROBE = """
import ctypes, json, os, sys
from common.malloc import tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
applied = tune_malloc() if sys.argv[1] == "tuned" else False
base = libc.mallinfo2().hblkhd
buffer = b"h" + os.urandom(900_000)
print(json.dumps({"applied": applied, "mmapped": libc.mallinfo2().hblkhd - base}))
"""


def probe(mode: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, int] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")
def test_a_megabyte_buffer_comes_from_the_heap_once_malloc_is_tuned() -> None:
    untuned, tuned = probe("default"), probe("tuned")
    assert not untuned["applied"] and untuned["mmapped"] >= 900_000  # its own mmap, unmapped again on free
    assert tuned["applied"] and tuned["mmapped"] == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
async def test_processor_workers_are_tuned_too() -> None:
    """Spawned workers do not inherit the service's setting; the pool applies it as each one starts."""
    from common.malloc import is_tuned
    from processor_service.pool import WorkerPool

    pool = WorkerPool(1)
    await pool.start()
    try:
        assert await pool.run(is_tuned, timeout=30) is True
    finally:
        await pool.close()
