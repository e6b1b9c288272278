"""`dicomflow dicom-info` and `dicomflow study`: the brief's DICOM tags and patient/study records."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from common.cli.support import add_file_argument, add_json_flag, file_path, print_json, print_table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dicom-info` and `study`."""
    info = subparsers.add_parser(
        "dicom-info",
        help="patient name, study date, modality and any requested tag of a DICOM file",
        description=(
            "A TAG may be written 0x0008 0x0016 (group and element, two words), 0008,0016, (0008,0016), "
            "00080016 or as a keyword (SOPClassUID). Tags the file lacks are reported as missing."
        ),
    )
    info.add_argument("folder", type=Path, metavar="FOLDER")
    info.add_argument("filename", metavar="FILENAME")
    info.add_argument("tags", nargs="*", metavar="TAG")
    add_json_flag(info)
    info.set_defaults(handler=run_dicom_info)

    study = subparsers.add_parser("study", help="every patient and study field of a DICOM file")
    add_file_argument(study, "DICOM file")
    add_json_flag(study)
    study.set_defaults(handler=run_study)


def run_dicom_info(args: argparse.Namespace) -> int:
    """Print the three fields, then one line per requested tag."""
    from common.dicomtags import summarise_dicom

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


def run_study(args: argparse.Namespace) -> int:
    """Print the `StudyRecord` loaded from the file."""
    from common.records import StudyRecord

    record = StudyRecord.from_dicom(file_path(args))
    if args.json:
        print_json(record.to_dict())
    else:
        print(record)
    return 0
