"""`make drills`: every fault drill on a big batch, its figures written to docs/reliability.md.

    python -m tests.drills                       # every drill, 500 files each
    python -m tests.drills --files 100 kill-gateway broker-short   # only these: figures printed, not written

The drills are those of tests/drills/test_drills.py (which runs them on small batches in `make test`),
plus the outages longer than a minute and a baseline without a fault. Each runs on a system of its
own on one private RabbitMQ node and one private PostgreSQL cluster. The figures replace the section
between the markers of docs/reliability.md; the text around them is written by hand. The services'
logs of a drill that failed are kept in var/drills/<run>/<drill>/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from samples.make_instances import SAMPLE_01, iter_instances
from tests.drills.drill import SETTLE_TIMEOUT, DrillFigures, run_drill
from tests.drills.faults import BASELINE, FAULTS, Fault
from tests.drills.rig import open_rig
from tests.private_postgres import PrivatePostgres
from tests.private_rabbitmq import PrivateRabbitMQ

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- drills:begin -->", "<!-- drills:end -->"
LOGS = ROOT / "var" / "drills"  # the logs of failed drills, one folder per run
SETTLE_PER_FILE = 0.3  # extra settle deadline per file of the batch, on top of the drills' own


def _recovery(figures: DrillFigures) -> str:
    if figures.recovery_seconds is not None:
        return f"{figures.recovery_seconds:.1f}"
    if figures.settled_seconds is not None:
        return f"never (settled in {figures.settled_seconds:.1f})"
    return "never (not settled)"


def figures_lines(results: list[tuple[Fault, DrillFigures | str]], files: int, took: float) -> list[str]:
    """The generated section: when and where it was measured, a table, then the evidence of each failure."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} at `{commit.stdout.strip()}`"
        f"{' with uncommitted changes' if dirty.stdout.strip() else ''}, {files} files per drill, "
        f"{os.cpu_count()} CPUs, {took / 60:.0f} min in all (`make drills`).",
        "",
        "| Drill | Fault | Fault s | Recovery s | Client errors seen | Lost | Duplicated | Stuck | Failed "
        "| Audit missing | Orphans | Verdict |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    evidence: list[str] = []
    for fault, figures in results:
        if isinstance(figures, str):
            lines.append(f"| {fault.name} | {fault.what} |{' |' * 9} error |")
            evidence += [f"- **{fault.name}**: the drill itself failed: {figures}"]
            continue
        o = figures.outcome
        errors = figures.ledger.client_errors
        kinds = ", ".join(f"{kind} x{n}" for kind, n in figures.ledger.errors.most_common())
        lost = len(o.lost) + len(figures.ledger.refused) + figures.unanswered
        lines.append(
            f"| {fault.name} | {fault.what} | {figures.fault_seconds:.1f} | {_recovery(figures)} "
            f"| {errors}{f' ({kinds})' if kinds else ''} | {lost} | {len(o.duplicated)} | {len(o.stuck)} "
            f"| {len(o.failed)} | {len(o.audit_missing)} | {len(figures.findings)} "
            f"| {'pass' if figures.passed else 'FAIL'} |"
        )
        if not figures.passed:
            evidence += [f"- **{fault.name}**:", *(f"  - {line}" for line in figures.evidence())]
    if evidence:
        lines += ["", "Evidence of the failures (first lines of each kind, and error-level log events):", "", *evidence]
    return lines


def write_report(lines: list[str]) -> None:
    """Replace the generated section of docs/reliability.md (created with a title if it does not exist)."""
    body = "\n".join([BEGIN, *lines, END])
    text = REPORT.read_text() if REPORT.exists() else "# Reliability\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + body + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    REPORT.write_text(text)


async def run(faults: list[Fault], files: int, folder: Path) -> list[tuple[Fault, DrillFigures | str]]:
    batch = [data for _, data in iter_instances(SAMPLE_01, files)]
    results: list[tuple[Fault, DrillFigures | str]] = []
    with PrivateRabbitMQ() as broker, PrivatePostgres() as postgres:
        for fault in faults:
            print(f"== {fault.name}: {fault.what}, {files} files", flush=True)
            try:
                async with open_rig(broker, postgres, folder / fault.name) as rig:
                    figures = await run_drill(
                        rig, fault, batch, settle_timeout=SETTLE_TIMEOUT + SETTLE_PER_FILE * files
                    )
            except Exception as exc:  # one drill's error is reported; the others still run
                first_lines = [line for line in f"{type(exc).__name__}: {exc}".splitlines() if line.strip()][:3]
                results.append((fault, " / ".join(first_lines)))
                print(f"   error: {exc}", flush=True)
                continue
            finally:
                # The blobs go; a failed drill's service logs stay for a person to read.
                shutil.rmtree(folder / fault.name / "blobs", ignore_errors=True)
            results.append((fault, figures))
            print(f"   {'pass' if figures.passed else 'FAIL'}, recovery {_recovery(figures)}", flush=True)
            for line in figures.evidence():
                print(f"   {line}", flush=True)
            if figures.passed:
                shutil.rmtree(folder / fault.name, ignore_errors=True)
            else:
                print(f"   the services' logs: {folder / fault.name}", flush=True)
    return results


def main(argv: list[str]) -> int:
    known = {fault.name: fault for fault in [BASELINE, *FAULTS]}
    parser = argparse.ArgumentParser(prog="python -m tests.drills", description="Run the fault drills.")
    parser.add_argument(
        "drills", nargs="*", metavar="DRILL", help=f"only these (figures printed, not written): {', '.join(known)}"
    )
    parser.add_argument("--files", type=int, default=500, help="files per drill (default 500)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.drills if name not in known]
    if unknown:
        parser.error(f"unknown drill(s): {', '.join(unknown)}")
    faults = [known[name] for name in args.drills] or list(known.values())
    started = time.monotonic()
    folder = LOGS / time.strftime("%Y%m%d-%H%M%S")
    results = asyncio.run(run(faults, args.files, folder))
    lines = figures_lines(results, args.files, time.monotonic() - started)
    if args.drills:
        print("\n".join(lines))
    else:
        write_report(lines)
        print(f"figures written to {REPORT.relative_to(ROOT)}")
    return 0 if all(not isinstance(f, str) and f.passed for _, f in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
