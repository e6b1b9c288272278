"""The blob store's errors, shared by the store and its object backends (local directory, S3).

Two of them are outages, not the fault of the file or the request: `BlobStoreFull` (the disk is out of
space) and `BlobStoreUnavailable` (the object store refused or could not be reached). Both are 503
problems with `Retry-After`, and `common.messaging.faults.is_infrastructure_error` takes both as outages,
so consumers hold their message and retry rather than park it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from common.app.problems import ServiceUnavailable

FULL_RETRY_AFTER = 60
"""Seconds a client is asked to wait (`Retry-After`) when the blob store is out of space."""
UNAVAILABLE_RETRY_AFTER = 30
"""Seconds a client is asked to wait (`Retry-After`) when the object store is unreachable or refuses us."""
OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class BlobError(Exception):
    """Base of blob store errors."""


class BlobTooLarge(BlobError):
    """A stream went over the byte limit it was written with."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class BlobStoreFull(BlobError, ServiceUnavailable, OSError):
    """The store's filesystem is out of space (or quota): nothing was stored. 503 with `Retry-After`.

    Picklable (a worker process's preview write may raise it)."""

    def __init__(self, code: int | None = errno.ENOSPC) -> None:
        super().__init__(
            f"the file store is out of space ({os.strerror(code or errno.ENOSPC)}); retry in {FULL_RETRY_AFTER} s",
            headers={"Retry-After": str(FULL_RETRY_AFTER)},
        )
        self.errno = code

    def __reduce__(self) -> tuple[type[BlobStoreFull], tuple[int | None]]:
        return type(self), (self.errno,)


class BlobStoreUnavailable(BlobError, ServiceUnavailable):
    """The object store cannot be used now: its bucket is missing, it refused our credentials, or it cannot be
    reached. Nothing was stored. 503 with `Retry-After` and the reason (never the secret or the object's key).

    Picklable (a worker process's read or preview write may raise it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the file store is unavailable: {reason}; retry in {UNAVAILABLE_RETRY_AFTER} s",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
        )
        self.reason = reason

    def __reduce__(self) -> tuple[type[BlobStoreUnavailable], tuple[str]]:
        return type(self), (self.reason,)


class BlobNotFound(BlobError):
    """No blob is stored under this key."""


class BlobUnreadable(BlobError):
    """The blob cannot be decrypted: its key id is no longer configured, or it is corrupt or tampered with."""


@contextlib.contextmanager
def space_checked() -> Iterator[None]:
    """Turn an out-of-space OSError of the block into BlobStoreFull."""
    try:
        yield
    except BlobStoreFull:
        raise
    except OSError as exc:
        if exc.errno in OUT_OF_SPACE:
            raise BlobStoreFull(exc.errno) from exc
        raise
