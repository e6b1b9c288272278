"""A large upload streams through the gateway and ingest_service without their memory growing.

The body (one 512 MiB multi-frame DICOM file, generated on the fly by an async generator, never
held whole anywhere) goes through the real gateway to the real ingest_service; the RSS of both
processes is sampled before, during and after. `bench/bench_upload_memory.py` does the same with 2 GiB.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import struct
from collections.abc import AsyncIterator

import aiohttp
import pydicom

from common.app.secret_settings import BlobKeySettings
from common.storage.blobs import BlobStore
from samples.make_instances import SAMPLE_01
from tests.e2e.conftest import RunningSystem

MIB = 1024 * 1024
FRAME_BYTES = 512 * 512 * 2  # sample-01: 512 x 512, 16 bits allocated
FRAMES = 1024  # 512 MiB of pixel data
CHUNK = 256 * 1024
MAX_GROWTH = 100 * MIB


def big_dicom_parts(frames: int) -> tuple[bytes, bytes]:
    """(header up to and including the pixel data element's header, one frame) of a `frames`-frame copy of sample-01."""
    ds = pydicom.dcmread(SAMPLE_01)
    frame = ds.PixelData
    del ds.PixelData
    ds.NumberOfFrames = frames
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frames * len(frame))
    return buffer.getvalue() + element, frame


async def stream_body(header: bytes, frame: bytes, frames: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    digest.update(header)
    yield header
    for _ in range(frames):
        for start in range(0, len(frame), CHUNK):
            chunk = frame[start : start + CHUNK]
            digest.update(chunk)
            yield chunk


async def sample_rss(system: RunningSystem, peaks: dict[str, int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for name in peaks:
            peaks[name] = max(peaks[name], system.rss(name))
        await asyncio.sleep(0.05)


async def test_512_mib_upload_leaves_gateway_and_ingest_memory_flat(start_system) -> None:
    system: RunningSystem = start_system()
    user = await system.create_user("big")
    header, frame = big_dicom_parts(FRAMES)
    size = len(header) + FRAMES * len(frame)
    services = ("gateway", "ingest_service")
    before = {name: system.rss(name) for name in services}
    peaks = dict(before)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(system, peaks, stop))
    digest = hashlib.sha256()
    headers = {**user.headers, "Content-Type": "application/dicom"}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{system.gateway_url}/api/uploads",
                data=stream_body(header, frame, FRAMES, digest),
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
