"""A 2 GiB upload streamed through the running gateway and ingest_service: throughput, and memory that stays flat.

The body is one 4096-frame copy of sample-01 (2 GiB of pixel data) generated on the fly
(`samples/big_instance.py`); the RSS of the gateway and ingest_service is sampled before and
during the upload. Baseline measured in the same run: hashing the same bytes and writing them to
a file with fsync in this process (what ingest must do at least), so the rate is a ratio. The
test suite does the same with 512 MiB (`tests/e2e/test_upload_memory.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.report import write_section
from bench.trees import tree_system
from samples.big_instance import MIB, big_instance_parts, stream_instance
from single_host.processes import ROOT, RunningSystem

FRAMES = 4096  # 2 GiB of pixel data
SERVICES = ("gateway", "ingest_service")


def baseline_seconds(header: bytes, frame: bytes, folder: Path) -> float:
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


async def upload(system: RunningSystem, header: bytes, frame: bytes) -> tuple[float, dict[str, int], dict[str, int]]:
    """Seconds the upload took, and each service's RSS before it and at its peak during it."""
    user = await system.create_user("bench-big")
    before = {name: system.rss(name) for name in SERVICES}
    peaks = dict(before)
    stop = asyncio.Event()
    sampler = asyncio.create_task(system.sample_rss(peaks, stop))
    headers = {**user.headers, "Content-Type": "application/dicom"}
    started = time.perf_counter()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{system.gateway_url}/api/uploads",
                data=stream_instance(header, frame, FRAMES, hashlib.sha256()),
                headers=headers,
            ) as response,
        ):
            body = await response.json()
    finally:
        stop.set()
        await sampler
    if response.status != 202 or body["files"][0]["status"] != "accepted":
        raise RuntimeError(f"upload refused: {response.status} {body}")
    return time.perf_counter() - started, before, peaks


def main() -> None:
    header, frame = big_instance_parts(FRAMES)
    size = (len(header) + FRAMES * len(frame)) / MIB
    env = {"UPLOAD_MAX_BYTES": str(8 * 1024**3), "LOG_LEVEL": "WARNING"}
    with (
        tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp,
        tree_system(ROOT, Path(tmp) / "upload", env) as system,
    ):
        baseline = baseline_seconds(header, frame, Path(tmp))
        elapsed, before, peaks = asyncio.run(upload(system, header, frame))
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs: one {size:.0f} MiB instance "
        "(4096 frames of sample-01) posted to the gateway's `/api/uploads`, all services as processes.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| baseline: hash + write + fsync the same bytes in one process | {size / baseline:.0f} MiB/s |",
        f"| through the gateway and ingest_service (accepted: stored, registered, queued) | {size / elapsed:.0f} "
        f"MiB/s ({baseline / elapsed:.2f}x the baseline) |",
        *[
            f"| {name} RSS | {before[name] / MIB:.0f} MiB before, {peaks[name] / MIB:.0f} MiB peak "
            f"(+{(peaks[name] - before[name]) / MIB:.1f} MiB) |"
            for name in SERVICES
        ],
    ]
    print("\n".join(lines))
    write_section("bench_upload_memory", "Large streamed upload", lines)


if __name__ == "__main__":
    main()
