"""Run the benchmarks: every `bench/bench_*.py` module's `main()` in name order, or only those named.

python -m bench                   # all of them
python -m bench process_json      # only bench_process_json (the `bench_` prefix is optional)
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

PREFIX = "bench_"


def available() -> list[str]:
    """Names of the benchmark modules, in name order."""
    here = str(Path(__file__).resolve().parent)
    return sorted(info.name for info in pkgutil.iter_modules([here]) if info.name.startswith(PREFIX))


def main(argv: list[str]) -> int:
    names = available()
    wanted = [name if name.startswith(PREFIX) else PREFIX + name for name in argv] or names
    unknown = [name for name in wanted if name not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    for name in wanted:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"bench.{name}").main()
        print(f"== {name} done in {time.perf_counter() - started:.1f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
