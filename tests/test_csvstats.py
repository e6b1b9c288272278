"""CSV statistics: exact figures from the csv and statistics modules, and one clear error per kind of bad file."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from common.brief.csvstats import CsvEmpty, CsvNotFound, CsvRaggedRows, NotCsv, csv_stats


def _expected_columns(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _mean_and_stds(values: list[float]) -> tuple[float, float, float]:
    """First principles: sum / n, and the root of the squared deviations over n - 1 and over n."""
    n = len(values)
    mean = sum(values) / n
    squares = sum((value - mean) ** 2 for value in values)
    return mean, math.sqrt(squares / (n - 1)), math.sqrt(squares / n)


def test_sample_figures_match_first_principles(samples_dir: Path) -> None:
    path = samples_dir / "sample-01-csv.csv"
    header, rows = _expected_columns(path)

    stats = csv_stats(path)

    assert stats.columns == header == ["PatientID", "Age", "Weight", "Height", "Cholesterol", "HeartRate"]
    assert stats.row_count == len(rows) == 52
    assert stats.text_columns == ["PatientID"]
    assert stats.mixed_columns == []
    assert list(stats.numeric) == header[1:]
    for index, name in enumerate(header[1:], start=1):
        mean, std_sample, std_population = _mean_and_stds([float(row[index]) for row in rows])
        figures = stats.numeric[name]
        assert figures.count == 52
        assert figures.missing == 0
        assert figures.mean == pytest.approx(mean, rel=1e-12)
        assert figures.std_sample == pytest.approx(std_sample, rel=1e-12)
        assert figures.std_population == pytest.approx(std_population, rel=1e-12)


def test_empty_cells_are_missing_not_errors(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("a,b\n1,x\n,y\n3,z\n\n")

    stats = csv_stats(path)

    assert stats.row_count == 3
    assert stats.numeric["a"].count == 2
    assert stats.numeric["a"].missing == 1
    assert stats.numeric["a"].mean == 2.0
    assert stats.numeric["a"].std_sample == pytest.approx(math.sqrt(2.0))
    assert stats.text_columns == ["b"]


def test_one_value_has_no_sample_std(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("a\n5\n")

    figures = csv_stats(path).numeric["a"]

    assert (figures.mean, figures.std_sample, figures.std_population) == (5.0, None, 0.0)


def test_a_column_mixing_numbers_and_text_is_reported_and_the_others_still_computed(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("id,age,weight\na,30,70\nb,n/a,80\nc,40,oops\nd,50,90\n")

    stats = csv_stats(path)

    assert [(m.column, m.line, m.value, m.bad_cells) for m in stats.mixed_columns] == [
        ("age", 3, "n/a", 1),
        ("weight", 4, "oops", 1),
    ]
    assert stats.numeric == {}
    assert stats.text_columns == ["id"]


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CsvNotFound, match="does not exist"):
        csv_stats(tmp_path / "nope.csv")


def test_a_folder_is_not_a_csv(tmp_path: Path) -> None:
    with pytest.raises(NotCsv, match="is a folder"):
        csv_stats(tmp_path)


def test_a_binary_file_is_not_a_csv(samples_dir: Path) -> None:
    with pytest.raises(NotCsv, match="binary"):
        csv_stats(samples_dir / "sample-01-dicom.dcm")


def test_text_that_is_not_utf8_is_not_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"a,b\n\xe9\xe8\xff,1\n")

    with pytest.raises(NotCsv, match="UTF-8"):
        csv_stats(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)

    with pytest.raises(CsvEmpty, match="is empty"):
        csv_stats(path)


def test_a_header_without_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("a,b\n")

    with pytest.raises(CsvEmpty, match="no data rows"):
        csv_stats(path)


def test_a_ragged_row_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")

    with pytest.raises(CsvRaggedRows, match="line 3 has 2 fields, the header has 3"):
        csv_stats(path)


def test_a_repeated_column_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "repeat.csv"
    path.write_text("a,a\n1,2\n")

    with pytest.raises(NotCsv, match="repeats a column name"):
        csv_stats(path)
