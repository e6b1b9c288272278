"""The DICOM pipeline under load: 700 generated instances uploaded through the gateway, then processed.

All four services run as real processes (the e2e harness, `tests/e2e/conftest.py`) against a
database and AMQP prefix of their own. 700 instances (500 from sample-01, 200 from sample-02, new
UIDs) are uploaded one file per request by 8 concurrent clients while no processor runs (so the
accept rate is the door's alone); then the processors start and the time until every instance is
`done` is measured, once with 1 processor and once with 2 (each round uploads as a new user, so the
same bytes make new instances). In the same run a bare pydicom + numpy loop computes the same
figures over the same files, in one process and in a pool of 2, so the pipeline's rate is a ratio.
The figures go into this benchmark's section of bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import aiohttp
import asyncpg
import numpy as np
import psutil
import pydicom
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import iter_pixels, pixel_array

from bench.report import write_section
from common.crypto import generate_key_spec
from common.imaging import HISTOGRAM_BINS
from common.settings import BaseServiceSettings
from results_service.db import apply_migrations, drop_database
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_mix, write_files
from tests.e2e.conftest import ROOT, RunningSystem, User, free_port

COUNTS = ((SAMPLE_01, 500), (SAMPLE_02, 200))
CLIENTS = 8
TARGET_ACCEPT_PER_S = 300
TARGET_POOL_RATIO = 0.8


def bare_figures(path: Path, plugin: str = "") -> int:
    """What a lean bare script computes per file: decode all frames at once, float64 min/max/mean/std,
    the normalised four derived from them (no second array), the 64-bin histogram."""
    ds = pydicom.dcmread(path)
    array = pixel_array(ds, decoding_plugin=plugin) if plugin else ds.pixel_array
    x = array.astype(np.float64)
    low, high, mean, std = x.min(), x.max(), x.mean(), x.std()
    span = high - low
    normalized = (0.0, 1.0, (mean - low) / span, std / span) if span else (0.0, 0.0, 0.0, 0.0)
    np.histogram(array, HISTOGRAM_BINS, (low, high))
    return 4 + len(normalized)


def bare_pillow(path: Path) -> int:
    """The bare loop with the decoder the processor prefers for 8-bit JPEG (Pillow)."""
    return bare_figures(path, "pillow" if "sample-02" in path.name else "")


def time_bare(paths: list[Path], workers: int, fn: Callable[[Path], int]) -> float:
    """Seconds for the bare loop over `paths` in one process or a pool (pool start-up included)."""
    started = time.perf_counter()
    if workers == 1:
        for path in paths:
            fn(path)
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(fn, paths, chunksize=4)
    return time.perf_counter() - started


def decoder_times() -> dict[str, float]:
    """Best-of-5 seconds to decode all 96 JPEG Baseline frames of sample-02 with each installed plugin."""
    syntax = pydicom.dcmread(SAMPLE_02, stop_before_pixels=True).file_meta.TransferSyntaxUID
    times = {}
    for plugin in get_decoder(syntax).available_plugins:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for _frame in iter_pixels(SAMPLE_02, decoding_plugin=plugin):
                pass
            runs.append(time.perf_counter() - started)
        times[plugin] = min(runs)
    return times


CPU_PARTS = ("gateway", "ingest_service", "results_service", "rabbitmq", "postgres", "load generator")


def cpu_seconds(system: RunningSystem) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each part of the accept path, this benchmark's own process
    (the load generator) included; RabbitMQ and PostgreSQL are the machine's shared servers."""
    times = {name: _cpu(psutil.Process(system.pid(name))) for name in CPU_PARTS[:3]}
    times["rabbitmq"] = sum(_cpu(p) for p in _processes(lambda p: "beam.smp" in " ".join(p.info["cmdline"] or [])))
    times["postgres"] = sum(_cpu(p) for p in _processes(lambda p: p.info["username"] == "postgres"))
    times["load generator"] = _cpu(psutil.Process())
    return times


