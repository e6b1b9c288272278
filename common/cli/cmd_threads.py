"""`dicomflow even-odd` and `dicomflow process-json`: the brief's threading exercises."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli.support import (
    add_file_argument,
    add_json_flag,
    file_path,
    non_negative_float,
    positive_int,
    print_json,
)

DEFAULT_LOG = Path("var/process-json.log")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `even-odd` and `process-json`."""
    even_odd = subparsers.add_parser(
        "even-odd", help="two threads print 1..N in order, one the odd and one the even numbers"
    )
    even_odd.add_argument("--interval", type=non_negative_float, default=0.5, help="seconds per number (0.5)")
    even_odd.add_argument("--upto", type=positive_int, default=200, help="last number (200)")
    add_json_flag(even_odd)
    even_odd.set_defaults(handler=run_even_odd)

    process = subparsers.add_parser(
        "process-json",
        help="normalise every element of a JSON file in its own thread, at most --max-threads at once",
        description="Each element's data is divided by its maximum; averages before and after and the size "
        "are printed and appended to one shared log file (JSON lines).",
    )
    add_file_argument(process, "JSON file")
    process.add_argument("--max-threads", type=positive_int, default=4, help="worker threads alive at once (4)")
    process.add_argument("--log", type=Path, default=DEFAULT_LOG, help=f"shared log file ({DEFAULT_LOG})")
    add_json_flag(process)
    process.set_defaults(handler=run_process_json)


def run_even_odd(args: argparse.Namespace) -> int:
    """Print the numbers as they come; with --json, one document at the end."""
    from common.evenodd import EvenOdd, print_number

    printed = EvenOdd(args.upto, args.interval, emit=_silent if args.json else print_number).run()
    if args.json:
        print_json(
            {
                "upto": args.upto,
                "interval": args.interval,
                "numbers": [{"number": p.number, "thread": p.thread, "at_s": round(p.at, 6)} for p in printed],
            }
        )
    return 0


def _silent(number: int, thread: str) -> None:
    """--json prints nothing until the end."""


def run_process_json(args: argparse.Namespace) -> int:
    """Process the file; exit 1 when some element failed (the others are still reported)."""
    from common.json_threads import print_line, process_json_file

    summary = process_json_file(
        file_path(args),
        args.log,
        max_threads=args.max_threads,
        emit=None if args.json else print_line,
    )
    document = summary.to_dict()
    if args.json:
        print_json(document)
    else:
        print_line(
            f"{document['elements']} elements: {document['processed']} processed, {document['failed']} failed; "
            f"at most {document['peak_threads']} threads alive; log: {document['log']}"
        )
    return 1 if summary.failed else 0
