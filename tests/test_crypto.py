"""AES-256-GCM blob encryption: the version 1 format, round trips, wrong keys, tampering, truncation, rotation."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.app.secret_settings import AuthSettings, BlobKeySettings, ensure_local_secrets
from common.storage.crypto import MAGIC, TAG_BYTES, Keyring, is_encrypted
from common.storage.crypto_keys import (
    CryptoError,
    DecryptionError,
    KeyConfigError,
    UnknownKeyId,
    generate_key_spec,
    parse_keys,
)
from common.storage.crypto_reader import open_decrypting

CHUNK = 1024  # small chunks so that multi-chunk cases stay fast


def keyring(spec: str | None = None, active: str | None = None) -> Keyring:
    return Keyring.from_spec(spec or generate_key_spec("k1"), active, chunk_size=CHUNK)


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def reference_blob(master: bytes, kid: bytes, salt: bytes, prefix: bytes, chunk_size: int, plaintext: bytes) -> bytes:
    """Format version 1 written from its description (crypto.py docstring) with one AESGCM.encrypt per chunk."""
    header = MAGIC + bytes([1, len(kid)]) + kid + salt + prefix + chunk_size.to_bytes(4, "big")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"dicomflow-blob-v1:" + kid).derive(master)
    chunks = pieces(plaintext, chunk_size) or [b""]
    last = len(chunks) - 1
    sealed = [
        AESGCM(key).encrypt(prefix + i.to_bytes(4, "big") + bytes([i == last]), chunk, header)
        for i, chunk in enumerate(chunks)
    ]
    return header + b"".join(sealed)


# A blob written by the implementation before encrypt_into (commit 96e5776), with its random salt and nonce prefix
# fixed: master key bytes 0..31, key id "kat", salt 16 x a5, prefix 01..07, 16-byte chunks, KAT_PLAINTEXT.
KAT_KEY = bytes(range(32))
KAT_PLAINTEXT = b"dicomflow known-answer vector, 3 chunks"
KAT_BLOB = bytes.fromhex(
    "4446454201036b6174a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a501020304050607000000"
    "10f7c0a321c465d94719dcd53366725c65ab565cbb6e2f60e56e96dff3a8a5ac8f1d04"
    "774c5951aa961b84df69d5f49941b610c3d11513da425a6f18108d082e68e24b7ac20e"
    "59886cee237aa48eb98a4341149d04500eda"
)


def test_known_answer_blob_decrypts_on_every_read_path() -> None:
    ring = Keyring.from_spec(f"kat:{base64.b64encode(KAT_KEY).decode()}")
    salt, prefix = bytes([0xA5] * 16), bytes(range(1, 8))
    assert reference_blob(KAT_KEY, b"kat", salt, prefix, 16, KAT_PLAINTEXT) == KAT_BLOB
    assert ring.decrypt_bytes(KAT_BLOB) == KAT_PLAINTEXT
    assert ring.decrypt_bytes(memoryview(bytearray(KAT_BLOB))) == KAT_PLAINTEXT
    for size in (1, 7, 16, 32, 33, len(KAT_BLOB)):
        assert b"".join(ring.decrypt_iter(pieces(KAT_BLOB, size))) == KAT_PLAINTEXT
    with open_decrypting(io.BytesIO(KAT_BLOB), ring.keys) as reader:
        assert reader.read() == KAT_PLAINTEXT
        reader.seek(15)
        assert reader.read(3) == KAT_PLAINTEXT[15:18]


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` in pieces of the given sizes, repeated until it is used up."""
    parts: list[bytes] = []
    while sum(map(len, parts)) < len(data):
        at = sum(map(len, parts))
        parts.append(data[at : at + sizes[len(parts) % len(sizes)]])
    return parts


@pytest.mark.parametrize("size", [0, 1, CHUNK, 3 * CHUNK + 17])
@pytest.mark.parametrize("sizes", [None, [1000], [2 * CHUNK], [1, CHUNK + 1, 7, CHUNK]], ids=str)
def test_every_encrypt_path_writes_exactly_the_version_1_format(size: int, sizes: list[int] | None) -> None:
    spec = generate_key_spec("k1")
    ring = keyring(spec)
    data = os.urandom(size)
    blob = bytes(ring.encrypt_bytes(data) if sizes is None else b"".join(ring.encrypt_iter(cut(data, sizes))))
    salt, prefix = blob[8:24], blob[24:31]  # after MAGIC, version, len(kid) and "k1"
    assert blob == reference_blob(parse_keys(spec)["k1"], b"k1", salt, prefix, CHUNK, data)


