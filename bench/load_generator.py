"""The one load generator of the accept-rate benchmark, for our gateway and for the Orthanc baseline alike.

Both servers get the same client code (one file per request, CLIENTS concurrent clients, each file
read from disk as it is sent), so a ratio between their rates reflects the servers, not the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

CLIENTS = 8


@dataclass(frozen=True)
class UploadTarget:
    """Where each file is posted, with which headers, and which answers (status, JSON body) count as accepted."""

    url: str
    headers: Mapping[str, str]
    accepted: Callable[[int, Any], bool]


async def upload_all(target: UploadTarget, paths: Sequence[Path], clients: int = CLIENTS) -> float:
    """Post every file as its own request with `clients` concurrent clients; seconds taken.
    Any answer the target does not accept stops the run: a rate of refused files would mean nothing."""
    queue = iter(paths)
    headers = {**target.headers, "Content-Type": "application/dicom"}

    async def client(session: aiohttp.ClientSession) -> None:
        for path in queue:
            async with session.post(target.url, data=io.BytesIO(path.read_bytes()), headers=headers) as response:
                body = await response.json(content_type=None)
                if not target.accepted(response.status, body):
                    raise RuntimeError(f"{path.name}: {response.status} {body}")

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return time.perf_counter() - started


async def timed_upload(
    target: UploadTarget, paths: Sequence[Path], cpu_seconds: Callable[[], dict[str, float]]
) -> dict[str, float]:
    """`upload_all`, with the CPU each part used meanwhile: {"accept": seconds, "cpu:<part>": ms per file}."""
    before = cpu_seconds()
    seconds = await upload_all(target, paths)
    after = cpu_seconds()
    per_file = {f"cpu:{name}": (after[name] - before[name]) / len(paths) * 1000 for name in before}
    return {"accept": seconds, **per_file}


def cpu_of(process: psutil.Process) -> float:
    """CPU seconds (user + system, all threads) used so far by `process`; 0 once it is gone."""
    with contextlib.suppress(psutil.Error):
        t = process.cpu_times()
        return float(t.user + t.system)
    return 0.0
