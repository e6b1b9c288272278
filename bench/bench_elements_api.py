"""The elements API under load: results_service and the gateway as real processes on 127.0.0.1.

A dedicated database (created, migrated, dropped) and AMQP prefix (deleted) keep the run apart
from anything else. 10 000 elements are created (half through the gateway, half directly
against results_service), then read one by one and listed page by page (100 rows) both ways in
the same run, so the gateway's cost shows as a ratio. Target: a list page of 100 rows has a
p99 under 50 ms through the gateway. The figures go into this benchmark's section of
bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import aio_pika
import aiohttp

from bench.report import write_section
from common.app.settings import BaseServiceSettings
from common.auth.identity import ROLE_HEADER, USER_HEADER
from common.messaging.broker import delete_topology, open_channel
from common.storage.crypto_keys import generate_key_spec
from results_service.db import apply_migrations, drop_database
from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
ELEMENTS = 10_000
GETS = 2_000
PAGE = 100
LIST_PASSES = 3
CONCURRENCY = 8
WARM_UP = 200
TARGET_P99_MS = 50.0
DEVICES = ("RX 1", "CT SCAN", "MRI")


@dataclass
class Timings:
    """Latencies (seconds) of one operation on one path, and the wall time of the whole batch."""

    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall


@contextlib.contextmanager
def services(env: dict[str, str], folder: Path) -> Iterator[None]:
    """results_service and the gateway as `python -m` processes, terminated on the way out."""
    processes = []
    try:
        for name, port in (("results_service", env["RESULTS_PORT"]), ("gateway", env["GATEWAY_PORT"])):
            log = (folder / f"{name}.log").open("wb")
            processes.append(
                subprocess.Popen([sys.executable, "-m", name], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
            wait_ready(f"http://127.0.0.1:{port}/readyz", folder / f"{name}.log")
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(url: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s; see {log}")


async def run_batch(count: int, request: Callable[[int], Awaitable[None]]) -> Timings:
    """`count` requests, CONCURRENCY at a time, each one timed."""
    timings = Timings()
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            started = time.perf_counter()
            await request(n)
            timings.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    timings.wall = time.perf_counter() - started
    return timings


def element(n: int) -> dict[str, object]:
    rng = random.Random(n)
    data = [" ".join(str(rng.randint(0, 100)) for _ in range(10)) for _ in range(5)]
    return {"id": f"bench-{n:05d}", "data": data, "deviceName": DEVICES[n % len(DEVICES)]}


async def expect(response: aiohttp.ClientResponse, status: int) -> bytes:
    body = await response.read()
    if response.status != status:
        raise RuntimeError(f"{response.method} {response.url}: {response.status} {body[:300]!r}")
    return body


async def measure(
    gateway: str, direct: str, users: tuple[dict[str, str], dict[str, str]]
) -> dict[tuple[str, str], Timings]:
    """Every operation, directly and through the gateway, alternating so neither gets a warmer machine.

    Both paths act as the same user (elements are owned): the gateway's bearer token, and directly
    the identity headers the gateway would forward for it.
    """
    results: dict[tuple[str, str], Timings] = {}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    identity, headers = users
    async with aiohttp.ClientSession(connector=connector) as session:
        bases = {"direct": (direct, identity), "gateway": (gateway, headers)}
        for base, extra in bases.values():  # warm both paths' pools and connections; not measured

            async def warm(n: int, base: str = base, extra: dict[str, str] = extra) -> None:
                async with session.get(f"{base}/api/elements/?limit=1", headers=extra) as r:
                    await expect(r, 200)

            await run_batch(WARM_UP, warm)
        half = ELEMENTS // 2
        for offset, (path, (base, extra)) in zip((0, half), bases.items(), strict=True):

            async def create(n: int, base: str = base, extra: dict[str, str] = extra, offset: int = offset) -> None:
                async with session.post(f"{base}/api/elements/", json=element(offset + n), headers=extra) as r:
                    await expect(r, 201)

            results[("create", path)] = await run_batch(half, create)
        picks = [random.Random(7).randrange(ELEMENTS) for _ in range(GETS)]
        for path, (base, extra) in bases.items():

            async def get(n: int, base: str = base, extra: dict[str, str] = extra) -> None:
                async with session.get(f"{base}/api/elements/bench-{picks[n]:05d}/", headers=extra) as r:
                    await expect(r, 200)

            results[("get", path)] = await run_batch(GETS, get)
        for path, (base, extra) in bases.items():
            results[("list", path)] = await list_all(session, base, extra)
    return results


async def list_all(session: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> Timings:
    """Follow `next` from the first page to the last, LIST_PASSES times; every row seen exactly once per pass."""
    timings = Timings()
    started = time.perf_counter()
    for _ in range(LIST_PASSES):
        link: str | None = f"/api/elements/?limit={PAGE}"
        seen = 0
        while link is not None:
            begun = time.perf_counter()
            async with session.get(base + link, headers=headers) as response:
                await expect(response, 200)
                page = await response.json()
            timings.latencies.append(time.perf_counter() - begun)
            seen += len(page["items"])
            link = page["next"]
        if seen != ELEMENTS:
            raise RuntimeError(f"listing saw {seen} rows, expected {ELEMENTS}")
    timings.wall = time.perf_counter() - started
    return timings


async def login(gateway: str, direct: str) -> tuple[dict[str, str], dict[str, str]]:
    """A user made through results_service's internal API, logged in through the gateway: its identity
    headers (for direct calls) and its Authorization header."""
    credentials = {"email": f"bench-{uuid.uuid4().hex[:8]}@example.org", "password": secrets.token_urlsafe(16)}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{direct}/internal/users", json={**credentials, "role": "user"}) as r:
            await expect(r, 201)
            identity = {USER_HEADER: (await r.json())["id"], ROLE_HEADER: "user"}
        async with session.post(f"{gateway}/api/auth/login", json=credentials) as r:
            await expect(r, 200)
            token = (await r.json())["access_token"]
    return identity, {"Authorization": f"Bearer {token}"}


async def delete_prefix(amqp_url: str, prefix: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await delete_topology(await open_channel(connection), prefix)


def report(results: dict[tuple[str, str], Timings], load: float) -> list[str]:
    lines = [
        f"Measured {date.today().isoformat()} on {os.cpu_count()} CPUs (load average {load:.1f} before the run), "
        f"Python {platform.python_version()}: "
        f"results_service and gateway as processes (LOG_LEVEL=INFO), {ELEMENTS} elements of 50 values, "
        f"{CONCURRENCY} concurrent clients for create and get, lists followed page by page ({PAGE} rows, "
        f"{LIST_PASSES} passes over all {ELEMENTS} rows).",
        "",
        "| operation | path | requests | req/s | p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for op in ("create", "get", "list"):
        for path in ("direct", "gateway"):
            t = results[(op, path)]
            lines.append(
                f"| {op} | {path} | {len(t.latencies)} | {t.rate:.0f} | {t.percentile(0.5):.2f} | "
                f"{t.percentile(0.99):.2f} |"
            )
    lines += ["", "Gateway overhead (gateway / direct):", ""]
    for op in ("create", "get", "list"):
        g, d = results[(op, "gateway")], results[(op, "direct")]
        p50, p99 = g.percentile(0.5) / d.percentile(0.5), g.percentile(0.99) / d.percentile(0.99)
        lines.append(f"- {op}: p50 x{p50:.2f}, p99 x{p99:.2f}, throughput x{g.rate / d.rate:.2f}")
    p99 = results[("list", "gateway")].percentile(0.99)
    verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
    lines += [
        "",
        f"- Target: a list page of {PAGE} rows through the gateway, p99 < {TARGET_P99_MS:.0f} ms: "
        f"{p99:.1f} ms, **{verdict}**.",
    ]
    return lines


INTRO = """`bench/bench_elements_api.py`: results_service and the gateway started as processes
(`python -m ...`) on free 127.0.0.1 ports against a database of their own (created, migrated,
dropped); a user logs in through the gateway. Half of the elements are created through the
gateway and half directly against results_service, then both paths are read and listed in the
same run; the ratio gateway / direct is the cost of the extra hop (token check, proxying,
streaming, logging). The load generator shares the machine's CPUs with both services."""


