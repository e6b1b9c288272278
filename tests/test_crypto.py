"""Blob encryption (Tink streaming AEAD under named keys) and its seekable reader; the key settings."""

from __future__ import annotations

import io
import pickle
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels.utils import iter_pixels

from common.app.secret_settings import AuthSettings, BlobKeySettings, ensure_local_secrets
from common.dicom.validation import validate_file
from common.storage.crypto import MAGIC, SEGMENT_SIZE, TAG_BYTES, TINK_HEADER_BYTES, VERSION, Keyring, plaintext_size
from common.storage.crypto_keys import DecryptionError, KeyConfigError, UnknownKeyId, generate_key_spec, parse_keys
from common.storage.crypto_reader import BLOCK, WINDOW_BLOCKS, DecryptingReader

FIRST = SEGMENT_SIZE - TINK_HEADER_BYTES - TAG_BYTES  # plaintext bytes of the first segment
LATER = SEGMENT_SIZE - TAG_BYTES  # plaintext bytes of every later one


class _Kept(io.BytesIO):
    """A destination that keeps its bytes when the sealing stream closes it."""

    def close(self) -> None:
        pass


def keyring(spec: str | None = None, active: str | None = None) -> Keyring:
    return Keyring.from_spec(spec or generate_key_spec("k1"), active)


def seal(ring: Keyring, data: bytes) -> bytes:
    out = _Kept()
    with ring.encrypting(out) as stream:
        stream.write(data)
    return out.getvalue()


def header_size(kid: str) -> int:
    return len(MAGIC) + 2 + len(kid)


def open_blob(ring: Keyring, blob: bytes) -> DecryptingReader:
    return DecryptingReader(io.BytesIO(blob), ring)


def unseal(ring: Keyring, blob: bytes) -> bytes:
    with open_blob(ring, blob) as reader:
        return reader.read()


