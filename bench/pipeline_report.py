"""The pipeline benchmark's figures as Markdown lines: accept rates as ratios to Orthanc's and to the two-hop floor,
processing to the bare pool.

Every verdict (met / NOT met) is computed here from the figures of the same run.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import date

from bench.design_floor import design_floor_ms
from bench.hop_floor import CPU_PARTS as FLOOR_CPU_PARTS
from bench.load_generator import CLIENTS
from bench.orthanc_baseline import CPU_PARTS as ORTHANC_CPU_PARTS
from bench.orthanc_baseline import ROUND_STATUS
from tests.e2e.conftest import ROOT

TARGET_ORTHANC_RATIO = 1.0
TARGET_ACCEPT_PER_S = 300
TARGET_POOL_RATIO = 0.8
OUR_CPU_PARTS = ("gateway", "ingest_service", "results_service", "rabbitmq", "postgres", "load generator")
ROUND_BYTES = {1: "new bytes", 2: "the same bytes again"}
OUR_ROUND_NOTE = {1: "new bytes", 2: "the same bytes for another owner, blobs already stored"}
POOL = "pydicom+numpy, pool of 2, Pillow for JPEG"
POOL_DEFAULT = "pydicom+numpy, pool of 2, default decoder"
FLOOR = "floor: the same two aiohttp hops, no work"

INTRO = """`bench/bench_pipeline.py`: the four services as processes (the e2e harness) on a database and AMQP prefix of
their own. The accept rate is measured against Orthanc (Debian's `orthanc`, a mature C++ DICOM server;
`bench/orthanc_baseline.py`) in the same run: Orthanc runs as a child process with a generated configuration
(storage and SQLite index in the benchmark's temporary folder, HTTP on 127.0.0.1, no authentication, no
DICOM listener, no plugins, no compression, its default logging of warnings only) and receives the same
files from the same load generator (`bench/load_generator.py`: one file per request, 8 concurrent clients),
each file as `POST /instances`. The same files from the same load generator also go through a floor
(`bench/hop_floor.py`): two aiohttp processes served like the services (uvloop, the same malloc tuning), a
proxy running the gateway's streaming proxy function (`gateway.proxy`) without auth, rate limit or request
logs, in front of a sink that reads each body as ingest does, counts its bytes and answers 202 with a
receipt shaped like ours. It is the cost of moving the bytes through the two Python HTTP hops the
architecture mandates with no work behind them, i.e. a lower bound for this architecture in Python, not a
competitor; the benchmark checks that every byte reached the sink. Two rounds each, interleaved (Orthanc's
round n, then the floor's, then ours; the floor does the same in both): round 1 new bytes; round 2 the same
bytes again (for us as another owner, so new instances whose blobs are already stored; for Orthanc the same
SOP instances, answered `AlreadyStored` after it has parsed and written the file again and dropped it).
Durability: our ingest fsyncs every blob, commits the registration in PostgreSQL and waits for a confirmed
persistent publish before it answers; Orthanc has `SyncStorageArea: true` set explicitly (fdatasync of every
stored file before it answers), but its index is SQLite in WAL mode, fdatasynced by a background flush about
every 10 s (strace on 1.10.1), not per instance. The target is an accept rate of at least 1.0x Orthanc's in
the same run (the issue's 300/s was Orthanc's rate on the machine it was set on; the absolute comparison is
still printed). Processing is timed from the start of the processor process(es) until PostgreSQL shows every
instance `done` (process start-up, status events, result batches and PNG previews included) against bare
pydicom + numpy loops over the same files without any service, queue or database.
`python -m bench pipeline --accept-only` measures only the accept rates and CPU (Orthanc, the floor, ours)
and prints them without touching this file. The load generator shares the CPUs with the servers."""


@dataclass
class PipelineFigures:
    """What one run measured, per round for the uploads; `processing`, `bare` and `decoders` stay empty with
    --accept-only."""

    n: int
    megabytes: float
    orthanc_version: str
    ours: dict[int, dict[str, float]] = field(default_factory=dict)
    orthanc: dict[int, dict[str, float]] = field(default_factory=dict)
    floor: dict[int, dict[str, float]] = field(default_factory=dict)
    file_work: dict[int, float] = field(default_factory=dict)  # ms per file, round -> ingest's file work alone
    bare: dict[str, float] = field(default_factory=dict)
    decoders: dict[str, float] = field(default_factory=dict)


def verdict(met: bool) -> str:
    return "**met**" if met else "**NOT met**"


def code_version() -> str:
    """The commit measured (`git describe --always --dirty`), so a section says what code its figures are for."""
    with_git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return with_git.stdout.strip() or "unknown"


def report(f: PipelineFigures) -> list[str]:
    """All the lines of the benchmark's README section (or of the --accept-only printout)."""
    lines = [
        f"Code: {code_version()}. Measured {date.today().isoformat()} on {os.cpu_count()} CPUs (load average "
        f"{os.getloadavg()[0]:.1f} after the run), Python {platform.python_version()}, Orthanc {f.orthanc_version}: "
        f"{f.n} instances ({f.megabytes:.0f} MB; 500 from sample-01, 200 from sample-02), {CLIENTS} concurrent "
        "clients, one file per request, all four services as processes (LOG_LEVEL=INFO), "
        "PROCESSOR_CONCURRENCY=2 per processor.",
        "",
        "| phase | seconds | instances/s | MB/s |",
        "|---|---|---|---|",
    ]
    for r in f.ours:
        lines.append(row(f, f"Orthanc `POST /instances` (round {r}: {ROUND_BYTES[r]})", f.orthanc[r]["accept"]))
        lines.append(row(f, f"{FLOOR} (round {r})", f.floor[r]["accept"]))
        lines.append(row(f, f"upload through the gateway (round {r}: {OUR_ROUND_NOTE[r]})", f.ours[r]["accept"]))
    for round_no, figures in f.ours.items():
        if "processing" in figures:
            lines.append(row(f, f"processing, {round_no} processor(s), until all `done`", figures["processing"]))
    lines += [row(f, f"bare {name}", seconds) for name, seconds in f.bare.items()]
    lines += ["", *accept_lines(f), "", *cpu_tables(f)]
    if f.bare:
        lines += ["", *processing_lines(f), "", *decoder_lines(f.decoders)]
    return lines


def row(f: PipelineFigures, phase: str, seconds: float) -> str:
    return f"| {phase} | {seconds:.1f} | {f.n / seconds:.1f} | {f.megabytes / seconds:.0f} |"


def accept_lines(f: PipelineFigures) -> list[str]:
    """Each round's rate as a ratio to Orthanc's same round; the target holds only if every round meets it."""
    ratios = {r: f.orthanc[r]["accept"] / f.ours[r]["accept"] for r in f.ours}
    lines = [
        f"- Round {r} ({ROUND_BYTES[r]}): {f.n / f.ours[r]['accept']:.0f}/s against Orthanc's "
        f"{f.n / f.orthanc[r]['accept']:.0f}/s = **{ratio:.2f}x**."
        for r, ratio in ratios.items()
    ]
    best = max(f.n / figures["accept"] for figures in f.ours.values())
    lines += [
        f"- Floor, round {r}: {f.n / seconds:.0f}/s = {f.orthanc[r]['accept'] / seconds:.2f}x Orthanc's; "
        f"ours = **{seconds / f.ours[r]['accept']:.2f}x** the floor."
        for r, seconds in ((r, f.floor[r]["accept"]) for r in f.ours)
    ]
    lines += [
        f"- Target: accept rate >= {TARGET_ORTHANC_RATIO:.1f}x Orthanc's in the same run (the issue's "
        f"{TARGET_ACCEPT_PER_S}/s is Orthanc's rate on the machine it was set on), in every round: "
        f"{verdict(min(ratios.values()) >= TARGET_ORTHANC_RATIO)} (lowest {min(ratios.values()):.2f}x).",
        f"- Absolute: best round {best:.0f}/s against the issue's {TARGET_ACCEPT_PER_S}/s: "
        f"{verdict(best >= TARGET_ACCEPT_PER_S)} ({best / TARGET_ACCEPT_PER_S:.2f}x); Orthanc's best here "
        f"{max(f.n / figures['accept'] for figures in f.orthanc.values()):.0f}/s.",
    ]
    return lines


def cpu_tables(f: PipelineFigures) -> list[str]:
    """CPU milliseconds per file of each part, per round, for our accept path and for Orthanc."""
    lines = ["CPU per accepted file during the uploads (ms, user + system; psutil):", ""]
    lines += cpu_table("our round", OUR_CPU_PARTS, f.ours, OUR_ROUND_NOTE)
    lines += [""]
    lines += cpu_table(
        "Orthanc round", ORTHANC_CPU_PARTS, f.orthanc, {r: f"answered {s}" for r, s in ROUND_STATUS.items()}
    )
    ours = " / ".join(f"{server_ms(figures):.2f}" for figures in f.ours.values())
    theirs = " / ".join(f"{server_ms(figures):.2f}" for figures in f.orthanc.values())
    lines += [""]
    lines += cpu_table("floor round", FLOOR_CPU_PARTS, f.floor, dict.fromkeys(f.floor, "no work"))
    floor = " / ".join(f"{server_ms(figures):.2f}" for figures in f.floor.values())
    share = " / ".join(f"{server_ms(f.floor[r]) / server_ms(f.ours[r]):.0%}" for r in f.ours)
    lines += [
        "",
        f"- Server-side CPU per file (everything but the load generator), round 1 / round 2: ours {ours} ms "
        f"(RabbitMQ and PostgreSQL are the machine's shared servers), Orthanc {theirs} ms, the floor (proxy + "
        f"sink) {floor} ms, i.e. {share} of ours.",
        *[
            f"- Round {r}: our gateway {f.ours[r]['cpu:gateway']:.2f} ms against the floor's proxy "
            f"{f.floor[r]['cpu:proxy']:.2f} ms; ingest_service {f.ours[r]['cpu:ingest_service']:.2f} ms against "
            f"the floor's sink {f.floor[r]['cpu:sink']:.2f} ms."
            for r in f.ours
        ],
    ]
    if f.file_work:
        lines += design_floor_lines(f)
    return lines


def design_floor_lines(f: PipelineFigures) -> list[str]:
    """The design floor per round against Orthanc: the best ratio any gateway + ingest of this design could reach."""
    rounds = list(f.ours)
    floors = {r: design_floor_ms(f.floor[r], f.file_work[r], f.ours[r]) for r in rounds}
    bounds = {
        r: (server_ms(f.orthanc[r]) + f.orthanc[r]["cpu:load generator"])
        / (floors[r] + f.ours[r]["cpu:load generator"])
        for r in rounds
    }
    ratios = {r: f.orthanc[r]["accept"] / f.ours[r]["accept"] for r in rounds}

    def each(values: dict[int, float], pattern: str) -> str:
        return " / ".join(pattern.format(values[r]) for r in rounds)

    return [
        f"- Design floor (`bench/design_floor.py`), round 1 / round 2: the floor's two hops, plus ingest's "
        f"validation and blob store alone on the same files ({each(f.file_work, '{:.2f}')} ms in one thread), plus "
        f"our results_service, RabbitMQ and PostgreSQL: {each(floors, '{:.2f}')} ms of server CPU per file, against "
        f"Orthanc's {each({r: server_ms(f.orthanc[r]) for r in rounds}, '{:.2f}')} ms. A gateway and an "
        "ingest_service with no overhead of their own would still spend that; with the load generator on the "
        f"same CPUs, such a system could reach at most **{each(bounds, '{:.2f}x')}** Orthanc's rate "
        f"(ours: {each(ratios, '{:.2f}x')}).",
    ]


def server_ms(figures: dict[str, float]) -> float:
    """CPU ms per file of every part except the load generator."""
    return sum(ms for key, ms in figures.items() if key.startswith("cpu:") and key != "cpu:load generator")


def cpu_table(
    label: str, parts: tuple[str, ...], rounds: dict[int, dict[str, float]], notes: dict[int, str]
) -> list[str]:
    lines = [f"| {label} | " + " | ".join(parts) + " | total |", "|---|" + "---|" * (len(parts) + 1)]
    for round_no, figures in rounds.items():
        values = [figures[f"cpu:{name}"] for name in parts]
        cells = " | ".join(f"{ms:.2f}" for ms in values)
        lines.append(f"| {round_no} ({notes[round_no].split(',')[0]}) | {cells} | {sum(values):.2f} |")
    return lines


def processing_lines(f: PipelineFigures) -> list[str]:
    best_rate = max(f.n / figures["processing"] for figures in f.ours.values())
    pool_rate, pool_default = f.n / f.bare[POOL], f.n / f.bare[POOL_DEFAULT]
    return [
        f"- Processing: {best_rate:.1f} files/s = **{best_rate / pool_rate:.2f}x** the bare pool of 2 with the same "
        f"decoder ({best_rate / pool_default:.2f}x the bare pool with pydicom's default decoder); target "
        f"{TARGET_POOL_RATIO}x: {verdict(best_rate / pool_rate >= TARGET_POOL_RATIO)}.",
        f"- 2 processors / 1 processor: {f.ours[1]['processing'] / f.ours[2]['processing']:.2f}x "
        "(both share the same 2 CPUs, so no gain is expected here: processors scale across machines).",
        "- Why the pipeline beats the bare loop: the bare loop turns all frames into one float64 array "
        "(200 MB for sample-02) and passes over it several times; the processor counts values frame by frame "
        "(bincount) and derives exact figures from that table.",
    ]


def decoder_lines(decoders: dict[str, float]) -> list[str]:
    return [
        "JPEG Baseline decoders on sample-02 (96 frames of 512 x 512, 8-bit), best of 5, frame by frame:",
        "",
        "| pydicom plugin | seconds | ms/frame |",
        "|---|---|---|",
        *[
            f"| {name} | {sec:.3f} | {sec / 96 * 1000:.2f} |"
            for name, sec in sorted(decoders.items(), key=lambda i: i[1])
        ],
        "",
        "imaging prefers the fastest (Pillow, i.e. libjpeg-turbo) for 8-bit JPEG; its output differs from",
        "pylibjpeg's by at most one grey level on some pixels (both are conformant IDCTs).",
    ]
