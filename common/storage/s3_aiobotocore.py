"""The S3 backend's wire over aiobotocore, for comparison with obstore (`BLOB_S3_CLIENT=aiobotocore`).

The store calls its backend from threads and from processor worker processes, which have no event loop of
theirs: each process runs one private event loop in a daemon thread, holding one aiobotocore client, and
the blocking calls submit coroutines to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from common.storage.blob_errors import BlobNotFound, BlobStoreUnavailable
from common.storage.s3_objects import CONNECT_TIMEOUT, MAX_RETRIES, PART_BYTES, REQUEST_TIMEOUT, S3Location

T = TypeVar("T")
_REFUSED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"})


def _unavailable(exc: Exception, location: S3Location) -> BlobStoreUnavailable:
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code == "NoSuchBucket":
        return BlobStoreUnavailable(f"bucket {location.bucket!r} does not exist")
    if code in _REFUSED:
        return BlobStoreUnavailable(f"the object store refused our credentials for bucket {location.bucket!r}")
    if isinstance(exc, BotoCoreError):
        return BlobStoreUnavailable(f"the object store at {location.endpoint_url or 'AWS'} cannot be reached")
    return BlobStoreUnavailable(f"the object store failed ({code or type(exc).__name__})")


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The private loop's thread: run it until `_shut` stops it, then close it."""
    try:
        loop.run_forever()
    finally:
        loop.close()


def _shut(loop: asyncio.AbstractEventLoop, client: Any) -> None:
    """Close the client (its connection pool) on its loop, then stop the loop: the client is being dropped."""
    if loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(client.__aexit__(None, None, None), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)


class AiobotocoreClient:
    """`common.storage.s3_objects.S3Client` over one aiobotocore client on this process's private loop."""

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=_serve, args=(self._loop,), name="s3-aiobotocore", daemon=True).start()
        self._client: Any = self._run(self._open())
        weakref.finalize(self, _shut, self._loop, self._client)

    async def _open(self) -> Any:
        config = AioConfig(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=REQUEST_TIMEOUT,
            retries={"max_attempts": MAX_RETRIES + 1, "mode": "standard"},
            s3={"addressing_style": self.location.addressing_style},
            max_pool_connections=32,
        )
        creator = get_session().create_client(
            "s3",
            region_name=self.location.region,
            endpoint_url=self.location.endpoint_url or None,
            aws_access_key_id=self.location.access_key_id or None,
            aws_secret_access_key=self.location.secret_access_key or None,
            config=config,
        )
        return await creator.__aenter__()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run_coroutine_threadsafe(work, self._loop).result()
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.location) from exc

    def exists(self, key: str) -> bool:
        return self._run(self._exists(key))

    async def _exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.location.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def put_file(self, key: str, path: Path, size: int) -> None:
        self._run(self._put_file(key, path, size))

    async def _put_file(self, key: str, path: Path, size: int) -> None:
        bucket = self.location.bucket
        try:
            if size <= PART_BYTES:
                await self._client.put_object(
                    Bucket=bucket, Key=key, Body=await asyncio.to_thread(path.read_bytes), IfNoneMatch="*"
                )
                return
            upload = await self._client.create_multipart_upload(Bucket=bucket, Key=key)
            try:
                parts = []
                with path.open("rb") as source:
                    for number in range(1, -(-size // PART_BYTES) + 1):
                        body = source.read(PART_BYTES)
                        sent = await self._client.upload_part(
                            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=body
                        )
                        parts.append({"ETag": sent["ETag"], "PartNumber": number})
                await self._client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload["UploadId"],
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
            except BaseException:
                await self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                raise
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                return  # another replica committed the same bytes meanwhile
            raise

    def get_range(self, key: str, start: int, end: int) -> tuple[bytes, int]:
        return self._run(self._get_range(key, start, end))

    async def _get_range(self, key: str, start: int, end: int) -> tuple[bytes, int]:
        try:
            answer = await self._client.get_object(
                Bucket=self.location.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                raise BlobNotFound(key.rsplit("/", 1)[-1]) from exc
            raise
        async with answer["Body"] as body:
            data: bytes = await body.read()
        total = int(answer["ContentRange"].rsplit("/", 1)[1])
        return data, total
