"""The blob store: streamed, hashed, atomic, idempotent, content-addressed writes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.blobs import BlobNotFound, BlobStore, BlobTooLarge


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _failing_stream() -> AsyncIterator[bytes]:
    yield b"partial"
    raise ConnectionResetError("client went away")


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


async def test_streamed_write_hashes_and_commits_under_its_key(store: BlobStore) -> None:
    parts = [os.urandom(1000), b"", os.urandom(70_000), b"tail"]
    data = b"".join(parts)
    staged = await store.write_stream(_chunks(*parts))
    assert staged.sha256 == hashlib.sha256(data).hexdigest()
    assert staged.size == len(data)
    assert staged.path.parent == store.tmp
    key = await store.commit(staged)
    assert key == staged.sha256
    assert store.path(key) == store.root / key[:2] / key[2:4] / key
    assert store.exists(key)
    assert await store.read_bytes(key) == data
    assert store.read_bytes_sync(key) == data
    assert list(store.tmp.iterdir()) == []


async def test_committing_existing_key_keeps_the_first_file(store: BlobStore) -> None:
    first = await store.write_stream(_chunks(b"same bytes"))
    key = await store.commit(first)
    inode = store.path(key).stat().st_ino
    second = await store.write_stream(_chunks(b"same ", b"bytes"))
    assert await store.commit(second) == key
    assert store.path(key).stat().st_ino == inode
    assert not second.path.exists()
    assert list(store.tmp.iterdir()) == []


async def test_stream_over_limit_raises_and_leaves_no_temp_file(store: BlobStore) -> None:
    with pytest.raises(BlobTooLarge) as info:
        await store.write_stream(_chunks(b"x" * 10, b"y" * 10), max_bytes=15)
    assert info.value.limit == 15
    assert list(store.tmp.iterdir()) == []
    staged = await store.write_stream(_chunks(b"x" * 15), max_bytes=15)
    assert staged.size == 15


async def test_failed_stream_leaves_no_temp_file(store: BlobStore) -> None:
    with pytest.raises(ConnectionResetError):
        await store.write_stream(_failing_stream())
    assert list(store.tmp.iterdir()) == []


async def test_discard_removes_the_staged_file(store: BlobStore) -> None:
    staged = await store.write_stream(_chunks(b"unwanted"))
    await store.discard(staged)
    assert not staged.path.exists()
    assert not store.exists(staged.sha256)


async def test_put_bytes_is_idempotent(store: BlobStore) -> None:
    data = b"\x89PNG fake preview"
    key = await store.put_bytes(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert await store.put_bytes(data) == key
    assert await store.read_bytes(key) == data
    assert list(store.tmp.iterdir()) == []


async def test_missing_blob_and_bad_keys(store: BlobStore) -> None:
    missing = "0" * 64
    assert not store.exists(missing)
    with pytest.raises(BlobNotFound):
        await store.read_bytes(missing)
    for bad in ["../../etc/passwd", "A" * 64, "0" * 63]:
        with pytest.raises(ValueError, match="not a sha256"):
            store.path(bad)


async def test_sweep_tmp_removes_leftovers(store: BlobStore) -> None:
    (store.tmp / "staged-leftover").write_bytes(b"half an upload")
    assert store.sweep_tmp() == 1
    assert list(store.tmp.iterdir()) == []
