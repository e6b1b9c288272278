"""Helpers every subcommand shares: path arguments, argument types, JSON and table output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """`--json`: one JSON document on stdout instead of text for people."""
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def add_file_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """`FOLDER FILENAME` as in the brief, or a single path."""
    parser.add_argument("location", metavar="FOLDER|PATH", help=f"the folder of the {what}, or its whole path")
    parser.add_argument("filename", metavar="FILENAME", nargs="?", help=f"the name of the {what} in FOLDER")


def file_path(args: argparse.Namespace) -> Path:
    """The path named by the words of `add_file_argument`."""
    return Path(args.location, args.filename) if args.filename else Path(args.location)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


JSON_PIECE = 1024
"""Characters per write of a JSON document: at most 4 KiB of UTF-8, so each write fits in stdout's buffer."""


def print_json(document: object) -> None:
    """One JSON document on stdout, written in pieces smaller than stdout's buffer.

    Streamed rather than built whole, and in small pieces because of how CPython reports a reader that
    goes away: a single write larger than the buffer that the pipe takes only in part comes back as a
    short count, which the text layer ignores, so the rest would be dropped without an error and the
    command would exit 0; writes through the buffer raise BrokenPipeError, which the CLI turns into
    its quiet exit.
    """
    for chunk in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(document):
        for start in range(0, len(chunk), JSON_PIECE):
            sys.stdout.write(chunk[start : start + JSON_PIECE])
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns sized to their widest cell."""
    cells = [[str(cell) for cell in headers], *[["-" if cell is None else str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def number(value: float | None, digits: int = 6) -> str:
    """A float for people: fixed digits, or `-` when undefined."""
    return "-" if value is None else f"{value:.{digits}f}"
