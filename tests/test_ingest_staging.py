"""ingest_service.staging: small files validated and stored from memory in one go, larger ones streamed;
both end as the same encrypted blob, and a refused file leaves nothing on disk."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.storage.blobs import BlobStore
from common.storage.crypto import Keyring
from common.storage.crypto_keys import generate_key_spec
from ingest_service.parts import UnreadableFile
from ingest_service.staging import Refused, store_file

CHUNK = 64 * 1024


async def chunks_of(data: bytes, *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for count, start in enumerate(range(0, len(data), CHUNK)):
        if fail_after is not None and count == fail_after:
            raise UnreadableFile("corrupt zip entry: Bad CRC-32")
        yield data[start : start + CHUNK]


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", Keyring.from_spec(generate_key_spec("k1")))


def files_on_disk(store: BlobStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file()]


# A memory limit above the file's size keeps it in memory; one below streams it.
PATHS = {"in memory": 4 * 1024 * 1024, "streamed": 100_000}


@pytest.mark.parametrize("memory_limit", PATHS.values(), ids=PATHS.keys())
async def test_a_valid_file_is_stored_encrypted_under_its_sha256(
    store: BlobStore, sample_01: bytes, memory_limit: int
) -> None:
    stored = await store_file(store, chunks_of(sample_01), max_bytes=None, memory_limit=memory_limit)
    sha256 = hashlib.sha256(sample_01).hexdigest()
    assert (stored.sha256, stored.size, stored.metadata.modality) == (sha256, len(sample_01), "MR")
    assert await store.read_bytes(sha256) == sample_01
    assert store.path(sha256).read_bytes()[:8] != sample_01[:8]  # ciphertext on disk
    assert list(store.tmp.iterdir()) == []


@pytest.mark.parametrize("memory_limit", PATHS.values(), ids=PATHS.keys())
async def test_an_invalid_file_is_refused_with_its_hash_and_leaves_nothing_on_disk(
    store: BlobStore, sample_01: bytes, memory_limit: int
) -> None:
    truncated = sample_01[: len(sample_01) - 1000]
    with pytest.raises(Refused) as refused:
        await store_file(store, chunks_of(truncated), max_bytes=None, memory_limit=memory_limit)
    assert "pixel data" in refused.value.reason
    assert (refused.value.sha256, refused.value.size) == (hashlib.sha256(truncated).hexdigest(), len(truncated))
    assert files_on_disk(store) == []


@pytest.mark.parametrize("memory_limit", PATHS.values(), ids=PATHS.keys())
async def test_more_bytes_than_declared_are_refused(store: BlobStore, sample_01: bytes, memory_limit: int) -> None:
    with pytest.raises(Refused) as refused:
        await store_file(store, chunks_of(sample_01), max_bytes=200_000, memory_limit=memory_limit)
    assert refused.value.reason == "entry holds more than its declared 200000 bytes"
    assert refused.value.sha256 is None
    assert files_on_disk(store) == []


@pytest.mark.parametrize("memory_limit", PATHS.values(), ids=PATHS.keys())
async def test_an_unreadable_entry_is_refused_with_its_reason(
    store: BlobStore, sample_01: bytes, memory_limit: int
) -> None:
    with pytest.raises(Refused) as refused:
        await store_file(store, chunks_of(sample_01, fail_after=3), max_bytes=None, memory_limit=memory_limit)
    assert refused.value.reason == "corrupt zip entry: Bad CRC-32"
    assert files_on_disk(store) == []


async def test_the_streamed_path_reads_no_further_ahead_than_the_memory_limit(
    store: BlobStore, sample_01: bytes
) -> None:
    """Past the limit the file goes to disk as it arrives: the reader is never more than one chunk ahead."""
    pulled = 0
    written_before: list[int] = []
    original = store.write_stream

    async def counting() -> AsyncIterator[bytes]:
        nonlocal pulled
        async for chunk in chunks_of(sample_01):
            pulled += len(chunk)
            yield chunk

    async def spy(chunks: AsyncIterator[bytes], *, max_bytes: int | None = None):  # type: ignore[no-untyped-def]
        written_before.append(pulled)
        return await original(chunks, max_bytes=max_bytes)

    store.write_stream = spy  # type: ignore[method-assign]
    await store_file(store, counting(), max_bytes=None, memory_limit=100_000)
    assert written_before == [2 * CHUNK]  # 128 KiB read (just over 100 000 bytes), then streamed
    assert pulled == len(sample_01)