@pytest.mark.parametrize(
    "size", [0, 1, FIRST - 1, FIRST, FIRST + 1, FIRST + LATER, FIRST + LATER + 1, FIRST + 5 * LATER + 17]
)
def test_round_trip_and_size_for_every_segment_boundary(size: int) -> None:
    ring = keyring()
    data = random.Random(size).randbytes(size)
    blob = seal(ring, data)
    body = len(blob) - header_size("k1")
    segments = 1 if size <= FIRST else 1 + -(-(size - FIRST) // LATER)
    assert body == TINK_HEADER_BYTES + size + segments * TAG_BYTES
    assert plaintext_size(body) == size
    with open_blob(ring, blob) as reader:
        assert reader.seek(0, io.SEEK_END) == size  # known from the ciphertext's length, nothing decrypted
        reader.seek(0)
        assert reader.read() == data


def test_a_blob_names_its_key_and_carries_tinks_aes256_gcm_hkdf_format() -> None:
    ring = keyring(generate_key_spec("2026-q1"))
    blob = seal(ring, b"pixel data")
    assert blob[: header_size("2026-q1")] == MAGIC + bytes([VERSION, 7]) + b"2026-q1"
    assert blob[header_size("2026-q1")] == TINK_HEADER_BYTES  # Tink's header: its length, a salt, a nonce prefix


def test_the_same_plaintext_seals_differently_each_time() -> None:
    ring = keyring()
    assert seal(ring, b"same") != seal(ring, b"same")


def test_a_different_key_under_the_same_id_fails_authentication() -> None:
    blob = seal(keyring(generate_key_spec("k1")), b"secret pixel data")
    with pytest.raises(DecryptionError, match="authentication"):
        unseal(keyring(generate_key_spec("k1")), blob)


def test_an_unknown_key_id_is_reported_by_name() -> None:
    blob = seal(keyring(generate_key_spec("old")), b"x")
    with pytest.raises(UnknownKeyId, match="'old'"):
        open_blob(keyring(generate_key_spec("new")), blob)


def test_rotation_keeps_old_blobs_readable_and_seals_with_the_new_key() -> None:
    old_entry = generate_key_spec("2025")
    before = keyring(old_entry)
    old_blob = seal(before, b"written before rotation")
    after = keyring(f"{generate_key_spec('2026')},{old_entry}", active="2026")
    new_blob = seal(after, b"written after rotation")
    assert unseal(after, old_blob) == b"written before rotation"
    assert unseal(after, new_blob) == b"written after rotation"
    assert new_blob[6:10] == b"2026" and old_blob[6:10] == b"2025"
    with pytest.raises(UnknownKeyId):
        open_blob(before, new_blob)


@pytest.mark.parametrize("where", ["magic", "version", "key_id", "tink_header", "salt", "body", "last_tag"])
def test_any_flipped_bit_is_detected(where: str) -> None:
    ring = keyring(generate_key_spec("k1"))
    blob = bytearray(seal(ring, random.Random(1).randbytes(3 * SEGMENT_SIZE)))
    start = header_size("k1")
    offset = {
        "magic": 0,
        "version": 4,
        "key_id": 6,  # another id, or the same id edited in the associated data
        "tink_header": start,
        "salt": start + 5,
        "body": start + SEGMENT_SIZE + 100,
        "last_tag": len(blob) - 1,
    }[where]
    blob[offset] ^= 0x01
    with pytest.raises((DecryptionError, UnknownKeyId)):
        unseal(ring, bytes(blob))


def test_reordered_segments_are_detected() -> None:
    ring = keyring()
    blob = seal(ring, random.Random(2).randbytes(FIRST + 3 * LATER))
    second = header_size("k1") + SEGMENT_SIZE  # segments after the first are SEGMENT_SIZE bytes each
    third = second + SEGMENT_SIZE
    swapped = blob[:second] + blob[third : third + SEGMENT_SIZE] + blob[second:third] + blob[third + SEGMENT_SIZE :]
    assert len(swapped) == len(blob)
    with pytest.raises(DecryptionError, match="authentication"):
        unseal(ring, swapped)


@pytest.mark.parametrize("cut", ["at_segment_boundary", "mid_segment", "in_tink_header", "in_our_header", "empty"])
def test_truncation_is_detected(cut: str) -> None:
    ring = keyring()
    blob = seal(ring, random.Random(3).randbytes(FIRST + 3 * LATER))
    end = {
        "at_segment_boundary": header_size("k1") + 2 * SEGMENT_SIZE,
        "mid_segment": len(blob) - 100,
        "in_tink_header": header_size("k1") + 20,
        "in_our_header": 5,
        "empty": 0,
    }[cut]
    with pytest.raises(DecryptionError, match=r"truncated|authentication"):
        unseal(ring, blob[:end])


def test_appended_bytes_are_detected() -> None:
    ring = keyring()
    blob = seal(ring, random.Random(4).randbytes(FIRST + 10))
    with pytest.raises(DecryptionError):
        unseal(ring, blob + seal(ring, b"more")[-(TAG_BYTES + 4) :])


def test_an_empty_blob_is_authenticated_when_opened() -> None:
    ring = keyring()
    blob = bytearray(seal(ring, b""))
    assert unseal(ring, bytes(blob)) == b""
    blob[-1] ^= 0x01
    with pytest.raises(DecryptionError):
        open_blob(ring, bytes(blob))


def test_the_seeking_reader_returns_the_bytes_of_a_plain_read_at_random_offsets() -> None:
    ring = keyring()
    rng = random.Random(5)
    data = rng.randbytes(6 * BLOCK + 1234)
    with open_blob(ring, seal(ring, data)) as reader:
        for _ in range(300):
            offset = rng.randrange(len(data) + 10)
            size = rng.choice([1, 4, 8, 100, BLOCK - 1, BLOCK, 2 * BLOCK + 3, 5 * BLOCK, -1])
            assert reader.seek(offset) == offset
            assert reader.read(size) == data[offset : None if size < 0 else offset + size]
            assert reader.tell() == (len(data) if size < 0 else max(offset, min(offset + size, len(data))))
        buffer = bytearray(BLOCK + 7)
        reader.seek(BLOCK - 3)
        assert reader.readinto(buffer) == len(buffer)
        assert bytes(buffer) == data[BLOCK - 3 : 2 * BLOCK + 4]


def test_the_reader_restarts_only_for_a_step_back_past_its_window() -> None:
    ring = keyring()
    data = random.Random(6).randbytes(10 * BLOCK)
    with open_blob(ring, seal(ring, data)) as reader:
        reader.seek(5 * BLOCK)
        assert reader.read(10) == data[5 * BLOCK : 5 * BLOCK + 10]
        reader.seek((6 - WINDOW_BLOCKS) * BLOCK)  # the oldest block still held
        assert reader.read(10) == data[(6 - WINDOW_BLOCKS) * BLOCK :][:10]
        reader.seek(8 * BLOCK)
        assert reader.read(10) == data[8 * BLOCK : 8 * BLOCK + 10]
        assert reader.restarts == 0
        reader.seek(100)  # before the window: decryption starts over
        assert reader.read(10) == data[100:110]
        assert reader.restarts == 1


def test_a_segment_that_fails_authentication_fails_every_read_of_it_and_nothing_before() -> None:
    ring = keyring()
    data = random.Random(7).randbytes(4 * BLOCK)
    blob = bytearray(seal(ring, data))
    blob[-SEGMENT_SIZE] ^= 0x01  # inside one of the last segments
    with open_blob(ring, bytes(blob)) as reader:
        assert reader.read(2 * BLOCK) == data[: 2 * BLOCK]
        for _ in range(2):  # what the failed read took is not served: the second read fails the same way
            reader.seek(4 * BLOCK - 10)
            with pytest.raises(DecryptionError, match="authentication"):
                reader.read(10)
        reader.seek(BLOCK)
        assert reader.read(10) == data[BLOCK : BLOCK + 10]


def test_reading_a_large_blob_frame_by_frame_holds_a_bounded_window(tmp_path: Path) -> None:
    ring = keyring()
    frame = 512 * 1024
    path = tmp_path / "large.blob"
    with path.open("wb") as out, ring.encrypting(out) as stream:
        for index in range(64):  # 32 MiB, never whole in memory here either
            stream.write(bytes([index]) * frame)
    tracemalloc.start()
    try:
        with DecryptingReader(path.open("rb"), ring) as reader:
            for index in range(64):
                reader.seek(100)  # as pydicom does between frames: back to the pixel data, then on to the frame
                reader.seek(index * frame)
                assert reader.read(frame) == bytes([index]) * frame
            assert reader.restarts == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * frame + (WINDOW_BLOCKS + 2) * BLOCK  # a frame being joined, the window, Tink's read buffers


def _multi_frame(samples_dir: Path, frames: int) -> bytes:
    ds = pydicom.dcmread(samples_dir / "sample-01-dicom.dcm")
    base = ds.pixel_array.astype(np.uint16)
    ds.NumberOfFrames = frames
    ds.PixelData = np.stack([base + i for i in range(frames)]).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_pydicom_reads_header_and_frames_of_a_multi_frame_blob_without_restarting(samples_dir: Path) -> None:
    ring = keyring()
    data = _multi_frame(samples_dir, 12)
    blob = seal(ring, data)
    plain = list(iter_pixels(io.BytesIO(data)))
    validated = validate_file(open_blob(ring, blob))
    assert validated.sop_instance_uid == str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
    with open_blob(ring, blob) as reader:
        header = pydicom.dcmread(reader, stop_before_pixels=True)
        assert int(header.NumberOfFrames) == 12
        frames = list(iter_pixels(reader))
        assert reader.restarts == 0
    assert len(frames) == 12 and all(np.array_equal(a, b) for a, b in zip(frames, plain, strict=True))


def test_a_keyring_crosses_to_a_worker_process_without_its_tink_primitives() -> None:
    ring = keyring()
    blob = seal(ring, b"read in a worker")
    copy = pickle.loads(pickle.dumps(ring))
    assert copy.active == ring.active and copy.key_ids == ring.key_ids
    assert unseal(copy, blob) == b"read in a worker"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no key"),
        ("k1", "kid:base64key"),
        ("k1:not-base64!", "base64"),
        ("k1:AAAA", "32 bytes"),
        (f"{generate_key_spec('a')},{generate_key_spec('a')}", "twice"),
    ],
    ids=["empty", "no-colon", "not-base64", "short-key", "same-id-twice"],  # stable ids: the keys are random
)
def test_malformed_key_configuration_is_rejected(spec: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message):
        parse_keys(spec)


