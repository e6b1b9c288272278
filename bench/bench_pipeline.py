"""The DICOM pipeline under load, before and after: Orthanc, an older commit and this checkout in the same run.

700 generated instances (500 from sample-01, 200 from sample-02, new UIDs; `samples/make_instances.py`)
are uploaded one file per request by 8 concurrent clients (`bench/load_generator.py`) to three servers,
round by round, interleaved so each round's three share the machine's load: Orthanc (`POST /instances`,
`bench/orthanc_baseline.py`), the system of the commit `--baseline` names ("before", checked out into a
temporary git worktree, `bench/trees.py`) and the system of this checkout ("after"), each with its own
database, AMQP prefix and blob folder, processors stopped so the accept rate is the door's alone.
Round 1 sends new bytes; round 2 the same bytes again (for us as another user); `--passes` passes, each
on new files, the report taking medians. After the first round 1 each of our systems starts one processor
and is timed until PostgreSQL shows all its instances `done`, against a bare pydicom + numpy pool of 2
over the same files. The figures go into bench/README.md.

    python -m bench pipeline                        # before = 7d7ca1a, README section rewritten
    python -m bench pipeline --baseline HEAD~3      # another commit as "before"
    python -m bench pipeline --after HEAD           # the last commit as "after", not the checkout's edits
    python -m bench pipeline --accept-only          # upload rounds only, printed only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg
import numpy as np
import psutil
import pydicom
from pydicom.pixels.utils import pixel_array

from bench.load_generator import UploadTarget, cpu_of, timed_upload
from bench.orthanc_baseline import Orthanc, orthanc_binary, orthanc_round, require_orthanc
from bench.pipeline_report import OUR_CPU_PARTS, PipelineFigures, report
from bench.report import write_section
from bench.trees import commit_of, tree_system, worktree
from processor_service.imaging import HISTOGRAM_BINS
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_mix, write_files
from single_host.processes import ROOT, RunningSystem, free_port

COUNTS = ((SAMPLE_01, 500), (SAMPLE_02, 200))
DEFAULT_BASELINE = "7d7ca1a"  # the last commit before issue 12's rework
BARE_WORKERS = 2


def bare_figures(path: Path) -> int:
    """What a lean script computes per file, with the decoder the processor prefers for 8-bit JPEG (Pillow):
    all frames decoded at once, float64 min/max/mean/std, the 64-bin histogram; the number of figures."""
    ds = pydicom.dcmread(path)
    array = pixel_array(ds, decoding_plugin="pillow") if "sample-02" in path.name else ds.pixel_array
    x = array.astype(np.float64)
    figures = (x.min(), x.max(), x.mean(), x.std())
    counts, _ = np.histogram(array, HISTOGRAM_BINS, (figures[0], figures[1]))
    return len(figures) + len(counts)


def time_bare_pool(paths: list[Path]) -> float:
    """Seconds for the bare script over `paths` in a pool of BARE_WORKERS processes (pool start-up included)."""
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(BARE_WORKERS) as pool:
        pool.map(bare_figures, paths, chunksize=4)
    return time.perf_counter() - started


def cpu_seconds(system: RunningSystem) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each part of the accept path, the load generator (this process)
    included; RabbitMQ and PostgreSQL are the machine's shared servers, so other work on them counts too."""
    times = {name: cpu_of(psutil.Process(system.pid(name))) for name in OUR_CPU_PARTS[:3]}
    times["rabbitmq"] = sum(cpu_of(p) for p in _processes(lambda p: "beam.smp" in " ".join(p.info["cmdline"] or [])))
    times["postgres"] = sum(cpu_of(p) for p in _processes(lambda p: p.info["username"] == "postgres"))
    times["load generator"] = cpu_of(psutil.Process())
    return times


def _processes(keep: Callable[[psutil.Process], bool]) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline", "username"]) if keep(p)]


async def accept_round(system: RunningSystem, paths: list[Path], round_no: int) -> tuple[str, dict[str, float]]:
    """Upload every file as a new user (processors stopped); the user's id and the timed figures."""
    user = await system.create_user(f"bench-{round_no}")
    target = UploadTarget(
        f"{system.gateway_url}/api/uploads",
        user.headers,
        lambda code, body: code == 202 and body["files"][0]["status"] == "accepted",
    )
    return user.id, await timed_upload(target, paths, lambda: cpu_seconds(system))


