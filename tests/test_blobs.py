"""The blob store: streamed, hashed, encrypted, atomic, idempotent, content-addressed writes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pydicom
import pytest

from common.dicom.validation import validate_file
from common.storage.blobs import BlobNotFound, BlobStore, BlobTooLarge, BlobUnreadable
from common.storage.crypto import Keyring
from common.storage.crypto_keys import DecryptionError, generate_key_spec


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
    assert len(on_disk) > len(data)  # header and one tag per 64 KiB chunk
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
    path.write_bytes(bytes(sealed[: 64 * 1024 + 16 + 40]))  # cut at a chunk boundary (after the header)
    with pytest.raises(BlobUnreadable):
        await store.read_bytes(key)


async def test_a_plaintext_blob_from_before_encryption_is_replaced_by_the_next_copy(store: BlobStore) -> None:
    data = b"stored before encryption was switched on"
    key = hashlib.sha256(data).hexdigest()
    store.path(key).parent.mkdir(parents=True)
    store.path(key).write_bytes(data)
    with pytest.raises(BlobUnreadable):
        await store.read_bytes(key)
    assert await store.commit(await store.write_stream(_chunks(data))) == key
    assert data not in store.path(key).read_bytes()
    assert await store.read_bytes(key) == data


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


async def test_reader_reads_across_chunks_into_any_buffer(store: BlobStore) -> None:
    chunk = 64 * 1024
    data = os.urandom(5 * chunk + 99)
    key = await store.put_bytes(memoryview(data))  # any buffer is stored as its bytes
    assert key == hashlib.sha256(data).hexdigest()
    with store.open(key) as reader:
        buffer = bytearray(3 * chunk)
        assert reader.readinto(buffer) == chunk  # a whole chunk, decrypted straight into the buffer
        assert reader.readinto(memoryview(buffer)[10:]) == chunk  # the next one likewise
        assert buffer[:10] == data[:10] and buffer[10 : 10 + chunk] == data[chunk : 2 * chunk]
        for offset, size in [(0, 3 * chunk), (chunk - 5, 2 * chunk + 10), (3, 4), (4 * chunk, 2 * chunk), (1, -1)]:
            reader.seek(offset)
            assert reader.read(size) == data[offset : offset + size if size >= 0 else None]
            assert reader.tell() == min(len(data), offset + size if size >= 0 else len(data))


async def test_a_chunk_that_fails_authentication_fails_on_every_read(store: BlobStore) -> None:
    chunk = 64 * 1024
    data = os.urandom(3 * chunk)
    key = await store.put_bytes(data)
    path = store.path(key)
    sealed = bytearray(path.read_bytes())
    sealed[-chunk] ^= 1  # inside the last chunk
    path.write_bytes(sealed)
    with store.open(key) as reader:
        assert reader.read(2 * chunk) == data[: 2 * chunk]
        for _ in range(2):  # the failed chunk is not kept: the second read fails the same way
            reader.seek(2 * chunk + 7)
            with pytest.raises(DecryptionError):
                reader.read(10)
        reader.seek(0)
        assert reader.read(10) == data[:10]


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
