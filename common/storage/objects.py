"""Where sealed blobs are kept: the object backend a `BlobStore` commits to and reads from.

The store seals and hashes (one code path, `common.storage.blobs`); a backend only keeps opaque
ciphertext under a key (`ab/cd/<sha256>`): it makes a sealed staged file visible under its key all at
once (or not at all), answers whether a key exists, and opens a key as a seekable ciphertext reader.
Two backends: `LocalObjects` (a directory, renames) and `common.storage.s3_objects.S3Objects` (any
S3-compatible store, multipart uploads and ranged reads). Both are picklable, so a processor's worker
process can be handed the store it reads from.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Protocol

from common.storage.blob_errors import BlobNotFound


def object_key(sha256: str) -> str:
    """The key of a blob in every backend: two levels of fan-out, then the digest (`ab/cd/abcd...`)."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


class ObjectBackend(Protocol):
    """Keeps sealed blobs under their keys (see the module's docstring). Blocking: the store calls it in threads."""

    def exists(self, key: str) -> bool:
        """True when an object is stored under `key`."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Make the sealed file at `path` visible under `key` all at once; a no-op when `key` exists already.

        `path` may be moved away; the caller removes whatever is left of it."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A seekable reader of the ciphertext under `key` (close it); BlobNotFound when there is none."""
        ...

    def describe(self) -> str:
        """Where the objects are, for logs (no secrets)."""
        ...


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry durable: fsync the directory that holds it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """Create `path` and its missing parents, each made durable in its parent (a blob's rename needs them)."""
    if path.is_dir():
        return
    _make_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
        _fsync_dir(path.parent)


class LocalObjects:
    """Objects as files under `root` (`root/ab/cd/<sha256>`), committed by an atomic rename from the same filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """The file of `key` (whether or not it exists)."""
        return self.root / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def put_file(self, key: str, path: Path) -> None:
        target = self.path(key)
        if target.is_file():  # idempotent: the same plaintext is stored already
            return
        _make_dirs(target.parent)
        path.replace(target)
        _fsync_dir(target.parent)

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(key.rsplit("/", 1)[-1]) from exc

    def describe(self) -> str:
        return f"file://{self.root.resolve()}"
