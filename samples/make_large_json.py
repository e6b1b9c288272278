"""Generate the brief's large JSON file (`sample-03-01-json.json`), which is not distributed.

Deterministic: the same seed and sizes give the same bytes. 20 elements "1".."20", ids
aabbcc1..aabbcc20, 250 000 integers 0..100 each (10 per data string, like the brief's small
files), the maximum exactly 100 in every element, deviceName one of RX 1, CT SCAN, MRI.

    python samples/make_large_json.py [PATH] [--seed N] [--elements N] [--values N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

DEFAULT_PATH = Path(__file__).resolve().parent / "generated" / "sample-03-01-json.json"
DEVICES = ("RX 1", "CT SCAN", "MRI")
MAXIMUM = 100
PER_STRING = 10
_WORDS = [str(value) for value in range(MAXIMUM + 1)]


def make_elements(seed: int = 3_01, elements: int = 20, values: int = 250_000) -> dict[str, dict[str, object]]:
    """The document as Python data: `{"1": {"id": "aabbcc1", "data": [...], "deviceName": ...}, ...}`."""
    rng = np.random.default_rng(seed)
    document: dict[str, dict[str, object]] = {}
    for number in range(1, elements + 1):
        numbers = rng.integers(0, MAXIMUM + 1, size=values)
        numbers[rng.integers(0, values)] = MAXIMUM  # the maximum is exactly 100, whatever the draw
        flat = numbers.tolist()
        data = [" ".join(_WORDS[v] for v in flat[start : start + PER_STRING]) for start in range(0, values, PER_STRING)]
        document[str(number)] = {"id": f"aabbcc{number}", "data": data, "deviceName": DEVICES[rng.integers(3)]}
    return document


def write(path: Path, seed: int = 3_01, elements: int = 20, values: int = 250_000) -> Path:
    """Write the document to `path` (parents created), through a temporary file so it is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(make_elements(seed, elements, values), handle)
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: write the file and say where."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"output file (default {DEFAULT_PATH})"
    )
    parser.add_argument("--seed", type=int, default=3_01)
    parser.add_argument("--elements", type=int, default=20)
    parser.add_argument("--values", type=int, default=250_000)
    args = parser.parse_args(argv)
    if args.elements < 1 or args.values < 1:
        parser.error("--elements and --values must be >= 1")
    path = write(args.path, args.seed, args.elements, args.values)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
