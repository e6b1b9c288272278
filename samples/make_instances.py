"""Make N new DICOM instances from the sample files, each with fresh UIDs, for tests and benchmarks.

Every instance gets a new SOP Instance UID; every `group` consecutive instances share a new
Study and Series Instance UID. Instances are produced one at a time (`iter_instances`), so a
caller can stream them into files, a zip archive or an HTTP body without holding them all.

    python samples/make_instances.py OUT_DIR --from sample-01-dicom.dcm=500 --from sample-02-dicom.dcm=200 [--zip A.zip]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

SAMPLES = Path(__file__).resolve().parent
SAMPLE_01 = SAMPLES / "sample-01-dicom.dcm"
SAMPLE_02 = SAMPLES / "sample-02-dicom.dcm"


def iter_instances(
    source: Path, count: int, *, group: int = 10, prefix: str | None = None
) -> Iterator[tuple[str, bytes]]:
    """Yield `count` (file name, Part 10 bytes) copies of `source` with new UIDs."""
    ds = pydicom.dcmread(source)
    stem = prefix or source.stem
    for index in range(count):
        if index % group == 0:
            ds.StudyInstanceUID = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index % group + 1
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        yield f"{stem}-{index:05d}.dcm", buffer.getvalue()


def iter_mix(counts: Iterable[tuple[Path, int]], *, group: int = 10) -> Iterator[tuple[str, bytes]]:
    """Instances from several sources one after the other, e.g. [(SAMPLE_01, 500), (SAMPLE_02, 200)]."""
    for source, count in counts:
        yield from iter_instances(source, count, group=group)


def write_files(instances: Iterable[tuple[str, bytes]], out_dir: Path) -> list[Path]:
    """Write each instance to `out_dir/<name>`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in instances:
        path = out_dir / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def write_zip(instances: Iterable[tuple[str, bytes]], archive: Path, *, compression: int = zipfile.ZIP_STORED) -> int:
    """Write the instances into one zip archive, one entry each; return the number of entries."""
    entries = 0
    with zipfile.ZipFile(archive, "w", compression=compression) as zf:
        for name, data in instances:
            zf.writestr(name, data)
            entries += 1
    return entries


def _source_count(text: str) -> tuple[Path, int]:
    name, _, count = text.partition("=")
    path = Path(name) if Path(name).is_file() else SAMPLES / name
    if not path.is_file() or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected SAMPLE=COUNT with an existing sample, got {text!r}")
    return path, int(count)


def main(argv: list[str] | None = None) -> None:
    """Command line: write the instances to a folder, or into a zip archive with --zip."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--from", dest="sources", type=_source_count, action="append", required=True)
    parser.add_argument("--group", type=int, default=10, help="Instances per study/series (default 10).")
    parser.add_argument("--zip", type=Path, help="Write one zip archive here instead of separate files.")
    args = parser.parse_args(argv)
    instances = iter_mix(args.sources, group=args.group)
    if args.zip:
        print(f"{write_zip(instances, args.zip)} instances in {args.zip}")
    else:
        print(f"{len(write_files(instances, args.out_dir))} instances in {args.out_dir}")


if __name__ == "__main__":
    main()
