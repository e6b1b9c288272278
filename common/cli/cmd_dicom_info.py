"""`dicomflow dicom-info FOLDER FILENAME [TAG ...]`: the brief's DICOM fields and any requested tag."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from common.cli.support import add_json_flag, print_json, print_table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dicom-info`."""
    parser = subparsers.add_parser(
        "dicom-info",
        help="patient name, study date, modality and any requested tag of a DICOM file",
        description=(
            "A TAG may be written 0x0008 0x0016 (group and element, two words), 0008,0016, (0008,0016), "
            "00080016 or as a keyword (SOPClassUID). Tags the file lacks are reported as missing."
        ),
    )
    parser.add_argument("folder", type=Path, metavar="FOLDER")
    parser.add_argument("filename", metavar="FILENAME")
    parser.add_argument("tags", nargs="*", metavar="TAG")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the three fields, then one line per requested tag."""
    from common.dicom.tags import summarise_dicom

    summary = summarise_dicom(args.folder / args.filename, args.tags)
    if args.json:
        print_json(asdict(summary))
        return 0
    print(f"file:          {summary.path}")
    print(f"patient name:  {summary.patient_name or '(missing)'}")
    print(f"study date:    {summary.study_date or '(missing)'}")
    print(f"modality:      {summary.modality or '(missing)'}")
    if summary.tags:
        print_table(
            ("tag", "keyword", "VR", "value"),
            [
                (tag.tag, tag.keyword or tag.name, tag.vr, _shown(tag.value) if tag.present else "(missing)")
                for tag in summary.tags
            ],
        )
    return 0


def _shown(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)
