"""Sealed blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW): the S3 object backend.

A commit sends the sealed staged file to its final key (a multipart upload past `PART_BYTES`, a single
PUT below), conditional on the key being absent (`If-None-Match: *`) after a HEAD that skips the
upload when the blob is there already: S3 shows an object only once its upload completes, so no partial
blob is ever visible under its key, and the same bytes uploaded twice stay one object. A read is a
seekable reader over ranged GETs (`RangedReader`) holding one window of at most `RANGE_BYTES`, which
`common.storage.crypto_reader` decrypts; nothing is held whole.

The wire is a client's business (`S3Client`): obstore (`common.storage.s3_obstore`, the default) or
aiobotocore (`common.storage.s3_aiobotocore`), chosen by `BLOB_S3_CLIENT`. Both map the store's refusals
the same way: a missing key is `BlobNotFound`; a missing bucket, refused credentials or an unreachable
endpoint is `BlobStoreUnavailable` (a 503 with `Retry-After`, an outage for the consumers).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol, cast

from common.storage.blob_errors import BlobUnreadable

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

RANGE_BYTES = 1024 * 1024
"""Ciphertext bytes fetched by one ranged GET, and so held by one open reader."""
PART_BYTES = 8 * 1024 * 1024
"""Size of a multipart upload's parts; a smaller sealed file is sent in one PUT."""
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 60.0
MAX_RETRIES = 2
S3ClientName = Literal["obstore", "aiobotocore"]


@dataclass(frozen=True)
class S3Location:
    """Where the bucket is and how to sign requests to it (the secret stays out of `repr`)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)
    addressing_style: Literal["path", "virtual", "auto"] = "auto"

    def key(self, key: str) -> str:
        """The full object key of a blob key (under the prefix)."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where


class S3Client(Protocol):
    """The three requests the backend makes, with the store's refusals already mapped to blob errors."""

    def exists(self, key: str) -> bool:
        """HEAD: True when an object is under the full key `key`."""
        ...

    def put_file(self, key: str, path: Path, size: int) -> None:
        """Upload the file, only if `key` is absent (an existing object is left as it is and is not an error)."""
        ...

    def get_range(self, key: str, start: int, end: int) -> tuple[bytes, int]:
        """Bytes [start, end) of the object (fewer at its end) and the object's size."""
        ...


def make_client(name: S3ClientName, location: S3Location) -> S3Client:
    """The client named by `BLOB_S3_CLIENT` (imported here, so a local store needs neither library)."""
    if name == "aiobotocore":
        from common.storage.s3_aiobotocore import AiobotocoreClient

        return AiobotocoreClient(location)
    from common.storage.s3_obstore import ObstoreClient

    return ObstoreClient(location)


class S3Objects:
    """The S3 object backend (`common.storage.objects.ObjectBackend`). Picklable: the client is made again in
    the process that unpickles it."""

    def __init__(self, location: S3Location, client: S3ClientName = "obstore") -> None:
        self.location = location
        self.client_name: S3ClientName = client
        self._client: S3Client | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "client_name": self.client_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _client=None)

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = make_client(self.client_name, self.location)
        return self._client

    def exists(self, key: str) -> bool:
        return self.client.exists(self.location.key(key))

    def put_file(self, key: str, path: Path) -> None:
        full = self.location.key(key)
        if self.client.exists(full):  # the same plaintext is stored already: no upload
            return
        self.client.put_file(full, path, path.stat().st_size)

    def open(self, key: str) -> BinaryIO:
        full = self.location.key(key)
        return cast(BinaryIO, RangedReader(lambda start, end: self.client.get_range(full, start, end)))

    def describe(self) -> str:
        return f"{self.location.describe()} ({self.client_name})"


class RangedReader(io.RawIOBase):
    """A read-only, seekable file object over an object read by ranged GETs, holding one window of `span` bytes.

    The first GET (at open) tells the size, so a missing object fails at open; reads inside the window are
    slices; a read past it fetches the next window from there (a read longer than a window fetches just it).
    """

    def __init__(self, fetch: Callable[[int, int], tuple[bytes, int]], span: int = RANGE_BYTES) -> None:
        super().__init__()
        self._fetch = fetch
        self._span = span
        self._window, self.size = fetch(0, span)
        self._window_start = 0
        self._pos = 0
        self.requests = 1

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
            raise OSError(22, "negative seek position")
        self._pos = offset
        return offset

    def read(self, size: int | None = -1) -> bytes:
        start = self._pos
        end = self.size if size is None or size < 0 else min(start + size, self.size)
        if end <= start:
            return b""
        pieces: list[bytes] = []
        at = start
        while at < end:
            window_end = self._window_start + len(self._window)
            if not self._window_start <= at < window_end:
                self._load(at, max(end - at, self._span))
                window_end = self._window_start + len(self._window)
            take = min(window_end, end) - at
            offset = at - self._window_start
            pieces.append(self._window[offset : offset + take])
            at += take
        self._pos = end
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _load(self, start: int, length: int) -> None:
        self._window = b""  # the old window goes before the new one comes: one window held at a time
        data, self.size = self._fetch(start, min(start + length, self.size))
        if not data:
            raise BlobUnreadable(f"the object ended at {start} bytes, before its size of {self.size}")
        self._window, self._window_start = data, start
        self.requests += 1

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read()

    def close(self) -> None:
        self._window = b""
        super().close()
