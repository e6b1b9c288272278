"""What a user does to the smoke's deployment: log in as the first admin, upload the two samples and a zip of
generated instances through the gateway, then read every instance back until none is unfinished."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_mix

UNFINISHED = ("received", "queued", "processing")
POLL_SECONDS = 1.0


@dataclass
class Traffic:
    """What the uploads were answered and what the instances ended as."""

    uploads: list[str] = field(default_factory=list)  # "sample-01-dicom.dcm: 202, 1 accepted"
    upload_ids: list[str] = field(default_factory=list)
    accepted: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    workers: Counter[str] = field(default_factory=Counter)  # result.worker -> instances
    settle_seconds: float | None = None
    failures: list[str] = field(default_factory=list)  # "instance <id>: <reason>"


def zip_of(count: int) -> bytes:
    """A zip archive of `count` new instances, half from each sample (fresh UIDs: none is a duplicate)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in iter_mix([(SAMPLE_01, count // 2), (SAMPLE_02, count - count // 2)]):
            archive.writestr(name, data)
    return buffer.getvalue()


async def login(session: aiohttp.ClientSession, gateway: str, email: str, password: str) -> dict[str, str]:
    async with session.post(f"{gateway}/api/auth/login", json={"email": email, "password": password}) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"login as {email}: {response.status} {body}")
    return {"Authorization": f"Bearer {body['access_token']}"}


async def _upload(
    session: aiohttp.ClientSession, gateway: str, headers: dict[str, str], label: str, data: bytes, kind: str
) -> tuple[str, int, str]:
    async with session.post(f"{gateway}/api/uploads", data=data, headers={**headers, "Content-Type": kind}) as response:
        body: Any = await response.json(content_type=None)
    if response.status != 202:
        raise RuntimeError(f"upload of {label}: {response.status} {body}")
    statuses = Counter(entry["status"] for entry in body["files"])
    return (
        body["upload_id"],
        statuses["accepted"],
        f"{label}: 202, " + ", ".join(f"{n} {s}" for s, n in statuses.items()),
    )


async def _instances(session: aiohttp.ClientSession, gateway: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every instance of the admin's, page by page."""
    items: list[dict[str, Any]] = []
    path: str | None = "/api/instances?limit=100"
    while path:
        async with session.get(f"{gateway}{path}", headers=headers) as response:
            page = await response.json()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status} {page}")
        items += page["items"]
        path = page["next"]
    return items


async def drive(gateway: str, email: str, password: str, generated: int, settle_timeout: float) -> Traffic:
    """Upload the samples one by one and the zip, then wait until every instance is done or failed."""
    traffic = Traffic()
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        headers = await login(session, gateway, email, password)
        bodies = [
            (SAMPLE_01.name, SAMPLE_01.read_bytes(), "application/dicom"),
            (SAMPLE_02.name, SAMPLE_02.read_bytes(), "application/dicom"),
            (f"a zip of {generated} generated instances", zip_of(generated), "application/zip"),
        ]
        started = time.monotonic()
        for label, data, kind in bodies:
            upload_id, accepted, line = await _upload(session, gateway, headers, label, data, kind)
            traffic.upload_ids.append(upload_id)
            traffic.accepted += accepted
            traffic.uploads.append(line)
        deadline = started + settle_timeout
        while True:
            items = await _instances(session, gateway, headers)
            traffic.statuses = Counter(item["status"] for item in items)
            if len(items) >= traffic.accepted and not any(traffic.statuses[s] for s in UNFINISHED):
                traffic.settle_seconds = time.monotonic() - started
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
        for item in items:
            if item["status"] == "done" and item.get("result"):
                traffic.workers[item["result"]["worker"]] += 1
            elif item["status"] == "failed":
                traffic.failures.append(f"instance {item['id']}: {item.get('reason')}")
    return traffic
