"""`dicomflow study FILE`: the brief's patient and study record, loaded from a DICOM file."""

from __future__ import annotations

import argparse

from common.cli.support import add_file_argument, add_json_flag, file_path, print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `study`."""
    parser = subparsers.add_parser("study", help="every patient and study field of a DICOM file")
    add_file_argument(parser, "DICOM file")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the `StudyRecord` loaded from the file."""
    from common.brief.records import StudyRecord

    record = StudyRecord.from_dicom(file_path(args))
    if args.json:
        print_json(record.to_dict())
    else:
        print(record)
    return 0
