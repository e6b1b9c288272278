"""Write a new file with `O_DIRECT`: from a reused, aligned buffer of ours straight to the device.

A buffered write copies every byte into freshly allocated page-cache pages, which the kernel then
writes back on its own threads; on the VMs we run on (Firecracker, free-page reporting) a fresh page
costs a fault in the host as well. In ingest that copy was the largest single cost of storing a new
file (`bench/README.md`, "Accept path, third round"). With `O_DIRECT` the device reads the bytes from
our buffer, which is page-aligned (an anonymous mmap), allocated once per thread and reused, so the
only page-cache work left is the file's metadata. `fdatasync` still makes the file durable (its size
and extents, and the device's write cache).

`O_DIRECT` wants the buffer address, the file offset and the length aligned to the device's logical
block; 4096 covers 512-byte and 4 KiB devices. The file is written padded to that and truncated
to its true size before the sync. A filesystem that refuses `O_DIRECT` gets `None` from
`open_direct` (EINVAL at open), or an EINVAL OSError from `write_direct`; the caller then writes the
usual way.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from pathlib import Path

ALIGNMENT = 4096
MAX_DIRECT_BYTES = 16 * 1024 * 1024  # larger files are streamed, never held whole; no buffer that large is kept

_local = threading.local()


def padded_size(size: int) -> int:
    """`size` rounded up to the alignment."""
    return -(-size // ALIGNMENT) * ALIGNMENT


def aligned_buffer(size: int) -> memoryview:
    """A page-aligned buffer of at least `padded_size(size)` bytes, this thread's own and reused by its next call."""
    need = padded_size(max(size, 1))
    buffer: mmap.mmap | None = getattr(_local, "buffer", None)
    if buffer is None or len(buffer) < need:
        if buffer is not None:
            buffer.close()
        buffer = mmap.mmap(-1, need)
        _local.buffer = buffer
    return memoryview(buffer)[:need]


def open_direct(path: Path) -> int | None:
    """Create `path` (it must not exist) for writing with O_DIRECT; None when the filesystem refuses O_DIRECT."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return None
        raise


def write_direct(fd: int, buffer: memoryview, size: int) -> None:
    """Write the first `size` bytes of `buffer` (from `aligned_buffer`) to `fd`, truncate the padding, fdatasync.

    The padding after `size` is zeroed first, so no bytes of an earlier file reach the disk even briefly.
    Does not close `fd`.
    """
    padded = padded_size(size)
    buffer[size:padded] = bytes(padded - size)
    written = 0
    while written < padded:
        count = os.write(fd, buffer[written:padded])
        if count <= 0 or count % ALIGNMENT:
            raise OSError(errno.EIO, f"short direct write: {count} bytes at offset {written}")
        written += count
    if padded != size:
        os.ftruncate(fd, size)
    os.fdatasync(fd)
