"""A large upload streams through the gateway and ingest_service without their memory growing.

The body (one 512 MiB multi-frame DICOM file, generated on the fly by an async generator, never
held whole anywhere) goes through the real gateway to the real ingest_service; the RSS of both
processes is sampled before, during and after. `bench/bench_upload_memory.py` does the same with 2 GiB.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp

from common.app.secret_settings import BlobKeySettings
from common.storage.blobs import BlobStore
from samples.big_instance import MIB, big_instance_parts, stream_instance
from single_host.processes import RunningSystem

FRAMES = 1024  # 512 MiB of pixel data
MAX_GROWTH = 100 * MIB


async def test_512_mib_upload_leaves_gateway_and_ingest_memory_flat(start_system) -> None:
    system: RunningSystem = start_system()
    user = await system.create_user("big")
    header, frame = big_instance_parts(FRAMES)
    size = len(header) + FRAMES * len(frame)
    services = ("gateway", "ingest_service")
    before = {name: system.rss(name) for name in services}
    peaks = dict(before)
    stop = asyncio.Event()
    sampler = asyncio.create_task(system.sample_rss(peaks, stop))
    digest = hashlib.sha256()
    headers = {**user.headers, "Content-Type": "application/dicom"}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{system.gateway_url}/api/uploads",
                data=stream_instance(header, frame, FRAMES, digest),
                headers=headers,
            ) as response,
        ):
            status, body = response.status, await response.json()
    finally:
        stop.set()
        await sampler
    after = {name: system.rss(name) for name in services}
    assert status == 202, body
    [file] = body["files"]
    assert (file["status"], file["sha256"]) == ("accepted", digest.hexdigest())
    # Stored encrypted: the plaintext view has the upload's size and ends with its last frame.
    store = BlobStore(system.blob_dir, BlobKeySettings().keyring())
    with store.open(file["sha256"]) as stored:
        assert stored.seek(0, os.SEEK_END) == size
        stored.seek(size - len(frame))
        assert stored.read() == frame
    growth = {name: peaks[name] - before[name] for name in services}
    print(f"uploaded {size / MIB:.0f} MiB; RSS before {before}, peak {peaks}, after {after}; growth {growth}")
    for name in services:
        assert growth[name] < MAX_GROWTH, f"{name} grew by {growth[name] / MIB:.0f} MiB during the upload"
