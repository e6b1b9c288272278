"""The elements API under load: the system's services as real processes on 127.0.0.1 (`bench/trees.py`).

A dedicated database (created, migrated, dropped) and AMQP prefix (deleted) keep the run apart
from anything else. 10 000 elements are created (half through the gateway, half directly
against results_service, as one user), then read one by one and listed page by page (100 rows)
both ways in the same run, so the gateway's cost shows as a ratio. Target: a list page of 100
rows has a p99 under 50 ms through the gateway. The figures go into bench/README.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import aiohttp

from bench.report import write_section
from bench.trees import tree_system
from common.auth.identity import Caller
from single_host.processes import ROOT, RunningSystem

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


class SignedHeaders(Mapping[str, str]):
    """The headers of a direct call as the gateway sends them for a user: a service token vouching for them,
    signed again before it expires (the benchmark outlives one token)."""

    def __init__(self, system: RunningSystem, caller: Caller) -> None:
        self.system = system
        self.caller = caller

    def _current(self) -> dict[str, str]:
        return self.system.service_headers(self.caller)

    def __getitem__(self, name: str) -> str:
        return self._current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


async def measure(
    gateway: str, direct: str, users: tuple[Mapping[str, str], Mapping[str, str]]
) -> dict[tuple[str, str], Timings]:
    """Every operation, directly and through the gateway, alternating so neither gets a warmer machine.

    Both paths act as the same user (elements are owned): the gateway's bearer token, and directly
    the service token the gateway would forward for it.
    """
    results: dict[tuple[str, str], Timings] = {}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    identity, headers = users
    async with aiohttp.ClientSession(connector=connector) as session:
        bases = {"direct": (direct, identity), "gateway": (gateway, headers)}
        for base, extra in bases.values():  # warm both paths' pools and connections; not measured

            async def warm(n: int, base: str = base, extra: Mapping[str, str] = extra) -> None:
                async with session.get(f"{base}/api/elements/?limit=1", headers=extra) as r:
                    await expect(r, 200)

            await run_batch(WARM_UP, warm)
        half = ELEMENTS // 2
        for offset, (path, (base, extra)) in zip((0, half), bases.items(), strict=True):

            async def create(n: int, base: str = base, extra: Mapping[str, str] = extra, offset: int = offset) -> None:
                async with session.post(f"{base}/api/elements/", json=element(offset + n), headers=extra) as r:
                    await expect(r, 201)

            results[("create", path)] = await run_batch(half, create)
        picks = [random.Random(7).randrange(ELEMENTS) for _ in range(GETS)]
        for path, (base, extra) in bases.items():

            async def get(n: int, base: str = base, extra: Mapping[str, str] = extra) -> None:
                async with session.get(f"{base}/api/elements/bench-{picks[n]:05d}/", headers=extra) as r:
                    await expect(r, 200)

            results[("get", path)] = await run_batch(GETS, get)
        for path, (base, extra) in bases.items():
            results[("list", path)] = await list_all(session, base, dict(extra))
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


def report(results: dict[tuple[str, str], Timings], load: float) -> list[str]:
    lines = [
        f"Measured {date.today().isoformat()} on {os.cpu_count()} CPUs (load average {load:.1f} before the run), "
        f"Python {platform.python_version()}: "
        f"the services as processes (LOG_LEVEL=INFO), {ELEMENTS} elements of 50 values, "
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


def main() -> None:
    load = os.getloadavg()[0]  # other work on the machine skews every figure; say how busy it was
    with (
        tempfile.TemporaryDirectory(prefix="bench-elements-") as tmp,
        tree_system(ROOT, Path(tmp) / "elements") as system,
    ):

        async def run() -> dict[tuple[str, str], Timings]:
            user = await system.create_user("bench")
            identity = SignedHeaders(system, Caller(user_id=user.id))
            return await measure(system.gateway_url, system.results_url, (identity, user.headers))

        results = asyncio.run(run())
    lines = report(results, load)
    print("\n".join(lines))
    write_section("bench_elements_api", "Elements API through the gateway", lines)


if __name__ == "__main__":
    main()
