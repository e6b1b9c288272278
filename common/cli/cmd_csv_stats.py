"""`dicomflow csv-stats FOLDER FILENAME`: the brief's CSV statistics, with both standard deviations named."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from common.app.logs import get_logger
from common.cli.support import add_file_argument, add_json_flag, file_path, number, print_json, print_table

log = get_logger("dicomflow.cli")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `csv-stats`."""
    parser = subparsers.add_parser(
        "csv-stats",
        help="columns, rows, mean and standard deviation of every numeric column of a CSV file",
        description="Both standard deviations are given: the sample one (n - 1) and the population one (n).",
    )
    add_file_argument(parser, "CSV file")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the table's figures; exit 1 (after printing the rest) when a column mixes numbers and text."""
    from common.brief.csvstats import csv_stats

    stats = csv_stats(file_path(args))
    for mixed in stats.mixed_columns:
        log.error(
            "csv_column_not_numeric",
            path=stats.path,
            column=mixed.column,
            first_bad_line=mixed.line,
            bad_cells=mixed.bad_cells,
            reason="the column holds numbers and text, so it has no mean or standard deviation",
        )
    if args.json:
        print_json(
            {
                "path": stats.path,
                "column_count": len(stats.columns),
                "columns": stats.columns,
                "row_count": stats.row_count,
                "std": "sample (n - 1) and population (n)",
                "numeric": {name: asdict(column) for name, column in stats.numeric.items()},
                "text_columns": stats.text_columns,
                "mixed_columns": [asdict(mixed) for mixed in stats.mixed_columns],
            }
        )
    else:
        print(f"{stats.path}: {len(stats.columns)} columns, {stats.row_count} rows")
        print(f"columns: {', '.join(stats.columns)}")
        if stats.text_columns:
            print(f"text columns (no statistics): {', '.join(stats.text_columns)}")
        for mixed in stats.mixed_columns:
            print(f"column {mixed.column} mixes numbers and text (line {mixed.line}: {mixed.value!r}): skipped")
        print_table(
            ("column", "count", "mean", "std (sample, n-1)", "std (population, n)"),
            [
                (name, c.count, number(c.mean), number(c.std_sample), number(c.std_population))
                for name, c in stats.numeric.items()
            ],
        )
    return 1 if stats.mixed_columns else 0
