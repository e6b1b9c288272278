"""The DICOM pipeline under load: 700 generated instances uploaded through the gateway, then processed.

All four services run as real processes (the e2e harness, `tests/e2e/conftest.py`) against a
database and AMQP prefix of their own. 700 instances (500 from sample-01, 200 from sample-02, new
UIDs) are uploaded one file per request by 8 concurrent clients while no processor runs (so the
accept rate is the door's alone), in two rounds (new bytes, then the same bytes as another user).
Orthanc receives the same files from the same load generator in the same run, each of its rounds
right before ours (`bench/orthanc_baseline.py`), so the accept rate is a ratio to a mature C++
DICOM server's. Between the two, the same files cross the architecture's two Python HTTP hops with
no work behind them (`bench/hop_floor.py`): the floor of this data path, not a competitor. After
each of our rounds the processors start and the time until every instance is `done` is measured,
with 1 processor after round 1 and 2 after round 2; a bare pydicom + numpy loop computes the same
figures over the same files, in one process and in a pool of 2, as their baseline.
The figures go into this benchmark's section of bench/README.md.

    python -m bench pipeline                 # everything, README section rewritten
    python -m bench pipeline --accept-only   # the upload rounds and the CPU tables, printed only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg
import numpy as np
import psutil
import pydicom
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import iter_pixels, pixel_array

from bench.design_floor import file_work_ms
from bench.hop_floor import HopFloor, floor_round
from bench.load_generator import UploadTarget, cpu_of, timed_upload
from bench.orthanc_baseline import Orthanc, orthanc_binary, orthanc_round, require_orthanc
from bench.pipeline_report import INTRO, OUR_CPU_PARTS, POOL, POOL_DEFAULT, PipelineFigures, report
from bench.report import write_section
from common.app.settings import BaseServiceSettings
from common.storage.crypto import Keyring
from common.storage.crypto_keys import generate_key_spec
from processor_service.imaging import HISTOGRAM_BINS
from results_service.db import apply_migrations, drop_database
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_mix, write_files
from tests.e2e.conftest import ROOT, RunningSystem, User, free_port

COUNTS = ((SAMPLE_01, 500), (SAMPLE_02, 200))


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


def cpu_seconds(system: RunningSystem) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each part of the accept path, this benchmark's own process
    (the load generator) included; RabbitMQ and PostgreSQL are the machine's shared servers."""
    times = {name: cpu_of(psutil.Process(system.pid(name))) for name in OUR_CPU_PARTS[:3]}
    times["rabbitmq"] = sum(cpu_of(p) for p in _processes(lambda p: "beam.smp" in " ".join(p.info["cmdline"] or [])))
    times["postgres"] = sum(cpu_of(p) for p in _processes(lambda p: p.info["username"] == "postgres"))
    times["load generator"] = cpu_of(psutil.Process())
    return times


def _processes(keep: Callable[[psutil.Process], bool]) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline", "username"]) if keep(p)]


def gateway_target(system: RunningSystem, user: User) -> UploadTarget:
    """`POST /api/uploads` through the gateway as `user`, accepted when the file's status is `accepted`."""
    return UploadTarget(
        f"{system.gateway_url}/api/uploads",
        user.headers,
        lambda code, body: code == 202 and body["files"][0]["status"] == "accepted",
    )


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


async def accept_round(system: RunningSystem, paths: list[Path], round_no: int) -> tuple[User, dict[str, float]]:
    """Upload every file as a new user while no processor runs, so the rate is the door's alone."""
    user = await system.create_user(f"bench-{round_no}")
    return user, await timed_upload(gateway_target(system, user), paths, lambda: cpu_seconds(system))


async def processing_round(system: RunningSystem, database_url: str, user: User, count: int, processors: int) -> float:
    """Start `processors` processor processes and time until all the user's instances are done."""
    extra = None
    started = time.perf_counter()
    system.start("processor_service", wait=False)
    if processors == 2:
        extra = start_extra_processor(system)
    try:
        await wait_all_done(database_url, user.id, count)
        return time.perf_counter() - started  # process start-up included
    finally:
        system.stop("processor_service")
        if extra is not None:
            extra.terminate()
            extra.wait(15)


def run_rounds(
    system: RunningSystem,
    orthanc: Orthanc,
    floor: HopFloor,
    database_url: str,
    paths: list[Path],
    figures: PipelineFigures,
    *,
    processing: bool,
) -> None:
    """Rounds 1 and 2: Orthanc's, then the floor's, then ours, so each triple shares the machine's load; round n
    of ours is then processed by n processors (unless `processing` is off). Fills `figures`."""
    ours, theirs, floors = figures.ours, figures.orthanc, figures.floor
    for round_no in (1, 2):
        theirs[round_no] = asyncio.run(orthanc_round(orthanc, paths, round_no))
        floors[round_no] = asyncio.run(floor_round(floor, paths))
        user, ours[round_no] = asyncio.run(accept_round(system, paths, round_no))
        if processing:
            ours[round_no]["processing"] = asyncio.run(
                processing_round(system, database_url, user, len(paths), round_no)
            )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench pipeline", description="The DICOM pipeline benchmark.")
    parser.add_argument(
        "--accept-only",
        action="store_true",
        help="only the upload rounds (Orthanc's, the floor's and ours) and the CPU tables; printed, README untouched",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> None:
    args = parse_args(argv)
    binary = orthanc_binary()
    orthanc_version = require_orthanc(binary)
    base = BaseServiceSettings()
    database_url = f"{base.database_url.rsplit('/', 1)[0]}/dicomflow_bench_pipeline_{os.getpid()}"
    os.environ.setdefault("AUTH_SECRET", secrets.token_urlsafe(48))
    os.environ.setdefault("BLOB_KEYS", generate_key_spec("bench"))
    asyncio.run(apply_migrations(database_url))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            folder = Path(tmp)
            paths = write_files(iter_mix(COUNTS), folder / "instances")
            os.sync()  # the 638 MB just written would otherwise be flushed during whichever server's round comes first
            figures = PipelineFigures(len(paths), sum(p.stat().st_size for p in paths) / 1e6, orthanc_version)
            figures.file_work = file_work_ms(paths, folder / "design-floor", Keyring.from_spec(os.environ["BLOB_KEYS"]))
            if not args.accept_only:
                figures.decoders = decoder_times()
                figures.bare = {
                    POOL_DEFAULT: time_bare(paths, 2, bare_figures),
                    "pydicom+numpy, 1 process, Pillow for JPEG": time_bare(paths, 1, bare_pillow),
                    POOL: time_bare(paths, 2, bare_pillow),
                }
            (folder / "system").mkdir()
            env = {"RATE_LIMIT_PER_MINUTE": "1000000000", "RATE_LIMIT_BURST": "1000000", "LOG_LEVEL": "INFO"}
            system = RunningSystem(database_url, folder / "system", env)
            try:
                system.start_all()
                system.stop("processor_service")
                with Orthanc(binary, folder / "orthanc", free_port()) as orthanc, HopFloor(folder / "floor") as floor:
                    run_rounds(system, orthanc, floor, database_url, paths, figures, processing=not args.accept_only)
            finally:
                with contextlib.suppress(Exception):
                    system.stop_all()
    finally:
        asyncio.run(drop_database(database_url))
    lines = report(figures)
    print("\n".join(lines))
    if not args.accept_only:
        write_section("bench_pipeline", "DICOM pipeline: upload and processing", lines, INTRO)


if __name__ == "__main__":
    main()
