"""Admission by count against admission by cost, in the same run: peak memory and throughput of two processors.

The corpus is the pipeline benchmark's 700 instances (500 from sample-01, 200 from sample-02, new UIDs) plus
LARGE_FRAMES multi-frame copies of sample-01 (`samples/big_instance.py`: native, 512 KiB a frame, so 200 to
500 MiB decoded each). One system of this checkout is set up (`bench/trees.py`, processors stopped); for each
mode the corpus is uploaded as a new user, then two processors (each consuming the standard and the large
queue, each with its CPU slots) are started together and timed until PostgreSQL shows every instance `done`,
start-up included. Each processor's RSS, its worker processes included, is sampled every 50 ms throughout.

- by count: a budget no job reaches (admission by CPU slots alone, as before issue 17);
- by cost: PROCESSOR_MEMORY_BUDGET_BYTES = BUDGET per processor.

    python -m bench admission                 # README section rewritten
    python -m bench admission --print-only    # figures printed only
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.bench_pipeline import COUNTS, wait_all_done
from bench.load_generator import UploadTarget, upload_all
from bench.report import write_section
from bench.trees import commit_of, tree_system
from common.dicom.cost import estimate_job_cost
from common.dicom.validation import validate_file
from samples.big_instance import big_instance_parts
from samples.make_instances import iter_mix, write_files
from single_host.processes import ROOT, RunningSystem, Service, free_port, service_argv

MIB = 1024**2
LARGE_FRAMES = (400, 600, 800, 1000)
BUDGET = 768 * MIB
UNLIMITED = 1 << 50
PROCESSORS = ("processor_a", "processor_b")
MODES = {"by count": UNLIMITED, "by cost": BUDGET}


@dataclass
class ModeFigures:
    seconds: float
    peaks: dict[str, int]


def write_large(folder: Path) -> list[Path]:
    """The multi-frame copies of sample-01, written frame by frame."""
    paths = []
    for frames in LARGE_FRAMES:
        header, frame = big_instance_parts(frames)
        path = folder / f"large-{frames}.dcm"
        with path.open("wb") as out:
            out.write(header)
            for _ in range(frames):
                out.write(frame)
        paths.append(path)
    return paths


def tree_rss(pid: int) -> int:
    """RSS of a process and all its descendants."""
    process = psutil.Process(pid)
    total = int(process.memory_info().rss)
    for child in process.children(recursive=True):
        try:
            total += int(child.memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return total


async def sample_peaks(services: dict[str, Service], peaks: dict[str, int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for name, service in services.items():
            try:
                peaks[name] = max(peaks.get(name, 0), tree_rss(service.pid))
            except (psutil.NoSuchProcess, RuntimeError):
                continue
        await asyncio.sleep(0.05)


async def process_all(system: RunningSystem, owner: str, count: int, budget: int) -> ModeFigures:
    """Start both processors with `budget`, wait until the owner's `count` instances are done; seconds and peaks."""
    services = {name: Service(name, free_port(), system.folder / f"{name}.log") for name in PROCESSORS}
    peaks: dict[str, int] = {}
    stop = asyncio.Event()
    started = time.perf_counter()
    for service in services.values():
        env = {
            **system.env,
            "PROCESSOR_PORT": str(service.port),
            "PROCESSOR_QUEUES": '["standard","large"]',
            "PROCESSOR_CPU_SLOTS": "2",
            "PROCESSOR_MEMORY_BUDGET_BYTES": str(budget),
        }
        service.start(service_argv("processor_service"), cwd=system.root, env=env)
    sampler = asyncio.create_task(sample_peaks(services, peaks, stop))
    try:
        await wait_all_done(system.env["DATABASE_URL"], owner, count, timeout=1800)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        await sampler
        for service in services.values():
            service.stop()
    return ModeFigures(seconds, peaks)


async def upload(system: RunningSystem, paths: list[Path], name: str) -> str:
    user = await system.create_user(name)
    target = UploadTarget(
        f"{system.gateway_url}/api/uploads",
        user.headers,
        lambda code, body: code == 202 and body["files"][0]["status"] == "accepted",
    )
    await upload_all(target, paths, clients=4)
    return user.id


def report(figures: dict[str, ModeFigures], paths: list[Path], costs: list[int], commit: str) -> list[str]:
    large = costs
    count = figures["by count"]
    lines = [
        f"Measured at {commit}: {len(paths)} files ({len(paths) - len(large)} small, {len(large)} multi-frame of "
        f"{', '.join(f'{c / MIB:.0f}' for c in costs)} MiB estimated), two processors of 2 CPU slots each on this "
        f"2-core machine; budget by cost {BUDGET // MIB} MiB per processor.",
        "",
        "| admission | files/s | vs by count | peak RSS processor A (with workers) | peak RSS processor B |",
        "|---|---|---|---|---|",
    ]
    for mode, f in figures.items():
        rate = len(paths) / f.seconds
        ratio = count.seconds / f.seconds
        peaks = [f"{f.peaks.get(name, 0) / MIB:.0f} MiB" for name in PROCESSORS]
        lines.append(f"| {mode} | {rate:.1f} | {ratio:.2f}x | {peaks[0]} | {peaks[1]} |")
    return lines


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench admission", description=__doc__)
    parser.add_argument("--print-only", action="store_true", help="print the figures; bench/README.md untouched")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> None:
    args = parse_args(argv)
    commit = commit_of(None)
    with tempfile.TemporaryDirectory(prefix="bench-admission-") as tmp:
        folder = Path(tmp)
        (folder / "instances").mkdir()
        large = write_large(folder / "instances")
        paths = write_files(iter_mix(COUNTS), folder / "instances") + large
        costs = [estimate_job_cost(validate_file(p), p.stat().st_size).memory_bytes for p in large]
        os.sync()
        figures: dict[str, ModeFigures] = {}
        with tree_system(ROOT, folder / "system") as system:
            for number, (mode, budget) in enumerate(MODES.items()):
                owner = asyncio.run(upload(system, paths, f"admission-{number}"))
                figures[mode] = asyncio.run(process_all(system, owner, len(paths), budget))
                print(mode, figures[mode], flush=True)
    lines = report(figures, paths, costs, commit)
    print("\n".join(lines))
    if not args.print_only:
        write_section("bench_admission", "Admission by cost", lines)
