"""Random-access reading of an encrypted blob, one chunk in memory at a time.

Readers that seek (pydicom reading a header, zipfile reading its central directory, a download
that streams) get a normal binary file object. Every chunk has the same sealed size except the
last, so the chunk holding any plaintext offset is found by arithmetic; the last chunk is the one
that must carry the final flag, so a blob cut at a chunk boundary still fails authentication.
"""

from __future__ import annotations

import errno
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, BinaryIO, cast

from common.crypto import TAG_BYTES, BlobHeader, DecryptionError, open_chunk, parse_header

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# Enough for the largest header: fixed part, a 255-byte key id, salt, nonce prefix, chunk size.
_MAX_HEADER = 6 + 255 + 16 + 7 + 4


class DecryptingReader(io.RawIOBase):
    """A read-only, seekable view of the plaintext of the encrypted blob in `raw` (which it owns)."""

    def __init__(self, raw: BinaryIO, keys: Mapping[str, bytes]) -> None:
        super().__init__()
        self._raw = raw
        try:
            parsed = parse_header(raw.read(_MAX_HEADER), keys)
            if parsed is None:
                raise DecryptionError("encrypted blob is truncated (incomplete header)")
            self._parsed: BlobHeader = parsed
            self._start = len(parsed.header)
            self._sealed = parsed.chunk_size + TAG_BYTES
            body = raw.seek(0, io.SEEK_END) - self._start
            self._chunks = max(1, -(-body // self._sealed))
            last = body - (self._chunks - 1) * self._sealed
            if last < TAG_BYTES:
                raise DecryptionError("encrypted blob is truncated (final chunk missing)")
        except BaseException:
            raw.close()
            raise
        self.size = body - self._chunks * TAG_BYTES
        self._last_sealed = last
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")  # as a file on disk answers (zipfile relies on it)
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Copy plaintext from the current position, at most up to the end of its chunk."""
        if self._pos >= self.size:
            return 0
        index, offset = divmod(self._pos, self._parsed.chunk_size)
        plaintext = self._chunk(index)
        view = memoryview(buffer).cast("B")
        count = min(len(view), len(plaintext) - offset)
        view[:count] = plaintext[offset : offset + count]
        self._pos += count
        return count

    def read(self, size: int | None = -1) -> bytes:
        """Exactly `size` bytes unless the end comes first (callers such as pydicom expect no short reads)."""
        remaining = self.size - self._pos if size is None or size < 0 else min(size, self.size - self._pos)
        out = bytearray(max(remaining, 0))
        view = memoryview(out)
        filled = 0
        while filled < len(out):
            filled += self.readinto(view[filled:])
        return bytes(out)

    def readall(self) -> bytes:
        return self.read()

    def _chunk(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        final = index == self._chunks - 1
        self._raw.seek(self._start + index * self._sealed)
        sealed = self._raw.read(self._last_sealed if final else self._sealed)
        plaintext = open_chunk(self._parsed, index, sealed, final=final)
        self._cached = (index, plaintext)
        return plaintext

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_decrypting(raw: BinaryIO, keys: Mapping[str, bytes]) -> BinaryIO:
    """A seekable plaintext file object over the encrypted blob in `raw` (closing it closes `raw`).

    Deliberately not an `io.BufferedReader` (the reader caches its current chunk itself): pydicom takes
    a BufferedReader for a file on disk and re-opens it by name for deferred values, which would read
    ciphertext; any other file object it reads through, as it is.
    """
    return cast(BinaryIO, DecryptingReader(raw, keys))
