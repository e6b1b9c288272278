"""`dicomflow process-json` on the brief's large file (20 elements x 250 000 values), start-up included.

Each figure is the median wall time of whole processes, measured in this run against a plain
Python baseline doing the same work (json.load, str.split + float, divide by the maximum, two
averages, one log line per element) in one thread. After every run of the command the shared log
is checked: one whole JSON line per element plus the run's start and end, figures equal to the
command's own output. The figures go into this benchmark's section of bench/README.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.report import write_section
from single_host.processes import ROOT

LARGE = ROOT / "samples" / "generated" / "sample-03-01-json.json"
SCRIPT = Path(sys.executable).parent / "dicomflow"
RUNS = 7
BASELINE_RUNS = 3
TARGET_S = 0.5

PARSER_ONLY = "import common.cli.main as m; m.build_parser('process-json')"
BASELINE = """
import json, sys
with open(sys.argv[1], "rb") as handle:
    elements = json.load(handle)
with open(sys.argv[2], "a") as log:
    for key, element in elements.items():
        values = [float(token) for row in element["data"] for token in row.split()]
        maximum = max(values)
        normalised = [value / maximum for value in values]
        before, after = sum(values) / len(values), sum(normalised) / len(normalised)
        print(element["id"], before, after, len(values))
        log.write(json.dumps({"key": key, "average_before": before, "average_after": after}) + "\\n")
"""


def timed(command: Sequence[str | Path]) -> tuple[float, str]:
    """Wall time of one whole process, and its stdout; a failing process stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done.stdout


def ensure_large_file() -> None:
    """Generate the large file once (it is gitignored, never committed)."""
    if not LARGE.exists():
        print(f"generating {LARGE.relative_to(ROOT)} ...", flush=True)
        timed([sys.executable, ROOT / "samples" / "make_large_json.py", LARGE])


def check_log(log: Path, report: dict[str, object]) -> None:
    """The run's lines are all whole JSON, one per element, with the figures the command printed."""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    mine = [record for record in records if record["run"] == report["run_id"]]
    events = [record["event"] for record in mine]
    if events != ["run_started", *["element_processed"] * 20, "run_finished"]:
        raise SystemExit(f"shared log not intact: {events}")
    results = report["results"]
    assert isinstance(results, list)
    by_key = {record["key"]: record for record in mine if record["event"] == "element_processed"}
    for result in results:
        logged = by_key[result["key"]]
        if (logged["average_before"], logged["average_after"]) != (result["average_before"], result["average_after"]):
            raise SystemExit(f"log and output disagree for element {result['key']}")


def main() -> None:
    ensure_large_file()
    size_mb = LARGE.stat().st_size / 1e6
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "shared.log"
        command: list[str | Path] = [SCRIPT, "process-json", LARGE, "--log", log, "--json"]
        timed(command)  # warm the page cache and the bytecode cache
        times = []
        for _ in range(RUNS):
            elapsed, stdout = timed(command)
            check_log(log, json.loads(stdout))
            times.append(elapsed)
        registry = [timed([sys.executable, "-c", PARSER_ONLY])[0] for _ in range(RUNS)]
        startup = [
            timed([sys.executable, "-c", PARSER_ONLY + "; import common.brief.json_threads"])[0] for _ in range(RUNS)
        ]
        baseline = [
            timed([sys.executable, "-c", BASELINE, LARGE, Path(scratch) / "baseline.log"])[0]
            for _ in range(BASELINE_RUNS)
        ]
    load_s, threads_s = in_process_phases()
    command_s, registry_s, startup_s, baseline_s = (statistics.median(t) for t in (times, registry, startup, baseline))
    rows = [
        ("`dicomflow process-json` (whole command, 4 threads)", command_s, f"{RUNS}"),
        (
            "  of which: interpreter + CLI parser for the command (own processes)",
            registry_s,
            f"{RUNS}",
        ),
        ("  of which: the above + the command's own imports (numpy, common.brief.json_threads)", startup_s, f"{RUNS}"),
        ("  of which: `json.load` of the file (in-process)", load_s, f"{RUNS}"),
        ("  of which: parse + normalise + log, 20 elements in 4 threads (in-process)", threads_s, f"{RUNS}"),
        ("plain Python baseline (str.split + float, 1 thread)", baseline_s, f"{BASELINE_RUNS}"),
    ]
    verdict = "met" if command_s < TARGET_S else "NOT met"
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"file {size_mb:.1f} MB (20 x 250 000 values); median wall time of whole processes.",
        "",
        "| what | median (s) | runs |",
        "|---|---|---|",
        *[f"| {name} | {seconds:.3f} | {runs} |" for name, seconds, runs in rows],
        "",
        f"- The command takes **{command_s / baseline_s:.2f}x** the baseline's time "
        f"({baseline_s / command_s:.1f} times faster); target < {TARGET_S} s: **{verdict}**.",
        f"- Shared log checked after each of the {RUNS} runs: 22 whole JSON lines per run "
        "(start, 20 elements, end), figures equal to the command's output.",
        "- Heaviest top-level imports before the command runs (`python -X importtime`, cumulative ms): "
        + ", ".join(f"{name} {ms:.0f}" for name, ms in heaviest_imports(PARSER_ONLY)),
    ]
    for line in lines:
        print(line)
    write_section("bench_process_json", "process-json on the large file", lines)


def heaviest_imports(code: str, count: int = 5) -> list[tuple[str, float]]:
    """The top-level modules that `code` imports, by cumulative import time in ms, heaviest first."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=ROOT)
    found = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        name = parts[-1].strip()
        if name == "site" or name.startswith("_"):
            continue  # the interpreter's own start-up
        if len(parts) == 3 and parts[2].startswith(" ") and not parts[2].startswith("  "):
            try:
                found.append((name, int(parts[1]) / 1000))
            except ValueError:
                continue  # the header line
    return sorted(found, key=lambda item: -item[1])[:count]


def in_process_phases() -> tuple[float, float]:
    """Median seconds of the two phases after start-up: loading the JSON, and the threaded processing."""
    from common.brief.json_threads import SharedLog, load_elements, process_elements

    loads, processing = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(RUNS):
            started = time.perf_counter()
            elements = load_elements(LARGE)
            loads.append(time.perf_counter() - started)
            with SharedLog(Path(scratch) / "phases.log", "bench") as log:
                started = time.perf_counter()
                process_elements(elements, log, max_threads=4, emit=None)
                processing.append(time.perf_counter() - started)
    return statistics.median(loads), statistics.median(processing)


if __name__ == "__main__":
    main()
