"""`dicomflow even-odd`: the brief's two threads printing 1..N in order."""

from __future__ import annotations

import argparse

from common.cli.support import add_json_flag, non_negative_float, positive_int, print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `even-odd`."""
    parser = subparsers.add_parser(
        "even-odd", help="two threads print 1..N in order, one the odd and one the even numbers"
    )
    parser.add_argument("--interval", type=non_negative_float, default=0.5, help="seconds per number (0.5)")
    parser.add_argument("--upto", type=positive_int, default=200, help="last number (200)")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the numbers as they come; with --json, one document at the end."""
    from common.brief.evenodd import EvenOdd, print_number

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
