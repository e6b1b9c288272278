"""`dicomflow ls FOLDER`: the brief's folder listing."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from common.cli.support import add_json_flag, print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ls`."""
    parser = subparsers.add_parser("ls", help="count the entries of a folder and list them")
    parser.add_argument("folder", type=Path, metavar="FOLDER")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the number of entries, then their names (folders end with `/`)."""
    from common.brief.files import list_folder

    entries = list_folder(args.folder)
    if args.json:
        print_json({"folder": str(args.folder), "count": len(entries), "entries": [asdict(e) for e in entries]})
        return 0
    print(f"{len(entries)} entries in {args.folder}")
    for entry in entries:
        print(entry.name + ("/" if entry.kind == "directory" else ""))
    return 0
