"""Clients that upload a batch through the gateway and retry what a fault cut off, as a careful client would.

Each file goes in a request of its own (`application/dicom`). An answer that says "try again" (a 5xx,
429, a refused or cut connection, no answer in time) is counted as a client error seen and the file
is sent again after a short backoff, until a 202 names its instance. A resend of bytes whose first
request registered before the cut is answered `duplicate` with the same instance: the ledger keeps
the instance a file ended as, whichever the answer. Any other answer (a 4xx) is not retried: the
file is refused, which the drill reports.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

DICOM = "application/dicom"
REQUEST_TIMEOUT = 30.0
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 2.0


@dataclass
class Ledger:
    """What the clients were told: per file (by sha256) its instance, and every error they saw."""

    instances: dict[str, str] = field(default_factory=dict)  # sha256 -> instance id of its 202
    accepted: dict[str, str] = field(default_factory=dict)  # sha256 -> instance id where the entry said accepted
    refused: dict[str, str] = field(default_factory=dict)  # sha256 -> the 4xx answer that ended its tries
    errors: Counter[str] = field(default_factory=Counter)  # "503", "connection", "timeout", ... -> times seen
    stopped_uploads: set[str] = field(default_factory=set)  # upload ids of problem answers that named one

    @property
    def answered(self) -> int:
        return len(self.instances) + len(self.refused)

    @property
    def client_errors(self) -> int:
        return sum(self.errors.values())


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _send(session: aiohttp.ClientSession, url: str, headers: dict[str, str], data: bytes) -> tuple[int, Any]:
    async with session.post(url, data=data, headers={**headers, "Content-Type": DICOM}) as response:
        text = await response.text()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


async def upload_one(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], data: bytes, ledger: Ledger
) -> None:
    """Send one file until a 202 (or a 4xx that is not 429) answers it; record the outcome in `ledger`."""
    sha = sha256_of(data)
    backoff = BACKOFF_FIRST
    while True:
        try:
            status, body = await _send(session, url, headers, data)
        except aiohttp.ClientError as exc:  # refused, reset, or an answer cut off
            ledger.errors["connection" if isinstance(exc, aiohttp.ClientConnectionError) else type(exc).__name__] += 1
        except TimeoutError:
            ledger.errors["timeout"] += 1
        else:
            if isinstance(body, dict) and isinstance(body.get("upload_id"), str) and status != 202:
                ledger.stopped_uploads.add(body["upload_id"])
            if status == 202:
                [entry] = body["files"]
                if entry["status"] not in ("accepted", "duplicate"):
                    ledger.refused[sha] = f"202 {entry['status']}: {entry.get('reason')}"
                    return
                ledger.instances[sha] = entry["instance_id"]
                if entry["status"] == "accepted":
                    ledger.accepted[sha] = entry["instance_id"]
                return
            if status < 500 and status != 429:
                ledger.refused[sha] = f"{status}: {body}"
                return
            ledger.errors[str(status)] += 1
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX)


async def upload_batch(
    gateway_url: str, headers: dict[str, str], files: Sequence[bytes], ledger: Ledger, *, clients: int = 4
) -> None:
    """`clients` concurrent clients share `files` (each sends its share one after the other)."""
    url = f"{gateway_url}/api/uploads"
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)

    async def client(mine: Sequence[bytes]) -> None:
        # A session per client and no kept-alive connection across a fault: each try opens its own.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            for data in mine:
                await upload_one(session, url, headers, data, ledger)

    await asyncio.gather(*(client(files[i::clients]) for i in range(clients)))
