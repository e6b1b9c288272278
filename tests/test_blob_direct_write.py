"""Whole blobs are written with O_DIRECT from a reused aligned buffer, exact in size, and fall back where refused."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from pathlib import Path

import pytest

from common.storage.blobs import BlobStore
from common.storage.crypto import Keyring
from common.storage.crypto_keys import CryptoError, generate_key_spec
from common.storage.direct_write import ALIGNMENT, aligned_buffer, open_direct, padded_size, write_direct
from ingest_service.settings import IngestSettings


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_spec(generate_key_spec("k1"))


def test_this_filesystem_takes_o_direct(tmp_path: Path) -> None:
    """The test machine's disk accepts O_DIRECT, so the tests below exercise the direct path for real."""
    fd = open_direct(tmp_path / "probe")
    assert fd is not None
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [0, 1, ALIGNMENT - 1, ALIGNMENT, ALIGNMENT + 1, 3 * ALIGNMENT + 17, 1_000_003])
def test_a_direct_write_leaves_exactly_the_bytes_given(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    buffer = aligned_buffer(size)
    assert len(buffer) == padded_size(max(size, 1)) and len(buffer) % ALIGNMENT == 0
    buffer[:size] = data
    path = tmp_path / "file"
    fd = open_direct(path)
    assert fd is not None
    try:
        write_direct(fd, buffer, size)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_the_buffer_is_reused_and_grown_and_padding_never_carries_an_earlier_file(tmp_path: Path) -> None:
    first = aligned_buffer(3 * ALIGNMENT)
    first[:] = b"\xaa" * len(first)
    again = aligned_buffer(ALIGNMENT + 5)
    assert again.obj is first.obj  # the same mapping, not a new one per file
    again[: ALIGNMENT + 5] = b"x" * (ALIGNMENT + 5)
    fd = open_direct(tmp_path / "small")
    assert fd is not None
    try:
        write_direct(fd, again, ALIGNMENT + 5)
        # The padding written to the device (before the truncation) was zeroed, not the earlier 0xaa.
        assert again[ALIGNMENT + 5 : 2 * ALIGNMENT].tobytes() == bytes(ALIGNMENT - 5)
    finally:
        os.close(fd)
    assert (tmp_path / "small").read_bytes() == b"x" * (ALIGNMENT + 5)
    assert len(aligned_buffer(10 * ALIGNMENT)) == 10 * ALIGNMENT


@pytest.mark.parametrize("size", [0, 1, 65_535, 65_536, 594_998, 1_702_398])
async def test_put_bytes_writes_direct_and_reads_back(tmp_path: Path, keyring: Keyring, size: int) -> None:
    store = BlobStore(tmp_path / "blobs", keyring)
    data = os.urandom(size)
    key = await store.put_bytes(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.direct_io  # O_DIRECT was used, not given up
    assert await store.read_bytes(key) == data
    assert store.path(key).stat().st_size == keyring.encryptor().sealed_size(size)  # no padding left on disk
    assert list(store.tmp.iterdir()) == []


async def test_a_filesystem_that_refuses_o_direct_gets_buffered_writes(
    tmp_path: Path, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No filesystem here refuses O_DIRECT (tmpfs takes it too since Linux 6.6), so its EINVAL is simulated."""
    real_open = os.open

    def refusing_open(path: object, flags: int, *args: int) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)  # common.storage.direct_write calls os.open
    store = BlobStore(tmp_path / "blobs", keyring)
    first, second = os.urandom(70_000), os.urandom(5)
    assert await store.read_bytes(await store.put_bytes(first)) == first
    assert not store.direct_io  # remembered: the next write does not try again
    assert await store.read_bytes(await store.put_bytes(second)) == second
    assert list(store.tmp.iterdir()) == []


async def test_a_filesystem_that_refuses_direct_writes_after_the_open_gets_buffered_writes(
    tmp_path: Path, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated too: a device whose logical block is larger than our alignment would refuse the write itself."""
    real_write = os.write

    def refusing_write(fd: int, data: object) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "write", refusing_write)
    store = BlobStore(tmp_path / "blobs", keyring)
    data = os.urandom(300_000)
    assert await store.read_bytes(await store.put_bytes(data)) == data
    assert not store.direct_io
    assert list(store.tmp.iterdir()) == []  # the refused staged file is gone


def test_other_open_errors_are_not_mistaken_for_a_refusal(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_direct(tmp_path / "missing-folder" / "file")


async def test_direct_io_can_be_switched_off(tmp_path: Path, keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOB_DIRECT_IO", "false")
    settings = IngestSettings(blob_keys=generate_key_spec("k1"))
    assert settings.blob_direct_io is False
    store = BlobStore(tmp_path / "blobs", keyring, direct_io=settings.blob_direct_io)
    data = os.urandom(9_000)
    assert await store.read_bytes(await store.put_bytes(data)) == data
    assert not store.direct_io


def test_seal_into_matches_seal_and_refuses_a_short_buffer(keyring: Keyring) -> None:
    data = os.urandom(200_000)
    encryptor = keyring.encryptor()
    size = encryptor.sealed_size(len(data))
    out = bytearray(size + 100)
    assert encryptor.seal_into(data, memoryview(out)) == size
    assert keyring.decrypt_bytes(out[:size]) == data
    with pytest.raises(CryptoError, match="needs"):
        keyring.encryptor().seal_into(data, memoryview(bytearray(size - 1)))
