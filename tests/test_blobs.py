"""The blob store: one write path, streamed or whole: hashed, sealed as written, atomic, idempotent, by content."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pydicom
import pytest

from common.dicom.validation import validate_file
from common.storage.blobs import BlobNotFound, BlobStore, BlobTooLarge, BlobUnreadable
from common.storage.crypto import MAGIC, SEGMENT_SIZE, Keyring
from common.storage.crypto_keys import generate_key_spec


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _failing_stream() -> AsyncIterator[bytes]:
    yield b"partial"
    raise ConnectionResetError("client went away")


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_spec(generate_key_spec("k1"))


@pytest.fixture
def store(tmp_path: Path, keyring: Keyring) -> BlobStore:
    return BlobStore(tmp_path / "blobs", keyring)


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


def distinctive_runs(path: Path) -> dict[str, bytes]:
    """Plaintext that must never be found on disk: the patient's name and id, and 64 bytes of pixel data."""
    data = path.read_bytes()
    header = pydicom.dcmread(path, stop_before_pixels=True)
    pixels = pydicom.dcmread(path).PixelData
    middle = len(pixels) // 2
    runs = {
        "patient name": str(header.PatientName).encode(),
        "patient id": str(header.PatientID).encode(),
        "pixel data": pixels[middle : middle + 64],
        "file meta": data[128:192],
    }
    assert all(len(run) >= 4 and run in data for run in runs.values())
    return runs


@pytest.mark.parametrize("sample", ["sample-01-dicom.dcm", "sample-02-dicom.dcm"])
async def test_blobs_on_disk_do_not_contain_the_plaintext_dicom(
    store: BlobStore, samples_dir: Path, sample: str
) -> None:
    path = samples_dir / sample
    data = path.read_bytes()
    staged = await store.write_stream(_chunks(*(data[i : i + 10_000] for i in range(0, len(data), 10_000))))
    staged_bytes = staged.path.read_bytes()
    key = await store.commit(staged)
    assert key == hashlib.sha256(data).hexdigest()  # the key is the plaintext's hash: duplicates still match
    on_disk = store.path(key).read_bytes()
    for stored in (staged_bytes, on_disk):
        for what, run in distinctive_runs(path).items():
            assert run not in stored, what
    assert len(on_disk) > len(data)  # our header, Tink's header and one tag per segment
    assert await store.read_bytes(key) == data


async def test_the_same_bytes_stored_twice_stay_one_blob_with_one_ciphertext(store: BlobStore) -> None:
    data = os.urandom(5000)
    key = await store.put_bytes(data)
    first = store.path(key).read_bytes()
    assert await store.commit(await store.write_stream(_chunks(data))) == key
    assert store.path(key).read_bytes() == first
    assert list(store.tmp.iterdir()) == []


async def test_a_blob_written_under_an_old_key_is_readable_after_rotation(tmp_path: Path) -> None:
    old = generate_key_spec("2025")
    new = generate_key_spec("2026")
    before = BlobStore(tmp_path / "blobs", Keyring.from_spec(old))
    old_key = await before.put_bytes(b"previewed before rotation")
    after = BlobStore(tmp_path / "blobs", Keyring.from_spec(f"{old},{new}", "2026"))
    new_key = await after.put_bytes(b"previewed after rotation")
    assert await after.read_bytes(old_key) == b"previewed before rotation"
    assert await after.read_bytes(new_key) == b"previewed after rotation"
    assert b"2026" in after.path(new_key).read_bytes()[:16]
    retired = BlobStore(tmp_path / "blobs", Keyring.from_spec(new))  # the old key was dropped too early
    with pytest.raises(BlobUnreadable, match="2025"):
        await retired.read_bytes(old_key)


async def test_tampered_or_truncated_blobs_are_unreadable_not_wrong(store: BlobStore) -> None:
    data = os.urandom(200_000)
    key = await store.put_bytes(data)
    path = store.path(key)
    sealed = bytearray(path.read_bytes())
    sealed[100_000] ^= 1
    path.write_bytes(bytes(sealed))
    with pytest.raises(BlobUnreadable):
        await store.read_bytes(key)
    with store.open(key) as reader, pytest.raises(BlobUnreadable):
        async for _ in store.iter_chunks(reader):
            pass
    sealed[100_000] ^= 1
    header = len(MAGIC) + 2 + len("k1")  # then segments of SEGMENT_SIZE bytes, the first holding Tink's header
    assert len(sealed) > header + 3 * SEGMENT_SIZE
    path.write_bytes(bytes(sealed[: header + 2 * SEGMENT_SIZE]))  # cut at a segment boundary
    with pytest.raises(BlobUnreadable, match="truncated"):
        await store.read_bytes(key)


async def test_a_blob_is_invisible_under_its_key_until_committed(store: BlobStore) -> None:
    data = os.urandom(300_000)
    key = hashlib.sha256(data).hexdigest()

    async def watched() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 50_000):
            yield data[at : at + 50_000]
            assert not store.exists(key)  # sealed into tmp/ as it arrives, nothing under the final name

    staged = await store.write_stream(watched())
    assert staged.path.parent == store.tmp and not store.exists(key)
    assert data[1000:1100] not in staged.path.read_bytes()  # the staged copy is sealed too
    assert await store.commit(staged) == key
    assert store.exists(key) and not staged.path.exists()


async def test_storing_a_whole_file_copies_none_of_it(store: BlobStore) -> None:
    data = os.urandom(8 * 1024 * 1024)
    tracemalloc.start()
    try:
        key = store.put_bytes_sync(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # Tink takes the bytes as they are and seals them segment by segment
    assert store.read_bytes_sync(key) == data


async def test_readers_seek_anywhere_and_stream_ranges(store: BlobStore) -> None:
    data = os.urandom(3 * 64 * 1024 + 123)
    key = await store.put_bytes(data)
    with store.open(key) as reader:
        for offset in (0, 1, 65_535, 65_536, 65_537, 150_000, len(data) - 1):
            reader.seek(offset)
            assert reader.read(300) == data[offset : offset + 300]
        assert reader.seek(0, os.SEEK_END) == len(data)
        assert reader.read() == b""
        chunks = [chunk async for chunk in store.iter_chunks(reader, start=70_000, end=200_000)]
        assert b"".join(chunks) == data[70_000:200_000]
        assert all(len(chunk) <= 64 * 1024 for chunk in chunks)
        whole = b"".join([chunk async for chunk in store.iter_chunks(reader)])
    assert whole == data
    with pytest.raises(BlobNotFound):
        store.open("0" * 64)


async def test_any_buffer_is_stored_as_its_bytes(store: BlobStore) -> None:
    for kind in (memoryview, bytearray):
        data = os.urandom(100_000)
        key = await store.put_bytes(kind(data))
        assert key == hashlib.sha256(data).hexdigest()
        assert await store.read_bytes(key) == data


async def test_an_empty_blob_round_trips(store: BlobStore) -> None:
    key = await store.commit(await store.write_stream(_chunks()))
    assert key == hashlib.sha256(b"").hexdigest()
    assert await store.read_bytes(key) == b""
    with store.open(key) as reader:
        assert reader.read() == b""


async def test_a_staged_dicom_file_is_validated_through_its_plaintext_view(store: BlobStore, samples_dir: Path) -> None:
    data = (samples_dir / "sample-02-dicom.dcm").read_bytes()
    staged = await store.write_stream(_chunks(data))
    metadata = validate_file(store.open_staged(staged))
    assert metadata.sop_instance_uid == str(pydicom.dcmread(samples_dir / "sample-02-dicom.dcm").SOPInstanceUID)
