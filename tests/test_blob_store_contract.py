"""One contract for every blob store backend: the local directory and S3 (moto's server, over both clients).

Each behaviour the services rely on is asserted against each backend: content-addressed keys, idempotent
commits, nothing visible under a key before its commit, multipart uploads of large files, streamed ranged
reads, a store handed to another process, tampering detected. The S3 store's outages (a missing bucket,
refused credentials, an endpoint that is down) are `BlobStoreUnavailable`, which the consumers hold through.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from common.app.blob_settings import BlobSettings, open_blob_store
from common.messaging.faults import is_infrastructure_error
from common.storage.blobs import BlobNotFound, BlobStore, BlobStoreUnavailable, BlobUnreadable
from common.storage.crypto import Keyring
from common.storage.crypto_keys import generate_key_spec
from common.storage.objects import object_key
from common.storage.s3_objects import PART_BYTES, RANGE_BYTES, S3Objects
from single_host.processes import free_port
from tests.s3_server import MotoServer, moto_server

__all__ = ["moto_server"]
BACKENDS = ["file", "s3-obstore", "s3-aiobotocore"]


async def _chunks(data: bytes, piece: int = 256 * 1024) -> AsyncIterator[bytes]:
    for at in range(0, len(data), piece):
        yield data[at : at + piece]


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_spec(generate_key_spec("k1"))


def s3_store(server: MotoServer, bucket: str, staging: Path, keyring: Keyring, client: str) -> BlobStore:
    """A store built the way the services build it: from the settings' environment names."""
    env = {k.lower(): v for k, v in server.blob_env(bucket, client=client).items()}
    return open_blob_store(BlobSettings(**env, blob_staging_dir=str(staging)), keyring)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path, keyring: Keyring, request: pytest.FixtureRequest) -> Iterator[BlobStore]:
    if backend == "file":
        yield open_blob_store(BlobSettings(blob_url=f"file://{tmp_path / 'blobs'}"), keyring)
        return
    server: MotoServer = request.getfixturevalue("moto_server")
    yield s3_store(server, server.make_bucket(), tmp_path / "staging", keyring, backend.removeprefix("s3-"))


def committed_keys(store: BlobStore, server: MotoServer | None) -> list[str]:
    """What the backend holds under final keys (files outside the staging folder, or the bucket's objects)."""
    if isinstance(store.objects, S3Objects):
        assert server is not None
        location = store.objects.location
        return [key.rsplit("/", 1)[-1] for key in server.keys(location.bucket, location.prefix)]
    return sorted(p.name for p in store.root.rglob("*") if p.is_file() and p.parent != store.tmp)


@pytest.fixture
def server(backend: str, request: pytest.FixtureRequest) -> MotoServer | None:
    return None if backend == "file" else request.getfixturevalue("moto_server")  # type: ignore[no-any-return]


async def test_a_streamed_blob_is_committed_under_its_sha256_and_read_back(
    store: BlobStore, server: MotoServer | None
) -> None:
    data = os.urandom(200_000)
    staged = await store.write_stream(_chunks(data))
    assert staged.sha256 == hashlib.sha256(data).hexdigest() and staged.size == len(data)
    assert staged.path.parent == store.tmp
    assert not store.exists(staged.sha256)
    assert committed_keys(store, server) == []  # sealed and staged, not visible under its key
    assert await store.commit(staged) == staged.sha256
    assert store.exists(staged.sha256)
    assert committed_keys(store, server) == [staged.sha256]
    assert await store.read_bytes(staged.sha256) == data
    assert list(store.tmp.iterdir()) == []


async def test_the_same_bytes_committed_twice_stay_one_blob(store: BlobStore, server: MotoServer | None) -> None:
    data = os.urandom(50_000)
    first = await store.write_stream(_chunks(data))
    second = await store.write_stream(_chunks(data, 1000))
    assert await store.commit(first) == await store.commit(second)
    assert await store.put_bytes(data) == first.sha256
    assert store.put_bytes_sync(bytearray(data)) == first.sha256
    assert committed_keys(store, server) == [first.sha256]
    assert list(store.tmp.iterdir()) == []
    assert await store.read_bytes(first.sha256) == data


async def test_a_large_blob_is_uploaded_in_parts_and_read_as_a_stream(
    store: BlobStore, server: MotoServer | None
) -> None:
    data = os.urandom(PART_BYTES + 3 * RANGE_BYTES + 12345)
    key = await store.commit(await store.write_stream(_chunks(data)))
    if isinstance(store.objects, S3Objects):
        assert server is not None
        location = store.objects.location
        head = server.client().head_object(Bucket=location.bucket, Key=location.key(object_key(key)))
        assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
        assert server.open_uploads(location.bucket) == 0
    tracemalloc.start()
    try:
        with store.open(key) as reader:
            digest = hashlib.sha256()
            async for chunk in store.iter_chunks(reader):
                digest.update(chunk)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == key
    assert peak < 4 * RANGE_BYTES  # a window of ciphertext and a few plaintext blocks, never the whole blob


async def test_readers_seek_and_read_ranges_anywhere(store: BlobStore) -> None:
    data = os.urandom(3 * RANGE_BYTES + 777)
    key = await store.put_bytes(data)
    with store.open(key) as reader:
        for start, size in [(0, 10), (RANGE_BYTES - 5, 10), (2 * RANGE_BYTES + 3, RANGE_BYTES + 500), (7, 7)]:
            reader.seek(start)
            assert reader.read(size) == data[start : start + size]
        assert reader.seek(0, os.SEEK_END) == len(data)
        assert reader.read(10) == b""
    assert [c async for c in store.iter_chunks(store.open(key), start=100, end=70_100)] != []
    assert b"".join([c async for c in store.iter_chunks(store.open(key), start=100, end=70_100)]) == data[100:70_100]