def main() -> None:
    base = BaseServiceSettings()
    database_url = f"{base.database_url.rsplit('/', 1)[0]}/dicomflow_bench_elements_{os.getpid()}"
    prefix = f"bench_{uuid.uuid4().hex[:10]}"
    results_port, gateway_port = free_port(), free_port()
    direct, gateway = f"http://127.0.0.1:{results_port}", f"http://127.0.0.1:{gateway_port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "AMQP_PREFIX": prefix,
        "RESULTS_PORT": str(results_port),
        "GATEWAY_PORT": str(gateway_port),
        "RESULTS_URL": direct,
        "AUTH_SECRET": os.environ.get("AUTH_SECRET") or secrets.token_urlsafe(48),
        "BLOB_KEYS": os.environ.get("BLOB_KEYS") or generate_key_spec("bench"),
        "RATE_LIMIT_PER_MINUTE": "1000000000",
        "RATE_LIMIT_BURST": "1000000",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    load = os.getloadavg()[0]  # other work on the machine skews every figure; say how busy it was
    asyncio.run(apply_migrations(database_url))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-elements-") as tmp:
            env["BLOB_DIR"] = str(Path(tmp) / "blobs")
            with services(env, Path(tmp)):

                async def run() -> dict[tuple[str, str], Timings]:
                    return await measure(gateway, direct, await login(gateway, direct))

                results = asyncio.run(run())
    finally:
        asyncio.run(drop_database(database_url))
        with contextlib.suppress(OSError, aio_pika.exceptions.AMQPError):
            asyncio.run(delete_prefix(base.amqp_url, prefix))
    lines = report(results, load)
    print("\n".join(lines))
    write_section("bench_elements_api", "Elements API through the gateway", lines, INTRO)


if __name__ == "__main__":
    main()