async def wait_all_done(database_url: str, owner: str, count: int, timeout: float = 600) -> None:
    """Return once the owner's `count` instances are all `done` (checked in PostgreSQL every 50 ms)."""
    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    deadline = time.monotonic() + timeout
    query = "SELECT status, count(*) FROM instances WHERE owner = $1 GROUP BY status"
    try:
        while True:
            counts = dict(await conn.fetch(query, owner))
            if counts.get("failed"):
                raise RuntimeError(f"{counts['failed']} instances failed")
            if counts.get("done", 0) >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all done after {timeout} s: {counts}")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def processing_round(system: RunningSystem, owner: str, count: int) -> float:
    """Seconds from starting one processor (its start-up included) until all the owner's instances are done."""
    started = time.perf_counter()
    system.start("processor_service", wait=False)
    try:
        asyncio.run(wait_all_done(system.env["DATABASE_URL"], owner, count))
        return time.perf_counter() - started
    finally:
        system.stop("processor_service")


def new_files(folder: Path) -> list[Path]:
    """The 700 instances with fresh UIDs, written and synced (else their flush would land in the first round)."""
    paths = write_files(iter_mix(COUNTS), folder)
    os.sync()
    return paths


def run_passes(
    orthanc: Orthanc, systems: dict[str, RunningSystem], paths: list[Path], f: PipelineFigures, *, processing: bool
) -> None:
    """`f.passes` passes of round 1 (new bytes) and round 2 (the same bytes again): Orthanc's, then each system's,
    the systems' order reversed every other pass; each pass after the first on new files. After the first round 1,
    each system processes its instances before anything else runs. Fills `f`."""
    for pass_no in range(f.passes):
        if pass_no:
            shutil.rmtree(paths[0].parent)
            paths = new_files(paths[0].parent.with_name(f"instances-{pass_no}"))
        order = list(systems.items())[:: 1 if pass_no % 2 == 0 else -1]
        for round_no in (1, 2):
            f.add("Orthanc", round_no, asyncio.run(orthanc_round(orthanc, paths, round_no)))
            owners = {}
            for name, system in order:
                owners[name], figures = asyncio.run(accept_round(system, paths, round_no))
                f.add(name, round_no, figures)
            if processing and pass_no == 0 and round_no == 1:
                for name, system in order:
                    f.processing[name] = processing_round(system, owners[name], len(paths))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench pipeline", description="The DICOM pipeline benchmark.")
    parser.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        metavar="REF",
        help=f"the commit measured as 'before' (default {DEFAULT_BASELINE}, the last before issue 12's rework)",
    )
    parser.add_argument(
        "--after",
        metavar="REF",
        help="a commit measured as 'after', from a worktree too (default: this checkout, uncommitted changes included)",
    )
    for side in ("baseline", "after"):
        parser.add_argument(
            f"--{side}-env",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=f"an environment variable for the {side} system's services only (repeatable), e.g. to measure "
            "one setting on and off in the same run with --after set to the baseline's commit",
        )
    parser.add_argument(
        "--passes", type=int, default=3, help="passes of both upload rounds; the report gives medians (default 3)"
    )
    parser.add_argument(
        "--accept-only", action="store_true", help="only the upload rounds; printed, bench/README.md untouched"
    )
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    for pair in args.baseline_env + args.after_env:
        if "=" not in pair:
            parser.error(f"{pair!r} is not NAME=VALUE")
    return args


def main(argv: Sequence[str] = ()) -> None:
    args = parse_args(argv)
    binary = orthanc_binary()
    orthanc_version = require_orthanc(binary)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = Path(tmp)
        paths = new_files(folder / "instances-0")
        refs = {"before": args.baseline, "after": args.after}
        versions = {name: commit_of(ref) for name, ref in refs.items()}
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        figures = PipelineFigures(len(paths), megabytes, orthanc_version, versions, args.passes)
        if not args.accept_only:
            figures.bare_pool = time_bare_pool(paths)
        with contextlib.ExitStack() as stack:
            trees = {
                name: stack.enter_context(worktree(versions[name], folder / f"{name}-tree")) if ref else ROOT
                for name, ref in refs.items()
            }
            envs = {"before": args.baseline_env, "after": args.after_env}
            systems = {
                name: stack.enter_context(
                    tree_system(tree, folder / name, dict(pair.split("=", 1) for pair in envs[name]))
                )
                for name, tree in trees.items()
            }
            orthanc = stack.enter_context(Orthanc(binary, folder / "orthanc", free_port()))
            run_passes(orthanc, systems, paths, figures, processing=not args.accept_only)
    lines = report(figures)
    print("\n".join(lines))
    if not args.accept_only:
        write_section("bench_pipeline", "DICOM pipeline", lines)


if __name__ == "__main__":
    main()
