"""The `dicomflow` console script, run as a real process: output, exit codes, logged errors, no tracebacks."""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "dicomflow"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def logs(self) -> list[dict[str, Any]]:
        """stderr as JSON log lines (stderr is not a terminal here, so the CLI logs JSON)."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]


def dicomflow(*args: str | Path, env: dict[str, str] | None = None) -> Run:
    environment = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "LOG_LEVEL")} | (env or {})
    done = subprocess.run(
        [str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=environment, timeout=60
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def assert_failed(run: Run, error: str, reason: str, code: int = 1) -> None:
    """Exit code, nothing on stdout, and one JSON log line naming the error and its reason."""
    assert run.code == code, run
    assert run.stdout == ""
    [failure] = [entry for entry in run.logs() if entry["level"] == "error"]
    assert failure["event"] == "command_failed"
    assert failure["error"] == error
    assert reason in failure["reason"]


def test_the_console_script_is_installed() -> None:
    assert SCRIPT.exists()
    run = dicomflow("--help")
    assert run.code == 0
    for command in ("ls", "csv-stats", "dicom-info", "study", "even-odd", "process-json"):
        assert command in run.stdout


def test_python_dash_m_runs_the_same_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "common.cli", "ls", "samples", "--json"], capture_output=True, cwd=ROOT
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["count"] == len(os.listdir(ROOT / "samples"))


# ls


def test_ls_counts_and_names_the_entries(samples_dir: Path) -> None:
    names = sorted(os.listdir(samples_dir))

    as_json = dicomflow("ls", samples_dir, "--json")
    as_text = dicomflow("ls", samples_dir)

    assert as_json.code == as_text.code == 0
    assert as_json.json()["count"] == len(names)
    assert [entry["name"] for entry in as_json.json()["entries"]] == names
    lines = as_text.stdout.splitlines()
    assert lines[0] == f"{len(names)} entries in {samples_dir}"
    assert [line.rstrip("/") for line in lines[1:]] == names


def test_ls_of_a_missing_folder_fails_with_its_reason(tmp_path: Path) -> None:
    assert_failed(dicomflow("ls", tmp_path / "nope"), "FolderError", "does not exist")


# csv-stats


def _expected_csv(path: Path) -> dict[str, tuple[float, float, float]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [name for name in rows[0] if name != "PatientID"]
    figures = {}
    for name in columns:
        values = [float(row[name]) for row in rows]
        figures[name] = (statistics.fmean(values), statistics.stdev(values), statistics.pstdev(values))
    return figures


@pytest.mark.parametrize("location", [["samples", "sample-01-csv.csv"], ["samples/sample-01-csv.csv"]])
def test_csv_stats_reports_columns_rows_means_and_both_stds(samples_dir: Path, location: list[str]) -> None:
    run = dicomflow("csv-stats", *location, "--json")

    assert run.code == 0
    report = run.json()
    assert report["column_count"] == 6 and report["row_count"] == 52
    assert report["columns"] == ["PatientID", "Age", "Weight", "Height", "Cholesterol", "HeartRate"]
    assert report["text_columns"] == ["PatientID"]
    assert "sample (n - 1)" in report["std"] and "population (n)" in report["std"]
    for name, (mean, std_sample, std_population) in _expected_csv(samples_dir / "sample-01-csv.csv").items():
        column = report["numeric"][name]
        assert column["mean"] == pytest.approx(mean, rel=1e-12)
        assert column["std_sample"] == pytest.approx(std_sample, rel=1e-12)
        assert column["std_population"] == pytest.approx(std_population, rel=1e-12)


def test_csv_stats_text_names_which_std(samples_dir: Path) -> None:
    run = dicomflow("csv-stats", samples_dir / "sample-01-csv.csv")

    assert run.code == 0
    assert "6 columns, 52 rows" in run.stdout
    assert "std (sample, n-1)" in run.stdout and "std (population, n)" in run.stdout
    age_mean, _, _ = _expected_csv(samples_dir / "sample-01-csv.csv")["Age"]
    assert f"{age_mean:.6f}" in run.stdout


def test_csv_stats_with_a_mixed_column_logs_it_reports_the_rest_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("id,age,weight\na,30,70\nb,n/a,80\n")

    run = dicomflow("csv-stats", path, "--json")

    assert run.code == 1
    assert run.json()["numeric"]["weight"]["mean"] == 75.0
    [entry] = run.logs()
    assert (entry["event"], entry["column"], entry["first_bad_line"]) == ("csv_column_not_numeric", "age", 3)


@pytest.mark.parametrize(
    ("content", "error", "reason"),
    [
        (None, "CsvNotFound", "does not exist"),
        (b"", "CsvEmpty", "is empty"),
        (b"a,b\n1,2\n3\n", "CsvRaggedRows", "line 3 has 1 fields"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "NotCsv", "binary"),
    ],
)
def test_csv_stats_errors_are_logged_with_their_reason(
    tmp_path: Path, content: bytes | None, error: str, reason: str
) -> None:
    path = tmp_path / "table.csv"
    if content is not None:
        path.write_bytes(content)

    assert_failed(dicomflow("csv-stats", tmp_path, "table.csv"), error, reason)


# dicom-info and study


def test_dicom_info_reads_the_fields_and_the_tags_in_the_brief_s_spelling(samples_dir: Path) -> None:
    reference = pydicom.dcmread(samples_dir / "sample-01-dicom.dcm", stop_before_pixels=True)

    run = dicomflow(
        "dicom-info", samples_dir, "sample-01-dicom.dcm", "0x0008", "0x0016", "(0028,0010)", "NumberOfFrames", "--json"
    )

    assert run.code == 0
    report = run.json()
    assert (report["patient_name"], report["modality"]) == (str(reference.PatientName), reference.Modality)
    assert report["study_date"] == "2009-09-25"
    assert [(t["tag"], t["present"], t["value"]) for t in report["tags"]] == [
        ("(0008,0016)", True, str(reference.SOPClassUID)),
        ("(0028,0010)", True, reference.Rows),
        ("(0028,0008)", False, None),
    ]


def test_dicom_info_text_marks_missing_tags(samples_dir: Path) -> None:
    run = dicomflow("dicom-info", samples_dir, "sample-02-dicom.dcm", "00280008", "WindowCenter")

    assert run.code == 0
    assert "patient name:  Rubo DEMO" in run.stdout
    assert "modality:      XA" in run.stdout
    lines = run.stdout.splitlines()
    assert any(line.startswith("(0028,0008)") and line.endswith("96") for line in lines)
    assert any(line.startswith("(0028,1050)") and line.endswith("(missing)") for line in lines)


@pytest.mark.parametrize(
    ("folder", "name", "tags", "error", "reason"),
    [
        ("samples", "nope.dcm", [], "DicomNotFound", "does not exist"),
        ("samples", "sample-01-csv.csv", [], "NotDicom", "is not a DICOM file"),
        ("samples", "sample-01-dicom.dcm", ["NoSuchKeyword"], "TagSpecError", "not a DICOM keyword"),
        ("samples", "sample-01-dicom.dcm", ["0x0008"], "TagSpecError", "without its element"),
    ],
)
def test_dicom_info_errors_are_logged_with_their_reason(
    folder: str, name: str, tags: list[str], error: str, reason: str
) -> None:
    assert_failed(dicomflow("dicom-info", folder, name, *tags), error, reason)


def test_study_prints_every_field_of_both_samples(samples_dir: Path) -> None:
    first = dicomflow("study", samples_dir, "sample-01-dicom.dcm", "--json")
    second = dicomflow("study", samples_dir / "sample-02-dicom.dcm")

    assert first.code == second.code == 0
    assert first.json()["modality"] == "MR" and first.json()["number_of_frames"] == 1
    assert first.json()["series_number"] == 18
    assert "number of frames    96" in second.stdout
    assert "study time          14:19:17" in second.stdout
    assert "sex              M" in second.stdout


def test_study_of_a_file_that_is_not_dicom_fails(samples_dir: Path) -> None:
    assert_failed(dicomflow("study", samples_dir / "sample-04-json.json"), "NotDicom", "is not a DICOM file")


# even-odd


def test_even_odd_prints_in_order_from_the_right_thread() -> None:
    text = dicomflow("even-odd", "--interval", "0.005", "--upto", "12")
    as_json = dicomflow("even-odd", "--interval", "0", "--upto", "7", "--json")

    assert text.code == as_json.code == 0
    printed = [line.split() for line in text.stdout.splitlines()]
    assert printed == [[str(n), "even" if n % 2 == 0 else "odd"] for n in range(1, 13)]
    numbers = as_json.json()["numbers"]
    assert [(n["number"], n["thread"]) for n in numbers] == [(n, "even" if n % 2 == 0 else "odd") for n in range(1, 8)]


def test_even_odd_stops_on_ctrl_c_with_exit_130() -> None:
    """Number 2 is due in an hour, so the printer is waiting when Ctrl-C comes: it must end the wait at once."""
    process = subprocess.Popen(
        [str(SCRIPT), "even-odd", "--interval", "3600", "--upto", "1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell may ignore it
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)  # a liveness bound, far below the hour

    assert process.returncode == 130
    assert first.split() == ["1", "odd"]
    assert stdout == ""  # nothing after 1: the wait for 2 was cut short
    assert "Traceback" not in stderr
    assert json.loads(stderr.splitlines()[-1])["event"] == "interrupted"


def test_even_odd_ends_quietly_when_stdout_is_closed() -> None:
    with subprocess.Popen(
        [str(SCRIPT), "even-odd", "--interval", "0", "--upto", "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.readline()
        process.stdout.close()
        code = process.wait(timeout=60)  # a liveness bound
        stderr = process.stderr.read()

    assert code == 128 + signal.SIGPIPE  # what a shell reports for a process that SIGPIPE ended
    assert "Traceback" not in stderr


@pytest.mark.parametrize("args", [["--upto", "0"], ["--interval", "-1"], ["--interval", "soon"]])
def test_even_odd_refuses_bad_arguments_as_a_usage_error(args: list[str]) -> None:
    run = dicomflow("even-odd", *args)

    assert run.code == 2
    assert run.stdout == ""
    [entry] = run.logs()
    assert entry["event"] == "usage_error"


# process-json


def test_process_json_prints_logs_and_reports_every_element(samples_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "shared.log"

    run = dicomflow("process-json", samples_dir, "sample-04-json.json", "--log", log, "--json")

    assert run.code == 0
    report = run.json()
    assert (report["elements"], report["processed"], report["failed"]) == (50, 50, 0)
    assert report["peak_threads"] == 4
    elements = json.loads((samples_dir / "sample-04-json.json").read_text())
    for result in report["results"]:
        values = [int(t) for row in elements[result["key"]]["data"] for t in row.split()]
        assert result["average_before"] == pytest.approx(sum(values) / len(values), rel=1e-12)
        assert result["average_after"] == pytest.approx(sum(v / max(values) for v in values) / len(values), rel=1e-12)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(1 for r in records if r["event"] == "element_processed") == 50


def test_process_json_text_shows_each_element_and_a_summary(samples_dir: Path, tmp_path: Path) -> None:
    run = dicomflow("process-json", samples_dir / "sample-03-00-json.json", "--log", tmp_path / "x.log")

    assert run.code == 0
    assert "element 1: id aabbcc1" in run.stdout and "element 2: id aabbcc2" in run.stdout
    assert "average before" in run.stdout
    assert run.stdout.splitlines()[-1].startswith("2 elements: 2 processed, 0 failed")


def test_process_json_with_a_bad_element_finishes_the_others_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"1": {"id": "a", "data": ["1 2 3"]}, "2": {"id": "b", "data": ["0 0"]}}))

    run = dicomflow("process-json", path, "--log", tmp_path / "x.log", "--json", "--max-threads", "1")

    assert run.code == 1
    report = run.json()
    assert (report["processed"], report["failed"]) == (1, 1)
    assert "maximum of data is 0" in report["results"][1]["error"]
    [entry] = run.logs()
    assert (entry["event"], entry["key"]) == ("element_failed", "2")


def test_process_json_of_a_missing_file_fails(tmp_path: Path) -> None:
    run = dicomflow("process-json", tmp_path, "nope.json", "--log", tmp_path / "x.log")

    assert_failed(run, "JsonFileError", "does not exist")


def test_process_json_starts_without_what_other_commands_import() -> None:
    heavy = ("pydicom", "pydantic", "aiohttp", "aio_pika", "numpy")
    code = (
        "import sys; from common.cli.main import main; "
        "main(['process-json', 'samples/sample-03-00-json.json', '--log', '/dev/null', '--json']); "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)

    assert done.stderr.strip().splitlines()[-1] == "['numpy']"


def test_every_command_lives_in_the_module_named_after_it() -> None:
    """So that running a command imports only its own module (see common.cli.main.command_modules)."""
    from common.cli.main import build_parser, command_modules, module_name_for

    everything = build_parser()
    commands = sorted(everything._subparsers._group_actions[0].choices)  # type: ignore[union-attr]

    assert {"ls", "csv-stats", "dicom-info", "study", "even-odd", "process-json"} <= set(commands)
    for command in commands:
        [module] = command_modules(command)
        assert module.__name__.rsplit(".", 1)[1] == module_name_for(command), command


# errors in general


def test_console_log_format_for_people(tmp_path: Path) -> None:
    run = dicomflow("ls", tmp_path / "nope", env={"LOG_FORMAT": "console"})

    assert run.code == 1
    assert run.logs() == []
    assert "command_failed" in run.stderr and "does not exist" in run.stderr


def test_an_unknown_command_is_a_usage_error() -> None:
    run = dicomflow("frobnicate")

    assert run.code == 2
    assert run.logs()[0]["event"] == "usage_error"
