"""Random-access reading of an encrypted blob: a chunk in memory at a time, or what one read asks for.

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

from common.storage.crypto import MAX_HEADER_BYTES, TAG_BYTES, BlobHeader, body_layout, parse_header
from common.storage.crypto_keys import DecryptionError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_SPILL_LIMIT = 16 * 1024 * 1024  # a read larger than this (a whole deflated file, say) gets a buffer of its own


class DecryptingReader(io.RawIOBase):
    """A read-only, seekable view of the plaintext of the encrypted blob in `raw` (which it owns).

    Whole chunks are decrypted straight into the caller's buffer (`readinto`) or into one buffer reused
    by every `read` that spans chunks (a frame), so reading a frame allocates only the bytes returned.
    A chunk read in part is decrypted once and kept as bytes: the many small reads of a parser
    (pydicom reads tags 4 and 8 bytes at a time) are one slice each.
    """

    def __init__(self, raw: io.BufferedIOBase, keys: Mapping[str, bytes]) -> None:
        super().__init__()
        self._raw = raw
        try:
            parsed = parse_header(raw.read(MAX_HEADER_BYTES), keys)
            if parsed is None:
                raise DecryptionError("encrypted blob is truncated (incomplete header)")
            self._parsed: BlobHeader = parsed
            self._start = len(parsed.header)
            self._sealed = parsed.chunk_size + TAG_BYTES
            body = raw.seek(0, io.SEEK_END) - self._start
            self._chunks, self._last_sealed = body_layout(body, parsed.chunk_size)
        except BaseException:
            raw.close()
            raise
        self.size = body - self._chunks * TAG_BYTES
        self._pos = 0
        self._scratch = memoryview(bytearray(self._sealed))  # one sealed chunk as read from `raw`
        self._opened = memoryview(bytearray(parsed.chunk_size))  # one chunk decrypted, before it is cached
        self._cached_at = -1  # plaintext offset of the cached chunk
        self._cached = b""
        self._spill = memoryview(bytearray())  # reused by reads across chunks (a frame), up to _SPILL_LIMIT

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self.size
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence ({whence})")
        if offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")  # as a file on disk answers (zipfile relies on it)
        self._pos = offset
        return offset

    def read(self, size: int | None = -1) -> bytes:
        """Exactly `size` bytes unless the end comes first (callers such as pydicom expect no short reads)."""
        pos, at = self._pos, self._cached_at
        if size is not None and size >= 0 and at <= pos and pos + size <= at + len(self._cached):
            self._pos = pos + size
            return self._cached[pos - at : pos - at + size]
        remaining = self.size - pos if size is None or size < 0 else min(size, self.size - pos)
        if remaining <= 0:
            return b""
        index, offset = divmod(pos, self._parsed.chunk_size)
        if offset + remaining <= self._plain_size(index):
            self._pos = pos + remaining
            return self._chunk(index)[offset : offset + remaining]
        if len(self._spill) < remaining <= _SPILL_LIMIT:
            self._spill = memoryview(bytearray(remaining))
        view = self._spill[:remaining] if remaining <= _SPILL_LIMIT else memoryview(bytearray(remaining))
        filled = 0
        while filled < remaining:
            filled += self.readinto(view[filled:])
        return view.tobytes()

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Plaintext from the current position into `buffer`, at most up to the end of its chunk."""
        if self._pos >= self.size:
            return 0
        index, offset = divmod(self._pos, self._parsed.chunk_size)
        view = memoryview(buffer).cast("B")
        whole = self._plain_size(index)
        if offset == 0 and len(view) >= whole and self._pos != self._cached_at:
            self._open(index, view[:whole])
            count = whole
        else:
            plaintext = self._chunk(index)
            count = min(len(view), len(plaintext) - offset)
            view[:count] = plaintext[offset : offset + count]
        self._pos += count
        return count

    def readall(self) -> bytes:
        return self.read()

    def _plain_size(self, index: int) -> int:
        return (self._last_sealed if index == self._chunks - 1 else self._sealed) - TAG_BYTES

    def _chunk(self, index: int) -> bytes:
        at = index * self._parsed.chunk_size
        if at != self._cached_at:
            self._cached_at, self._cached = -1, b""  # a chunk that fails authentication is not kept
            opened = self._opened[: self._plain_size(index)]
            self._open(index, opened)
            self._cached_at, self._cached = at, opened.tobytes()
        return self._cached

    def _open(self, index: int, out: memoryview) -> None:
        """Read chunk `index` from `raw` and decrypt it into `out` (exactly its plaintext size)."""
        sealed = self._scratch[: len(out) + TAG_BYTES]
        self._raw.seek(self._start + index * self._sealed)
        got = 0
        while got < len(sealed):
            read = self._raw.readinto(sealed[got:])
            if not read:
                raise DecryptionError("encrypted blob is truncated (it shrank while being read)")
            got += read
        self._parsed.open_run(index, sealed, out, final=index == self._chunks - 1)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_decrypting(raw: io.BufferedIOBase, keys: Mapping[str, bytes]) -> BinaryIO:
    """A seekable plaintext file object over the encrypted blob in `raw` (closing it closes `raw`).

    Deliberately not an `io.BufferedReader` (the reader caches its current chunk itself): pydicom takes
    a BufferedReader for a file on disk and re-opens it by name for deferred values, which would read
    ciphertext; any other file object it reads through, as it is.
    """
    return cast(BinaryIO, DecryptingReader(raw, keys))
