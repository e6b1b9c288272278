"""The pipeline benchmark's figures as Markdown lines: Orthanc, before and after side by side, with their ratios.

Each figure is the median over the passes; each ratio is the median of the passes' ratios, with their range,
so one pass that another job on the machine slowed does not decide the verdict.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from statistics import median

from bench.load_generator import CLIENTS

OUR_CPU_PARTS = ("gateway", "ingest_service", "results_service", "rabbitmq", "postgres", "load generator")
ROUNDS = {1: "new bytes", 2: "stored bytes"}


@dataclass
class PipelineFigures:
    """What one run measured. `accept[(system, round)]` holds one dict per pass: "accept" (seconds) and
    "cpu:<part>" (ms per file); `processing[system]` is seconds until all done (empty with --accept-only)."""

    n: int
    megabytes: float
    orthanc_version: str
    versions: dict[str, str]  # "before"/"after" -> commit
    passes: int
    accept: dict[tuple[str, int], list[dict[str, float]]] = field(default_factory=dict)
    processing: dict[str, float] = field(default_factory=dict)
    bare_pool: float = 0.0

    def add(self, system: str, round_no: int, figures: dict[str, float]) -> None:
        self.accept.setdefault((system, round_no), []).append(figures)


def server_ms(figures: dict[str, float]) -> float:
    """CPU ms per file of every part but the load generator."""
    return sum(ms for key, ms in figures.items() if key.startswith("cpu:") and key != "cpu:load generator")


def report(f: PipelineFigures) -> list[str]:
    """All the lines of the benchmark's README section (or of the --accept-only printout)."""
    before, after = f.versions["before"], f.versions["after"]
    lines = [
        f"Before: {before}; after: {after}. Measured {date.today().isoformat()} on {os.cpu_count()} CPUs (load "
        f"average {os.getloadavg()[0]:.1f} after the run), Python {platform.python_version()}, Orthanc "
        f"{f.orthanc_version}: {f.n} instances ({f.megabytes:.0f} MB; 500 from sample-01, 200 from sample-02), "
        f"{CLIENTS} concurrent clients, one file per request, LOG_LEVEL=INFO; medians of {f.passes} passes "
        "(ratios: median, and range over the passes).",
        "",
        f"| | Orthanc | before ({before}) | after ({after}) | before / Orthanc | after / Orthanc | after / before |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, label in ROUNDS.items():
        lines.append(row(f, f"accept, {label} (files/s)", r, lambda figures: f.n / figures["accept"], "{:.0f}"))
    for r, label in ROUNDS.items():
        lines.append(row(f, f"server CPU per file, {label} (ms)", r, server_ms, "{:.2f}"))
    if f.processing:
        b, a = (f.n / f.processing[s] for s in ("before", "after"))
        bare = f.n / f.bare_pool
        lines += [
            f"| processing, 1 processor, until all `done` (files/s) | | {b:.1f} | {a:.1f} | | | **{a / b:.2f}x** |",
            "",
            f"Processing (first pass only) against a bare pydicom + numpy pool of 2 over the same files "
            f"({bare:.1f} files/s): before {b / bare:.2f}x, after **{a / bare:.2f}x**.",
        ]
    lines += [
        "",
        "CPU per accepted file by part (ms, user + system, median; RabbitMQ and PostgreSQL are the machine's shared "
        "servers, so other work on them counts too):",
        "",
        "| system, round | " + " | ".join(OUR_CPU_PARTS) + " |",
        "|---|" + "---|" * len(OUR_CPU_PARTS),
    ]
    for r, label in ROUNDS.items():
        for s in ("before", "after"):
            cells = [median(p[f"cpu:{part}"] for p in f.accept[(s, r)]) for part in OUR_CPU_PARTS]
            lines.append(f"| {s}, {label} | " + " | ".join(f"{ms:.2f}" for ms in cells) + " |")
    return lines


def row(f: PipelineFigures, label: str, round_no: int, value: Callable[[dict[str, float]], float], fmt: str) -> str:
    """One table row: the median of `value` for each server, then the medians (and ranges) of the passes' ratios."""
    per_pass = {s: [value(figures) for figures in f.accept[(s, round_no)]] for s in ("Orthanc", "before", "after")}
    cells = [fmt.format(median(values)) for values in per_pass.values()]
    pairs = (("before", "Orthanc"), ("after", "Orthanc"), ("after", "before"))
    ratios = [ratio_cell([x / y for x, y in zip(per_pass[a], per_pass[b], strict=True)]) for a, b in pairs]
    ratios[-1] = f"**{ratios[-1]}**"
    return f"| {label} | " + " | ".join(cells + ratios) + " |"


def ratio_cell(ratios: list[float]) -> str:
    text = f"{median(ratios):.2f}x"
    return text if len(ratios) == 1 else f"{text} ({min(ratios):.2f}-{max(ratios):.2f})"
