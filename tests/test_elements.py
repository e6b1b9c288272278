"""The elements' normalising function: pure-Python figures, both parsers agreeing, every bad input refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from common.brief.elements import ElementDataError, normalise, parse_data, summarise


def _python_figures(data: list[str]) -> tuple[float, float, int, float]:
    """First principles: str.split + float, max, value / max, sums over n."""
    values = [float(token) for row in data for token in row.split()]
    maximum = max(values)
    return sum(values) / len(values), sum(v / maximum for v in values) / len(values), len(values), maximum


@pytest.mark.parametrize("name", ["sample-03-00-json.json", "sample-04-json.json"])
def test_figures_of_every_sample_element_match_pure_python(samples_dir: Path, name: str) -> None:
    elements = json.loads((samples_dir / name).read_text())

    for key, element in elements.items():
        before, after, size, maximum = _python_figures(element["data"])
        figures = summarise(element["data"])
        assert figures.average_before == pytest.approx(before, rel=1e-12), key
        assert figures.average_after == pytest.approx(after, rel=1e-12), key
        assert (figures.data_size, figures.maximum) == (size, maximum), key


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (["1 2 3"], [1, 2, 3]),
        (["  7  ", "8"], [7, 8]),
        (["0099 100", "0"], [99, 100, 0]),
        (["1.5 2", "3e2"], [1.5, 2, 300]),
        (["-1 +2"], [-1, 2]),
        (["1\t2\n3"], [1, 2, 3]),
        (["123456789012345 1"], [123456789012345, 1]),
        (["12345678901234567"], [12345678901234567]),
    ],
)
def test_parse_data_reads_integers_and_general_numbers(data: list[str], expected: list[float]) -> None:
    assert parse_data(data).tolist() == [float(value) for value in expected]


def test_the_integer_fast_path_agrees_with_float_on_random_rows() -> None:
    rng = random.Random(7)
    rows = [
        " ".join(str(rng.randint(0, 10 ** rng.randint(0, 12))) for _ in range(rng.randint(1, 20))) for _ in range(500)
    ]

    assert parse_data(rows).tolist() == [float(token) for row in rows for token in row.split()]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("1 2 3", "list of strings"),
        ([1, 2, 3], "list of strings"),
        (None, "list of strings"),
        ([], "empty"),
        (["   ", ""], "no numbers"),
        (["1 2 x3"], "non-numeric value: 'x3'"),
        (["1 2", "3 4,5"], "non-numeric value: '4,5'"),
        (["1 nan"], "not a finite number|non-numeric"),
        (["1 inf"], "not a finite number|non-numeric"),
        (["1e400"], "not a finite number|non-numeric"),
    ],
)
def test_bad_data_is_refused_with_its_reason(data: object, reason: str) -> None:
    with pytest.raises(ElementDataError, match=reason):
        summarise(data)


def test_a_maximum_of_zero_cannot_normalise() -> None:
    with pytest.raises(ElementDataError, match="maximum of data is 0"):
        summarise(["0 0", "0"])


def test_negative_values_cannot_be_normalised_by_the_maximum() -> None:
    with pytest.raises(ElementDataError, match="negative"):
        normalise(np.array([-1.0, 2.0]))


def test_normalising_makes_the_maximum_one() -> None:
    assert normalise(np.array([0.0, 25.0, 50.0])).tolist() == [0.0, 0.5, 1.0]