@pytest.mark.parametrize(
    "sizes", [[1], [CHUNK + TAG_BYTES], [CHUNK + TAG_BYTES + 1], [3, 5000, 17, 2 * CHUNK]], ids=str
)
def test_streamed_decryption_of_any_piece_sizes(sizes: list[int]) -> None:
    ring = keyring()
    data = os.urandom(4 * CHUNK + 100)
    assert b"".join(ring.decrypt_iter(cut(bytes(ring.encrypt_bytes(data)), sizes))) == data


def test_an_encryptor_seals_once_and_finalizes_once() -> None:
    encryptor = keyring().encryptor()
    encryptor.update(b"started")
    with pytest.raises(CryptoError, match="already started"):
        encryptor.seal(b"whole")
    encryptor.finalize()
    with pytest.raises(CryptoError, match="finalized"):
        encryptor.finalize()
    sealed = keyring().encryptor()
    sealed.seal(b"whole")
    with pytest.raises(CryptoError, match="finalized"):
        sealed.update(b"more")


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17])
def test_round_trip_for_every_boundary_size(size: int) -> None:
    ring = keyring()
    data = os.urandom(size)
    blob = ring.encrypt_bytes(data)
    full_chunks = max(1, -(-size // CHUNK))
    assert len(blob) == len(ring.encryptor().header) + size + full_chunks * TAG_BYTES
    assert ring.decrypt_bytes(blob) == data


def test_streaming_round_trip_with_uneven_pieces() -> None:
    ring = keyring()
    data = os.urandom(10 * CHUNK + 5)
    encrypted = b"".join(ring.encrypt_iter(pieces(data, 333)))
    assert b"".join(ring.decrypt_iter(pieces(encrypted, 777))) == data
    assert ring.decrypt_bytes(encrypted) == data


async def test_async_streams_round_trip() -> None:
    ring = keyring()
    data = os.urandom(5 * CHUNK + 3)

    async def source(parts: list[bytes]) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    encrypted = b"".join([c async for c in ring.encrypt_stream(source(pieces(data, 500)))])
    decrypted = b"".join([c async for c in ring.decrypt_stream(source(pieces(encrypted, 900)))])
    assert decrypted == data


def test_decryptor_never_buffers_more_than_a_chunk() -> None:
    ring = keyring()
    encrypted = ring.encrypt_bytes(os.urandom(50 * CHUNK))
    decryptor = ring.decryptor()
    produced = 0
    for part in pieces(encrypted, 4096):
        produced += len(decryptor.update(part))
        assert len(decryptor._buffer) <= CHUNK + TAG_BYTES + 4096
    produced += len(decryptor.finalize())
    assert produced == 50 * CHUNK


def test_same_plaintext_encrypts_differently_each_time() -> None:
    ring = keyring()
    assert ring.encrypt_bytes(b"same") != ring.encrypt_bytes(b"same")


def test_wrong_key_with_same_id_fails() -> None:
    blob = keyring(generate_key_spec("k1")).encrypt_bytes(b"secret pixel data")
    with pytest.raises(DecryptionError):
        keyring(generate_key_spec("k1")).decrypt_bytes(blob)


def test_unknown_key_id_is_reported() -> None:
    blob = keyring(generate_key_spec("old")).encrypt_bytes(b"x")
    with pytest.raises(UnknownKeyId, match="'old'"):
        keyring(generate_key_spec("new")).decrypt_bytes(blob)


@pytest.mark.parametrize("where", ["header_kid", "salt", "chunk_size", "body", "tag"])
def test_any_flipped_bit_is_detected(where: str) -> None:
    ring = keyring()
    blob = bytearray(ring.encrypt_bytes(os.urandom(2 * CHUNK + 10)))
    header_len = len(ring.encryptor().header)
    offset = {
        "header_kid": 6,
        "salt": 9,
        "chunk_size": header_len - 1,
        "body": header_len + CHUNK // 2,
        "tag": len(blob) - 1,
    }[where]
    blob[offset] ^= 0x01
    with pytest.raises((DecryptionError, UnknownKeyId)):
        ring.decrypt_bytes(bytes(blob))


def test_reordered_chunks_are_detected() -> None:
    ring = keyring()
    blob = ring.encrypt_bytes(os.urandom(3 * CHUNK))
    header_len = len(ring.encryptor().header)
    sealed = CHUNK + TAG_BYTES
    body = blob[header_len:]
    swapped = body[sealed : 2 * sealed] + body[:sealed] + body[2 * sealed :]
    with pytest.raises(DecryptionError):
        ring.decrypt_bytes(blob[:header_len] + swapped)


@pytest.mark.parametrize("cut", ["at_chunk_boundary", "mid_chunk", "in_header", "empty"])
def test_truncation_is_detected(cut: str) -> None:
    ring = keyring()
    blob = ring.encrypt_bytes(os.urandom(3 * CHUNK))
    header_len = len(ring.encryptor().header)
    end = {
        "at_chunk_boundary": header_len + 2 * (CHUNK + TAG_BYTES),
        "mid_chunk": len(blob) - 100,
        "in_header": header_len - 3,
        "empty": 0,
    }[cut]
    with pytest.raises(DecryptionError, match=r"truncated|authentication"):
        ring.decrypt_bytes(blob[:end])


def test_appended_bytes_are_detected() -> None:
    ring = keyring()
    blob = ring.encrypt_bytes(os.urandom(CHUNK + 1))
    with pytest.raises(DecryptionError):
        ring.decrypt_bytes(blob + ring.encrypt_bytes(b"more")[-(TAG_BYTES + 4) :])


def test_rotation_keeps_old_blobs_readable_and_writes_with_the_new_key() -> None:
    old_entry = generate_key_spec("2025")
    before = keyring(old_entry)
    old_blob = before.encrypt_bytes(b"written before rotation")
    after = keyring(f"{generate_key_spec('2026')},{old_entry}", active="2026")
    new_blob = after.encrypt_bytes(b"written after rotation")
    assert after.decrypt_bytes(old_blob) == b"written before rotation"
    assert after.decrypt_bytes(new_blob) == b"written after rotation"
    assert b"2026" in new_blob[:16] and b"2025" in old_blob[:16]
    with pytest.raises(UnknownKeyId):
        before.decrypt_bytes(new_blob)


def test_ciphertext_on_disk_does_not_contain_the_plaintext(samples_dir: Path, tmp_path: Path) -> None:
    ring = Keyring.from_spec(generate_key_spec("k1"))
    for sample in ("sample-01-dicom.dcm", "sample-02-dicom.dcm"):
        plaintext = (samples_dir / sample).read_bytes()
        target = tmp_path / sample
        with target.open("wb") as out:
            for piece in ring.encrypt_iter(pieces(plaintext, 65536)):
                out.write(piece)
        stored = target.read_bytes()
        assert is_encrypted(stored) and stored.startswith(MAGIC)
        assert b"DICM" not in stored
        for window in (plaintext[128:160], plaintext[len(plaintext) // 2 : len(plaintext) // 2 + 32]):
            assert window not in stored
        assert ring.decrypt_bytes(stored) == plaintext
    assert not is_encrypted(b"\x00" * 128 + b"DICM")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no key"),
        ("k1", "kid:base64key"),
        ("k1:not-base64!", "base64"),
        ("k1:AAAA", "32 bytes"),
        (f"{generate_key_spec('a')},{generate_key_spec('a')}", "twice"),
    ],
)
def test_malformed_key_configuration_is_rejected(spec: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message):
        parse_keys(spec)


def test_active_key_must_be_configured() -> None:
    with pytest.raises(KeyConfigError, match="BLOB_ACTIVE_KEY"):
        Keyring.from_spec(generate_key_spec("a"), "b")


def test_settings_read_generated_secret_files_and_refuse_without_them(tmp_path: Path) -> None:
    env = {"AUTH_SECRET_FILE": str(tmp_path / "auth"), "BLOB_KEYS_FILE": str(tmp_path / "keys")}
    with pytest.raises(ValueError, match="AUTH_SECRET is not set"):
        AuthSettings(auth_secret="", auth_secret_file=env["AUTH_SECRET_FILE"])
    with pytest.raises(ValueError, match="BLOB_KEYS is not set"):
        BlobKeySettings(blob_keys="", blob_keys_file=env["BLOB_KEYS_FILE"])
    created = ensure_local_secrets(env)
    assert sorted(created) == sorted([tmp_path / "auth", tmp_path / "keys"])
    assert (tmp_path / "auth").stat().st_mode & 0o077 == 0
    assert ensure_local_secrets(env) == []  # idempotent: never overwrites a key
    auth = AuthSettings(auth_secret="", auth_secret_file=env["AUTH_SECRET_FILE"])
    assert len(auth.auth_secret.get_secret_value()) >= 32
    keys = BlobKeySettings(blob_keys="", blob_keys_file=env["BLOB_KEYS_FILE"])
    assert keys.keyring().active == "k1"
    assert "k1" not in repr(keys.blob_keys) and auth.auth_secret.get_secret_value() not in repr(auth)


def test_short_auth_secret_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        AuthSettings(auth_secret="short")
