"""`dicomflow process-json`: the brief's threaded JSON processor with its shared log file."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli.support import add_file_argument, add_json_flag, file_path, positive_int, print_json

DEFAULT_LOG = Path("var/process-json.log")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `process-json`."""
    parser = subparsers.add_parser(
        "process-json",
        help="normalise every element of a JSON file in its own thread, at most --max-threads at once",
        description="Each element's data is divided by its maximum; averages before and after and the size "
        "are printed and appended to one shared log file (JSON lines).",
    )
    add_file_argument(parser, "JSON file")
    parser.add_argument("--max-threads", type=positive_int, default=4, help="worker threads alive at once (4)")
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG, help=f"shared log file ({DEFAULT_LOG})")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Process the file; exit 1 when some element failed (the others are still reported)."""
    from common.brief.json_threads import print_line, process_json_file

    summary = process_json_file(
        file_path(args), args.log, max_threads=args.max_threads, emit=None if args.json else print_line
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