def _cpu(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        t = process.cpu_times()
        return float(t.user + t.system)
    return 0.0


def _processes(keep: Callable[[psutil.Process], bool]) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline", "username"]) if keep(p)]


async def upload_all(system: RunningSystem, user: User, paths: list[Path]) -> float:
    """Upload every file as its own request with CLIENTS concurrent clients; seconds taken."""
    queue = iter(paths)
    headers = {**user.headers, "Content-Type": "application/dicom"}
    url = f"{system.gateway_url}/api/uploads"

    async def client(session: aiohttp.ClientSession) -> None:
        for path in queue:
            async with session.post(url, data=io.BytesIO(path.read_bytes()), headers=headers) as response:
                body = await response.json()
                if response.status != 202 or body["files"][0]["status"] != "accepted":
                    raise RuntimeError(f"{path.name}: {response.status} {body}")

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
    return time.perf_counter() - started


async def wait_all_done(database_url: str, user_id: str, count: int, timeout: float = 600) -> float:
    """Seconds until the user's `count` instances are all final (checked in PostgreSQL every 50 ms)."""
    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    started = time.perf_counter()
    try:
        while True:
            final = await conn.fetchval(
                "SELECT count(*) FROM instances WHERE owner = $1 AND status IN ('done', 'failed')", user_id
            )
            if final >= count:
                failed = await conn.fetchval(
                    "SELECT count(*) FROM instances WHERE owner = $1 AND status = 'failed'", user_id
                )
                if failed:
                    raise RuntimeError(f"{failed} instances failed")
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"only {final}/{count} done after {timeout} s")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def start_extra_processor(system: RunningSystem) -> subprocess.Popen[bytes]:
    """A second processor_service process (own health port) beside the harness's one."""
    env = {**system.env, "PROCESSOR_PORT": str(free_port())}
    log = (system.folder / "processor_service-2.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "processor_service"], cwd=ROOT, env=env, stdout=log, stderr=log)


async def pipeline_round(
    system: RunningSystem, database_url: str, paths: list[Path], processors: int
) -> dict[str, float]:
    """Upload with no processor running, then start `processors` and time until all are done."""
    user = await system.create_user(f"bench-{processors}")
    before = cpu_seconds(system)
    accept = await upload_all(system, user, paths)
    after = cpu_seconds(system)
    cpu = {name: (after[name] - before[name]) / len(paths) * 1000 for name in CPU_PARTS}
    extra = None
    started = time.perf_counter()
    system.start("processor_service", wait=False)
    if processors == 2:
        extra = start_extra_processor(system)
    try:
        await wait_all_done(database_url, user.id, len(paths))
        processing = time.perf_counter() - started  # process start-up included
    finally:
        system.stop("processor_service")
        if extra is not None:
            extra.terminate()
            extra.wait(15)
    return {"accept": accept, "processing": processing, **{f"cpu:{name}": ms for name, ms in cpu.items()}}


ROUND_BYTES = {1: "new bytes", 2: "the same bytes for another owner, blobs already stored"}


def cpu_table(rounds: dict[int, dict[str, float]]) -> list[str]:
    """CPU milliseconds per accepted file of each part of the accept path, per upload round."""
    lines = [
        "CPU per accepted file during the uploads (ms, user + system; psutil):",
        "",
        "| round | " + " | ".join(CPU_PARTS) + " | total |",
        "|---|" + "---|" * (len(CPU_PARTS) + 1),
    ]
    for processors, figures in rounds.items():
        parts = [figures[f"cpu:{name}"] for name in CPU_PARTS]
        cells = " | ".join(f"{ms:.2f}" for ms in parts)
        lines.append(f"| {processors} ({ROUND_BYTES[processors].split(',')[0]}) | {cells} | {sum(parts):.2f} |")
    return lines


def report(
    n: int, megabytes: float, rounds: dict[int, dict[str, float]], bare: dict[str, float], decoders: dict[str, float]
) -> list[str]:
    load = os.getloadavg()[0]
    lines = [
        f"Measured {date.today().isoformat()} on {os.cpu_count()} CPUs (load average {load:.1f} after the run), "
        f"Python {platform.python_version()}: {n} instances ({megabytes:.0f} MB; 500 from sample-01, 200 from "
        f"sample-02), {CLIENTS} concurrent clients, one file per request, all four services as processes "
        "(LOG_LEVEL=INFO), PROCESSOR_CONCURRENCY=2 per processor.",
        "",
        "| phase | seconds | instances/s | MB/s |",
        "|---|---|---|---|",
    ]
    for processors, figures in rounds.items():
        accept = figures["accept"]
        lines.append(
            f"| upload through the gateway (round {processors}: {ROUND_BYTES[processors]}) | {accept:.1f} | "
            f"{n / accept:.0f} | {megabytes / accept:.0f} |"
        )
    for processors, figures in rounds.items():
        seconds = figures["processing"]
        lines.append(
            f"| processing, {processors} processor(s), until all `done` | {seconds:.1f} | {n / seconds:.1f} | "
            f"{megabytes / seconds:.0f} |"
        )
    for name, seconds in bare.items():
        lines.append(f"| bare {name} | {seconds:.1f} | {n / seconds:.1f} | {megabytes / seconds:.0f} |")
    lines += ["", *cpu_table(rounds)]
    best_accept = max(n / f["accept"] for f in rounds.values())
    best_rate = max(n / f["processing"] for f in rounds.values())
    pool_rate = n / bare["pydicom+numpy, pool of 2, Pillow for JPEG"]
    pool_default = n / bare["pydicom+numpy, pool of 2, default decoder"]
    lines += [
        "",
        f"- Accept rate: {best_accept:.0f} instances/s (round 1, new bytes: {n / rounds[1]['accept']:.0f}/s); "
        f"target {TARGET_ACCEPT_PER_S}/s: **{'met' if best_accept >= TARGET_ACCEPT_PER_S else 'NOT met'}** "
        f"({best_accept / TARGET_ACCEPT_PER_S:.2f}x); {best_accept / pool_rate:.1f}x the bare pool's files/s.",
        f"- Processing: {best_rate:.1f} files/s = **{best_rate / pool_rate:.2f}x** the bare pool of 2 with the same "
        f"decoder ({best_rate / pool_default:.2f}x the bare pool with pydicom's default decoder); target "
        f"{TARGET_POOL_RATIO}x: **{'met' if best_rate / pool_rate >= TARGET_POOL_RATIO else 'NOT met'}**.",
        f"- 2 processors / 1 processor: {rounds[1]['processing'] / rounds[2]['processing']:.2f}x "
        "(both share the same 2 CPUs, so no gain is expected here: processors scale across machines).",
        "- Why the pipeline beats the bare loop: the bare loop turns all frames into one float64 array "
        "(200 MB for sample-02) and passes over it several times; common.imaging counts values frame by frame "
        "(bincount) and derives exact figures from that table.",
        "- The accept rate is bound by CPU: the services, RabbitMQ, PostgreSQL and the load generator share the "
        "2 cores (table above; round 1 also writes every file: encryption, page cache and fsync).",
        "",
        "JPEG Baseline decoders on sample-02 (96 frames of 512 x 512, 8-bit), best of 5, frame by frame:",
        "",
        "| pydicom plugin | seconds | ms/frame |",
        "|---|---|---|",
        *[
            f"| {name} | {sec:.3f} | {sec / 96 * 1000:.2f} |"
            for name, sec in sorted(decoders.items(), key=lambda i: i[1])
        ],
        "",
        "common.imaging prefers the fastest (Pillow, i.e. libjpeg-turbo) for 8-bit JPEG; its output differs from",
        "pylibjpeg's by at most one grey level on some pixels (both are conformant IDCTs).",
    ]
    return lines


INTRO = """`bench/bench_pipeline.py`: the four services as processes (the e2e harness) on a database and AMQP
prefix of their own; uploads first (no processor running), then processing timed from the start of the
processor process(es) until PostgreSQL shows every instance `done` (process start-up, the status
events, the result batches and the PNG previews included). The bare baselines decode and compute the
same figures in a loop without any service, queue or database. The load generator shares the CPUs."""


def main() -> None:
    base = BaseServiceSettings()
    database_url = f"{base.database_url.rsplit('/', 1)[0]}/dicomflow_bench_pipeline_{os.getpid()}"
    os.environ.setdefault("AUTH_SECRET", secrets.token_urlsafe(48))
    os.environ.setdefault("BLOB_KEYS", generate_key_spec("bench"))
    asyncio.run(apply_migrations(database_url))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            folder = Path(tmp)
            paths = write_files(iter_mix(COUNTS), folder / "instances")
            megabytes = sum(p.stat().st_size for p in paths) / 1e6
            decoders = decoder_times()
            bare = {
                "pydicom+numpy, pool of 2, default decoder": time_bare(paths, 2, bare_figures),
                "pydicom+numpy, 1 process, Pillow for JPEG": time_bare(paths, 1, bare_pillow),
                "pydicom+numpy, pool of 2, Pillow for JPEG": time_bare(paths, 2, bare_pillow),
            }
            (folder / "system").mkdir()
            env = {"RATE_LIMIT_PER_MINUTE": "1000000000", "RATE_LIMIT_BURST": "1000000", "LOG_LEVEL": "INFO"}
            system = RunningSystem(database_url, folder / "system", env)
            try:
                system.start_all()
                system.stop("processor_service")
                rounds = {n: asyncio.run(pipeline_round(system, database_url, paths, n)) for n in (1, 2)}
            finally:
                with contextlib.suppress(Exception):
                    system.stop_all()
    finally:
        asyncio.run(drop_database(database_url))
    lines = report(len(paths), megabytes, rounds, bare, decoders)
    print("\n".join(lines))
    write_section("bench_pipeline", "DICOM pipeline: upload and processing", lines, INTRO)


if __name__ == "__main__":
    main()