async def test_a_store_handed_to_another_process_reads_the_same_blobs(store: BlobStore) -> None:
    data = os.urandom(100_000)
    key = await store.put_bytes(data)
    copy = pickle.loads(pickle.dumps(store))
    assert copy.read_bytes_sync(key) == data
    assert copy.exists(key)


async def test_a_missing_blob_is_not_found(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.open("0" * 64)
    with pytest.raises(BlobNotFound):
        await store.read_bytes("f" * 64)
    assert not store.exists("0" * 64)
    assert not is_infrastructure_error(BlobNotFound("x"))


async def test_a_tampered_blob_is_unreadable(store: BlobStore, server: MotoServer | None) -> None:
    data = os.urandom(5000)
    key = await store.put_bytes(data)
    if isinstance(store.objects, S3Objects):
        assert server is not None
        location = store.objects.location
        s3 = server.client()
        body = s3.get_object(Bucket=location.bucket, Key=location.key(object_key(key)))["Body"].read()
        s3.put_object(Bucket=location.bucket, Key=location.key(object_key(key)), Body=body[:-1] + bytes([body[-1] ^ 1]))
    else:
        path = store.path(key)
        body = path.read_bytes()
        path.write_bytes(body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(BlobUnreadable):
        await store.read_bytes(key)


@pytest.mark.parametrize("client", ["obstore", "aiobotocore"])
async def test_a_missing_bucket_is_an_outage_and_leaves_nothing_staged(
    moto_server: MotoServer, tmp_path: Path, keyring: Keyring, client: str
) -> None:
    store = s3_store(moto_server, "no-such-bucket", tmp_path / "staging", keyring, client)
    staged = await store.write_stream(_chunks(b"some bytes"))
    with pytest.raises(BlobStoreUnavailable) as raised:
        await store.commit(staged)
    assert "bucket 'no-such-bucket' does not exist" in str(raised.value)
    assert raised.value.headers["Retry-After"] == "30" and raised.value.status == 503
    assert is_infrastructure_error(raised.value)
    assert list(store.tmp.iterdir()) == []
    with pytest.raises(BlobStoreUnavailable):
        store.open("a" * 64)
    with pytest.raises(BlobStoreUnavailable):
        await store.put_bytes(b"a preview")
    assert list(store.tmp.iterdir()) == []
    assert pickle.loads(pickle.dumps(raised.value)).reason == raised.value.reason


@pytest.mark.parametrize("client", ["obstore", "aiobotocore"])
async def test_refused_credentials_are_an_outage(tmp_path: Path, keyring: Keyring, client: str) -> None:
    server = MotoServer(tmp_path / "moto-auth.log", auth=True)
    try:
        bucket = server.make_bucket()
        good = s3_store(server, bucket, tmp_path / "good", keyring, client)
        key = await good.put_bytes(b"stored with good keys")
        server.credentials = type(server.credentials)(server.credentials.access_key_id, "not-the-secret")
        bad = s3_store(server, bucket, tmp_path / "bad", keyring, client)
        for attempt in (lambda: bad.exists(key), lambda: bad.open(key), lambda: bad.put_bytes_sync(b"other")):
            with pytest.raises(BlobStoreUnavailable) as raised:
                attempt()
            assert "refused our credentials" in str(raised.value)
            assert "not-the-secret" not in str(raised.value)
        assert list(bad.tmp.iterdir()) == []
    finally:
        server.stop()


@pytest.mark.parametrize("client", ["obstore", "aiobotocore"])
async def test_an_endpoint_that_is_down_is_an_outage(tmp_path: Path, keyring: Keyring, client: str) -> None:
    settings = BlobSettings(
        blob_url="s3://bucket/blobs",
        blob_s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        blob_s3_addressing_style="path",
        blob_s3_client=client,  # type: ignore[arg-type]
        aws_access_key_id="a",  # type: ignore[arg-type]
        aws_secret_access_key="b",  # type: ignore[arg-type]
        blob_staging_dir=str(tmp_path / "staging"),
    )
    store = open_blob_store(settings, keyring)
    with pytest.raises(BlobStoreUnavailable) as raised:
        await store.put_bytes(b"nowhere to go")
    assert "cannot be reached" in str(raised.value)
    assert is_infrastructure_error(raised.value)
    with pytest.raises(BlobStoreUnavailable):
        store.open("b" * 64)
    assert list(store.tmp.iterdir()) == []


def test_blob_urls_name_a_directory_or_a_bucket(tmp_path: Path) -> None:
    assert BlobSettings(blob_dir="var/x").local_blob_dir() == Path("var/x")
    assert BlobSettings(blob_url="file:rel/dir").local_blob_dir() == Path("rel/dir")
    assert BlobSettings(blob_url=f"file://{tmp_path}").local_blob_dir() == tmp_path
    location = BlobSettings(blob_url="s3://bucket/some/prefix/", aws_secret_access_key="hidden").s3_location()  # type: ignore[arg-type]
    assert location is not None and (location.bucket, location.prefix) == ("bucket", "some/prefix")
    assert "hidden" not in repr(location)
    for bad in ("http://x", "s3:///nobucket", "file:"):
        with pytest.raises(ValueError):
            BlobSettings(blob_url=bad)
