"""CSV statistics (the brief's exercise 2): columns, rows, mean and standard deviation per numeric column.

Both standard deviations are reported and named: the sample one (divisor n - 1, what pandas'
`describe` shows) and the population one (divisor n). A column is numeric when every non-empty
cell is a finite number; empty cells count as missing. A column with no number at all is text
(the sample's `PatientID`). A column mixing numbers and text is reported as such, so the caller
can log it, while the other columns are still computed.
"""

from __future__ import annotations

import _csv
import csv
import math
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common.brief.opening import explain_open_errors

_SNIFF_BYTES = 4096


class CsvError(ValueError):
    """The file cannot be read as a CSV table; the message says why, for a person."""


class CsvNotFound(CsvError):
    """The path does not exist."""


class NotCsv(CsvError):
    """The path is a folder, or binary, or not UTF-8 text."""


class CsvEmpty(CsvError):
    """The file has no header, or a header and no data rows."""


class CsvRaggedRows(CsvError):
    """A data row has a different number of fields than the header."""


@dataclass(frozen=True, slots=True)
class ColumnStats:
    """Figures of one numeric column; a std is None when it is undefined (too few values)."""

    count: int
    missing: int
    mean: float
    std_sample: float | None
    std_population: float


@dataclass(frozen=True, slots=True)
class MixedColumn:
    """A column with numbers and some text: where the first text cell is and how many there are."""

    column: str
    line: int
    value: str
    bad_cells: int


@dataclass(slots=True)
class CsvStats:
    """The whole report for one file."""

    path: str
    columns: list[str]
    row_count: int
    numeric: dict[str, ColumnStats] = field(default_factory=dict)
    text_columns: list[str] = field(default_factory=list)
    mixed_columns: list[MixedColumn] = field(default_factory=list)


@dataclass(slots=True)
class _Column:
    values: list[float] = field(default_factory=list)
    missing: int = 0
    bad_cells: int = 0
    first_bad: tuple[int, str] | None = None


def csv_stats(path: str | os.PathLike[str]) -> CsvStats:
    """Read the CSV at `path` (first row = header) and compute its figures."""
    file = Path(path)
    _check_is_text(file)
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = _read_header(reader, file)
            columns = [_Column() for _ in header]
            rows = _read_rows(reader, file, columns)
        except (UnicodeDecodeError, csv.Error) as e:
            raise NotCsv(f"{file.name} is not a CSV file: {e}") from e
    if rows == 0:
        raise CsvEmpty(f"{file.name} has a header but no data rows")
    return _report(file, header, rows, columns)


def _check_is_text(file: Path) -> None:
    """Refuse folders, missing files, binary and non-UTF-8 files before the csv module sees them."""
    with (
        explain_open_errors(file, "CSV file", CsvError, missing=CsvNotFound, wrong_kind=NotCsv),
        file.open("rb") as handle,
    ):
        head = handle.read(_SNIFF_BYTES)
    if not head.strip():
        raise CsvEmpty(f"{file.name} is empty")
    if b"\x00" in head:
        raise NotCsv(f"{file.name} is not a CSV file: it holds binary data")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut by the read boundary
            raise NotCsv(f"{file.name} is not a CSV file: it is not UTF-8 text") from e


def _read_header(reader: Iterator[list[str]], file: Path) -> list[str]:
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            if len(set(header)) != len(header):
                raise NotCsv(f"{file.name}: the header repeats a column name: {header}")
            return header
    raise CsvEmpty(f"{file.name} is empty")


def _read_rows(reader: _csv.Reader, file: Path, columns: list[_Column]) -> int:
    """Feed every data row into `columns`; the number of data rows."""
    rows = 0
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank lines (a trailing newline) are not rows
        if len(row) != len(columns):
            raise CsvRaggedRows(
                f"{file.name}: the row on line {reader.line_num} has {len(row)} fields, the header has {len(columns)}"
            )
        rows += 1
        for column, cell in zip(columns, row, strict=True):
            _add_cell(column, cell.strip(), reader.line_num)
    return rows


def _add_cell(column: _Column, cell: str, line: int) -> None:
    if not cell:
        column.missing += 1
        return
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if math.isfinite(value):
        column.values.append(value)
        return
    column.bad_cells += 1
    if column.first_bad is None:
        column.first_bad = (line, cell)


def _report(file: Path, header: list[str], rows: int, columns: list[_Column]) -> CsvStats:
    stats = CsvStats(path=str(file), columns=header, row_count=rows)
    for name, column in zip(header, columns, strict=True):
        if not column.values:
            stats.text_columns.append(name)
        elif column.first_bad is not None:
            line, value = column.first_bad
            stats.mixed_columns.append(MixedColumn(name, line, value, column.bad_cells))
        else:
            values = column.values
            stats.numeric[name] = ColumnStats(
                count=len(values),
                missing=column.missing,
                mean=statistics.fmean(values),
                std_sample=statistics.stdev(values) if len(values) > 1 else None,
                std_population=statistics.pstdev(values),
            )
    return stats
