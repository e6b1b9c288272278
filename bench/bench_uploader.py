"""`dicomflow upload` against the benchmark's own load generator, in the same run on the same system.

The 700-file corpus (500 from sample-01, 200 from sample-02, fresh UIDs; `--files N` for a smaller one in the
same proportions) is sent to this checkout's system (`bench/trees.py`, processors stopped) round by round:
by the load generator (`bench/load_generator.py`: 8 clients, one file per request, each file read whole and
posted, nothing else) and by `dicomflow upload --concurrency 8` run as a process, each round on new files and
as a new user, the order swapped every pass. The uploader's rate is the files over its run's seconds as its
`--json` summary gives them: walking the folder, hashing every file, the resume lookup and the sending (the
interpreter's start-up and the login are left out; the process's wall time is reported too). The issue asks
for at least 0.9x the load generator's files/s.

    python -m bench uploader                 # 700 files, 3 passes, README section rewritten
    python -m bench uploader --files 140 --passes 1 --print-only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.load_generator import CLIENTS, UploadTarget, upload_all
from bench.report import write_section
from bench.trees import commit_of, tree_system, worktree
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_mix, write_files
from single_host.processes import ROOT, RunningSystem

CORPUS = 700
SHARE_01 = 500 / 700


def new_files(folder: Path, count: int) -> list[Path]:
    """`count` instances with fresh UIDs, sample-01 and sample-02 in the corpus's proportions, synced to disk."""
    first = round(count * SHARE_01)
    paths = write_files(iter_mix(((SAMPLE_01, first), (SAMPLE_02, count - first))), folder)
    os.sync()
    return paths


async def generator_round(system: RunningSystem, paths: list[Path], round_no: int) -> float:
    """The load generator's files/s, as a new user."""
    user = await system.create_user(f"loadgen-{round_no}")
    target = UploadTarget(
        f"{system.gateway_url}/api/uploads",
        user.headers,
        lambda code, body: code == 202 and body["files"][0]["status"] == "accepted",
    )
    return len(paths) / await upload_all(target, paths, CLIENTS)


def uploader_round(system: RunningSystem, folder: Path, count: int, round_no: int) -> tuple[float, float]:
    """`dicomflow upload` as a new user: files/s over its run (summary) and over the process's wall time."""
    user = asyncio.run(system.create_user(f"uploader-{round_no}"))
    token = user.headers["Authorization"].removeprefix("Bearer ")
    env = {**os.environ, "DICOMFLOW_TOKEN": token, "LOG_FORMAT": "json"}
    command = [sys.executable, "-m", "common.cli", "upload", str(folder), "--server", system.gateway_url]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--concurrency", str(CLIENTS), "--json"], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"dicomflow upload exited {done.returncode}: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    if summary["counts"] != {"accepted": count}:
        raise RuntimeError(f"dicomflow upload: {summary['counts']}")
    return count / summary["seconds"], count / wall


def run(count: int, passes: int, at: str | None) -> dict[str, list[float]]:
    """Every pass: one load generator round and one uploader round, each on new files; the figures by name. The
    system is this checkout's, or the commit `at` names (checked out into a worktree); the uploader is always
    this checkout's."""
    figures: dict[str, list[float]] = {"generator": [], "uploader": [], "uploader_wall": []}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-uploader-"))
        root = stack.enter_context(worktree(commit_of(at), Path(tmp) / "tree")) if at else ROOT
        system = stack.enter_context(tree_system(root, Path(tmp) / "sys"))
        for pass_no in range(passes):
            order = ("generator", "uploader") if pass_no % 2 == 0 else ("uploader", "generator")
            for who in order:
                folder = Path(tmp) / f"{who}-{pass_no}"
                paths = new_files(folder, count)
                if who == "generator":
                    figures["generator"].append(asyncio.run(generator_round(system, paths, pass_no)))
                else:
                    rate, wall = uploader_round(system, folder, count, pass_no)
                    figures["uploader"].append(rate)
                    figures["uploader_wall"].append(wall)
                shutil.rmtree(folder)
            print(f"pass {pass_no + 1}: " + ", ".join(f"{k} {v[-1]:.1f} files/s" for k, v in figures.items()))
    return figures


def report(figures: dict[str, list[float]], count: int, passes: int, at: str | None) -> list[str]:
    """The README section: the medians and the ratio per pass."""
    median = {name: statistics.median(values) for name, values in figures.items()}
    ratios = [u / g for u, g in zip(figures["uploader"], figures["generator"], strict=True)]
    load = os.getloadavg()[0]
    verdict = "meets" if statistics.median(ratios) >= 0.9 else "does NOT meet"
    return [
        f"Server at {commit_of(at)}, uploader at {commit_of(None)}; measured {datetime.now(UTC):%Y-%m-%d} on "
        f"{os.cpu_count()} CPUs (load average "
        f"{load:.1f} after the run): {count} instances, {CLIENTS} requests in flight, one file per request, "
        f"medians of {passes} pass(es), each round on new files as a new user.",
        "",
        "| sender | files/s |",
        "|---|---|",
        f"| load generator (bench/load_generator.py) | {median['generator']:.1f} |",
        f"| dicomflow upload: walk, hash, resume lookup, send | {median['uploader']:.1f} |",
        f"| dicomflow upload: the whole process (interpreter start-up and login included) "
        f"| {median['uploader_wall']:.1f} |",
        "",
        f"dicomflow upload / load generator: **{statistics.median(ratios):.2f}x** (per pass: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); the issue asks for at least 0.9x: it {verdict} it.",
    ]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench uploader", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=CORPUS, help=f"instances per round (default {CORPUS})")
    parser.add_argument("--passes", type=int, default=3, help="passes; the report gives medians (default 3)")
    parser.add_argument("--at", metavar="REF", help="run the server of this commit (default: this checkout)")
    parser.add_argument("--print-only", action="store_true", help="print; leave bench/README.md as it is")
    args = parser.parse_args(argv)
    if args.files < 2 or args.passes < 1:
        parser.error("--files must be at least 2 and --passes at least 1")
    return args


def main(argv: Sequence[str] = ()) -> None:
    args = parse_args(argv)
    lines = report(run(args.files, args.passes, args.at), args.files, args.passes, args.at)
    print("\n".join(lines))
    if not args.print_only:
        write_section("bench_uploader", "dicomflow upload", lines, intro=INTRO)


INTRO = (
    "`python -m bench uploader` (`bench/bench_uploader.py`): the corpus sent by `dicomflow upload --concurrency 8` "
    "(as a process) and by the load generator, alternately, to this checkout's system with its processors stopped; "
    "each round on new files as a new user. The uploader's rate covers walking the folder, hashing every file "
    "(the resume check), the lookup and the sending; `--files N` for a smaller corpus."
)
