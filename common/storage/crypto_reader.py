"""A seekable plaintext file object over an encrypted blob, on top of Tink's forward-only decrypting stream.

Readers that seek (pydicom reading a header, then frames; zipfile reading its central directory; a
download from an offset) get a normal binary file object. Tink decrypts forwards only, so:

* `seek` only moves the position (pydicom seeks back to the pixel data and on to the next frame between
  frames: nothing is read there); the size comes from the ciphertext's length (`plaintext_size`);
* a read at or after the stream's position decrypts forwards, keeping the last `WINDOW_BLOCKS` blocks
  of `BLOCK` plaintext bytes, so a short step back (pydicom re-reading a tag) is served from them;
* a read before the window restarts decryption from the start of the blob (`restarts` counts them):
  cheap for the header, a second pass for a file read twice.

Memory stays at the window, Tink's own segment buffers and what the caller asks for, whatever the size.
"""

from __future__ import annotations

import errno
import io
from collections import deque
from typing import TYPE_CHECKING, BinaryIO, cast

from tink import TinkError

from common.storage.crypto import Keyring, Opener, plaintext_size
from common.storage.crypto_keys import DecryptionError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

BLOCK = 64 * 1024
WINDOW_BLOCKS = 2


class _Lent(io.RawIOBase):
    """The ciphertext file lent to one Tink stream: reads pass through; closing it leaves the file open."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        view[: len(data)] = data
        return len(data)


class DecryptingReader(io.RawIOBase):
    """A read-only, seekable view of the plaintext of the encrypted blob in `raw` (which it owns and closes)."""

    def __init__(self, raw: BinaryIO, keyring: Keyring) -> None:
        super().__init__()
        try:
            self._opener: Opener = keyring.opener(raw)
            self._body_start = len(self._opener.header)
            self.size = plaintext_size(raw.seek(0, io.SEEK_END) - self._body_start)
        except BaseException:
            raw.close()
            raise
        self._raw = raw
        self._pos = 0
        self._stream: BinaryIO | None = None  # opened by the first read
        self._blocks: deque[bytes] = deque(maxlen=WINDOW_BLOCKS)  # block k holds [k * BLOCK, (k + 1) * BLOCK)
        self._window_start = 0  # plaintext offset of _blocks[0]
        self._decrypted = 0  # plaintext offset the stream has reached: the end of the window
        self.restarts = 0
        if self.size == 0:  # nothing to return, but the blob must still prove it is one (and empty)
            try:
                self._restart()
                self._read(0)
            except BaseException:
                self.close()
                raise

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
        start = self._pos
        end = self.size if size is None or size < 0 else min(start + size, self.size)
        if end <= start:
            return b""
        if start < self._window_start or self._stream is None:
            self._restart()
        while self._decrypted <= start:  # a forward seek: decrypt up to it, keeping only the window
            self._pull()
        pieces: list[memoryview] = []
        at = start
        while at < end:
            if at == self._decrypted:
                self._pull()
            block = self._blocks[at // BLOCK - self._window_start // BLOCK]
            offset = at % BLOCK
            take = min(len(block) - offset, end - at)
            if not pieces and take == end - start:
                self._pos = end
                return block[offset : offset + take]  # within one block: one slice
            pieces.append(memoryview(block)[offset : offset + take])
            at += take
        self._pos = end
        return b"".join(pieces)

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read()

    def _restart(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self.restarts += 1
        self._raw.seek(self._body_start)
        self._stream = self._opener.open(cast(BinaryIO, _Lent(self._raw)))
        self._blocks.clear()
        self._window_start = self._decrypted = 0

    def _pull(self) -> None:
        """Decrypt the next block onto the end of the window (the oldest block leaves it)."""
        want = min(BLOCK, self.size - self._decrypted)
        block = self._read(want)
        if len(self._blocks) == WINDOW_BLOCKS:
            self._window_start += BLOCK
        self._blocks.append(block)
        self._decrypted += want
        if self._decrypted == self.size:
            self._read(0)

    def _read(self, size: int) -> bytes:
        """Exactly `size` bytes from the stream; 0 asks it to prove that it ends here.

        Tink takes a full segment for a middle one until it meets the end of the ciphertext, so a blob cut
        at a segment boundary fails only once read past its last byte: the end is always read.
        """
        assert self._stream is not None
        try:
            data = self._stream.read(size or 1)
        except TinkError as exc:
            self._drop_stream()
            raise DecryptionError("encrypted blob failed authentication (tampered, truncated or wrong key)") from exc
        if len(data) != size:
            self._drop_stream()
            raise DecryptionError("encrypted blob is truncated or longer than its segments say")
        return data

    def _drop_stream(self) -> None:
        """After a failed read (what it took is lost): the next read starts over, and fails the same way."""
        assert self._stream is not None
        self._stream.close()
        self._stream = None

    def close(self) -> None:
        if not self.closed:
            if self._stream is not None:
                self._stream.close()
            self._raw.close()
        super().close()


def open_decrypting(raw: BinaryIO, keyring: Keyring) -> BinaryIO:
    """A seekable plaintext file object over the encrypted blob in `raw` (closing it closes `raw`).

    Deliberately not an `io.BufferedReader`: pydicom takes a BufferedReader for a file on disk and re-opens
    it by name for deferred values, which would read ciphertext; any other file object it reads through.
    """
    return cast(BinaryIO, DecryptingReader(raw, keyring))
