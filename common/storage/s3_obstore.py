"""The S3 backend's wire over obstore (Rust's `object_store`): blocking calls that release the GIL, used from
the store's threads and from processor worker processes alike (see `common.storage.s3_objects`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError, NotFoundError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from common.storage.blob_errors import BlobNotFound, BlobStoreUnavailable
from common.storage.s3_objects import CONNECT_TIMEOUT, MAX_RETRIES, PART_BYTES, REQUEST_TIMEOUT, S3Location

if TYPE_CHECKING:
    from obstore.store import S3Config


# obstore raises Python's own FileNotFoundError for a 404, and its NotFoundError is kept for the same
NOT_FOUND = (NotFoundError, FileNotFoundError)


def _unavailable(exc: Exception, location: S3Location) -> BlobStoreUnavailable:
    """The reason, in words, why the store cannot be used (a missing bucket is a 404 like a missing key)."""
    text = str(exc)
    if isinstance(exc, NOT_FOUND) and "NoSuchBucket" in text:
        return BlobStoreUnavailable(f"bucket {location.bucket!r} does not exist")
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
        return BlobStoreUnavailable(f"the object store refused our credentials for bucket {location.bucket!r}")
    if "error sending request" in text or "connect" in text.lower():
        return BlobStoreUnavailable(f"the object store at {location.endpoint_url or 'AWS'} cannot be reached")
    return BlobStoreUnavailable(f"the object store failed ({type(exc).__name__}: {text.splitlines()[0][:200]})")


class ObstoreClient:
    """`common.storage.s3_objects.S3Client` over one obstore `S3Store` (a pool of connections, thread-safe)."""

    def __init__(self, location: S3Location) -> None:
        self.location = location
        config: S3Config = {"region": location.region}
        if location.endpoint_url:
            config["endpoint"] = location.endpoint_url
        if location.access_key_id:
            config["access_key_id"] = location.access_key_id
            config["secret_access_key"] = location.secret_access_key
        if location.addressing_style != "auto":
            config["virtual_hosted_style_request"] = location.addressing_style == "virtual"
        self._store = S3Store(
            location.bucket,
            config=config,
            client_options={
                "allow_http": location.endpoint_url.startswith("http://"),
                "connect_timeout": timedelta(seconds=CONNECT_TIMEOUT),
                "timeout": timedelta(seconds=REQUEST_TIMEOUT),
            },
            retry_config={"max_retries": MAX_RETRIES, "retry_timeout": timedelta(seconds=REQUEST_TIMEOUT)},
        )

    def exists(self, key: str) -> bool:
        try:
            obstore.head(self._store, key)
        except NOT_FOUND:
            return False  # a HEAD has no body: a missing bucket shows up at the PUT or GET that follows
        except BaseError as exc:
            raise _unavailable(exc, self.location) from exc
        return True

    def put_file(self, key: str, path: Path, size: int) -> None:
        try:
            if size > PART_BYTES:  # obstore sends a conditional put whole, so a multipart upload is unconditional
                obstore.put(self._store, key, path, use_multipart=True, chunk_size=PART_BYTES, max_concurrency=4)
            else:
                obstore.put(self._store, key, path, mode="create", use_multipart=False)
        except obstore.exceptions.AlreadyExistsError:
            return  # another replica committed the same bytes meanwhile
        except (BaseError, *NOT_FOUND) as exc:
            raise _unavailable(exc, self.location) from exc

    def get_range(self, key: str, start: int, end: int) -> tuple[bytes, int]:
        try:
            result = obstore.get(self._store, key, options={"range": (start, end)})
            return bytes(result.bytes()), result.meta["size"]
        except NOT_FOUND as exc:
            if "NoSuchBucket" in str(exc):
                raise _unavailable(exc, self.location) from exc
            raise BlobNotFound(key.rsplit("/", 1)[-1]) from exc
        except BaseError as exc:
            raise _unavailable(exc, self.location) from exc
