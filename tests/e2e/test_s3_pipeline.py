"""The running system on the S3 backend: uploads through the gateway reach `done`, their blobs are in the bucket
(moto's server on 127.0.0.1), none on disk, and results_service streams files and previews back from it."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pydicom
from PIL import Image

from common.app.blob_settings import BlobSettings, open_blob_store
from common.app.secret_settings import BlobKeySettings
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_instances
from tests.e2e.conftest import RunningSystem
from tests.e2e.test_processing import api, upload, wait_final
from tests.s3_server import MotoServer, moto_server

__all__ = ["moto_server"]


async def test_uploads_reach_done_with_their_blobs_in_the_bucket_not_on_disk(
    start_system: Callable[..., RunningSystem], moto_server: MotoServer, tmp_path: Path
) -> None:
    bucket = moto_server.make_bucket()
    staging = tmp_path / "staging"
    system_env = {**moto_server.blob_env(bucket, "blobs"), "BLOB_STAGING_DIR": str(staging)}
    system = start_system(**system_env)
    user = await system.create_user("s3user")
    files = [*iter_instances(SAMPLE_01, 3, prefix="s3-a"), *iter_instances(SAMPLE_02, 1, prefix="s3-b")]
    ids: list[str] = []
    for _, data in files:
        body = await upload(system, user, data)
        [accepted] = body["files"]
        assert accepted["status"] == "accepted", accepted
        ids.append(accepted["instance_id"])
    views = await wait_final(system, user, ids, timeout=120)
    assert [v["status"] for v in views] == ["done"] * len(files), [v.get("reason") for v in views]

    stored = {key.rsplit("/", 1)[-1] for key in moto_server.keys(bucket, "blobs/")}
    originals = {hashlib.sha256(data).hexdigest() for _, data in files}
    assert originals <= stored
    store = open_blob_store(BlobSettings(**{k.lower(): v for k, v in system_env.items()}), BlobKeySettings().keyring())
    for preview in stored - originals:  # the rest are previews (the same pixels give the same PNG: one blob)
        assert store.read_bytes_sync(preview).startswith(b"\x89PNG")
    assert len(stored - originals) == 2
    assert moto_server.open_uploads(bucket) == 0
    assert not system.blob_dir.exists() or [p for p in system.blob_dir.rglob("*") if p.is_file()] == []
    assert [p for p in staging.rglob("*") if p.is_file()] == []  # every staged upload was committed and removed

    status, download = await api(system, user, f"/api/instances/{ids[0]}/file")
    assert status == 200
    assert (
        pydicom.dcmread(io.BytesIO(download)).SOPInstanceUID == pydicom.dcmread(io.BytesIO(files[0][1])).SOPInstanceUID
    )
    status, png = await api(system, user, f"/api/instances/{ids[-1]}/preview.png")
    assert status == 200 and Image.open(io.BytesIO(png)).format == "PNG"