def test_active_key_must_be_configured() -> None:
    with pytest.raises(KeyConfigError, match="BLOB_ACTIVE_KEY"):
        Keyring.from_spec(generate_key_spec("a"), "b")


def test_settings_read_generated_secret_files_and_refuse_without_them(tmp_path: Path) -> None:
    env = {
        "AUTH_SECRET_FILE": str(tmp_path / "auth"),
        "BLOB_KEYS_FILE": str(tmp_path / "keys"),
        "SERVICE_SECRET_FILE": str(tmp_path / "service"),
    }
    with pytest.raises(ValueError, match="AUTH_SECRET is not set"):
        AuthSettings(auth_secret="", auth_secret_file=env["AUTH_SECRET_FILE"])
    with pytest.raises(ValueError, match="BLOB_KEYS is not set"):
        BlobKeySettings(blob_keys="", blob_keys_file=env["BLOB_KEYS_FILE"])
    created = ensure_local_secrets(env)
    assert sorted(created) == sorted([tmp_path / "auth", tmp_path / "keys", tmp_path / "service"])
    assert (tmp_path / "auth").stat().st_mode & 0o077 == 0
    assert ensure_local_secrets(env) == []  # idempotent: never overwrites a key
    auth = AuthSettings(auth_secret="", auth_secret_file=env["AUTH_SECRET_FILE"])
    assert len(auth.auth_secret.get_secret_value()) >= 32
    keys = BlobKeySettings(blob_keys="", blob_keys_file=env["BLOB_KEYS_FILE"])
    ring = keys.keyring()
    assert ring.active == "k1"
    assert unseal(ring, seal(ring, b"generated key works")) == b"generated key works"
    assert "k1" not in repr(keys.blob_keys) and auth.auth_secret.get_secret_value() not in repr(auth)


def test_short_auth_secret_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        AuthSettings(auth_secret="short")
