"""A 2 GiB upload streamed through the running gateway and ingest_service: throughput and memory.

The body is one 4096-frame copy of sample-01 (2 GiB of pixel data) generated on the fly; the RSS
of the gateway and ingest_service is sampled before, during and after. Baseline measured in the
same run: hashing the same bytes and writing them to a file in this process (what ingest must
do at least), so the figure is a ratio, not an absolute that depends on the machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from common.storage.crypto_keys import generate_key_spec
from results_service.db import apply_migrations, drop_database
from tests.e2e.conftest import RunningSystem
from tests.e2e.test_upload_memory import MIB, big_dicom_parts, sample_rss, stream_body

FRAMES = 4096  # 2 GiB of pixel data


def _baseline(header: bytes, frame: bytes, folder: Path) -> float:
    """Seconds to hash and write the same bytes to a file (with fsync), in this process."""
    started = time.perf_counter()
    digest = hashlib.sha256(header)
    with (folder / "baseline.bin").open("wb") as out:
        out.write(header)
        for _ in range(FRAMES):
            digest.update(frame)
            out.write(frame)
        out.flush()
        os.fsync(out.fileno())
    (folder / "baseline.bin").unlink()
    return time.perf_counter() - started


async def _upload(system: RunningSystem, header: bytes, frame: bytes) -> tuple[float, dict[str, int], dict[str, int]]:
    user = await system.create_user("bench-big")
    services = ("gateway", "ingest_service")
    before = {name: system.rss(name) for name in services}
    peaks = dict(before)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(system, peaks, stop))
    headers = {**user.headers, "Content-Type": "application/dicom"}
    started = time.perf_counter()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{system.gateway_url}/api/uploads",
            data=stream_body(header, frame, FRAMES, hashlib.sha256()),
            headers=headers,
        ) as response,
    ):
        body = await response.json()
    elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    assert response.status == 202 and body["files"][0]["status"] == "accepted", body
    return elapsed, before, peaks


def main() -> None:
    os.environ.setdefault("AUTH_SECRET", secrets.token_urlsafe(48))
    os.environ.setdefault("BLOB_KEYS", generate_key_spec("bench"))  # blobs are encrypted at rest
    url = f"postgres://postgres@127.0.0.1:5432/dicomflow_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(apply_migrations(url))
    folder = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    header, frame = big_dicom_parts(FRAMES)
    size = len(header) + FRAMES * len(frame)
    system = RunningSystem(url, folder, {"UPLOAD_MAX_BYTES": str(8 * 1024**3), "LOG_LEVEL": "WARNING"})
    try:
        system.start_all()
        baseline = _baseline(header, frame, folder)
        elapsed, before, peaks = asyncio.run(_upload(system, header, frame))
    finally:
        system.stop_all()
        asyncio.run(drop_database(url))
    print(f"upload of {size / MIB:.0f} MiB through gateway -> ingest_service")
    print(f"  baseline (hash + write + fsync in-process): {size / MIB / baseline:.0f} MiB/s")
    print(f"  through the services: {size / MIB / elapsed:.0f} MiB/s ({baseline / elapsed:.2f}x the baseline)")
    for name in before:
        print(f"  {name}: RSS {before[name] / MIB:.0f} MiB before, peak {peaks[name] / MIB:.0f} MiB "
              f"(+{(peaks[name] - before[name]) / MIB:.1f} MiB)")  # fmt: skip
