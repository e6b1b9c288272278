"""Run the benchmarks: every `bench/bench_*.py` module's `main()` in name order, or only those named.

python -m bench                            # all of them
python -m bench process_json               # only bench_process_json (the `bench_` prefix is optional)
python -m bench pipeline --baseline HEAD~3 # options (from the first argument starting with -) go to the one named
"""

from __future__ import annotations

import importlib
import inspect
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
    first_option = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    given, options = argv[:first_option], argv[first_option:]
    wanted = [name if name.startswith(PREFIX) else PREFIX + name for name in given] or names
    unknown = [name for name in wanted if name not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    if options and len(wanted) != 1:
        print(f"options ({' '.join(options)}) apply to one benchmark: name exactly one", file=sys.stderr)
        return 2
    modules = {name: importlib.import_module(f"bench.{name}") for name in wanted}
    if options and not inspect.signature(modules[wanted[0]].main).parameters:
        print(f"{wanted[0]} takes no options", file=sys.stderr)
        return 2
    for name, module in modules.items():
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        module.main(options) if options else module.main()
        print(f"== {name} done in {time.perf_counter() - started:.1f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
