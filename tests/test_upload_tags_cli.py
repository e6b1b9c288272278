"""`dicomflow upload`'s tag options through the command line: dry run and verification print and send nothing,
bad rules are usage errors (2), a metadata service that cannot be reached is exit 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.cli.main import main
from samples.make_instances import SAMPLE_01

UNREACHABLE = "http://127.0.0.1:9/samples/{sample_id}"  # nothing listens on the discard port here


@pytest.fixture(name="folder")
def folder_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # a run with --sample-id logs to ./<sample_id>-<attempt>.log
    folder = tmp_path / "sample"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(SAMPLE_01.read_bytes())
    return folder


def test_dry_run_prints_every_change_and_sends_nothing(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (folder / "a.dcm").read_bytes()
    words = ["upload", str(folder), "--set-tag", "PatientID={sample_id}-{attempt}", "--sample-id", "S1", "--dry-run"]
    assert main([*words, "--server", "http://127.0.0.1:9"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{folder / 'a.dcm'}: PatientID: 'Anon474899' -> 'S1-1'",
        "1 of 1 files disagree with the tag rules; 0 cannot be rewritten",
    ]
    assert (folder / "a.dcm").read_bytes() == before


def test_verify_only_exits_1_when_a_file_disagrees_and_0_when_all_agree(folder: Path) -> None:
    assert main(["upload", str(folder), "--set-tag", "PatientID=other", "--verify-only"]) == 1
    assert main(["upload", str(folder), "--set-tag", "PatientID=Anon474899", "--verify-only"]) == 0


@pytest.mark.parametrize(
    "words",
    [
        ["--set-tag", "PatientIdentifier=x"],
        ["--set-tag", "StudyDate=yesterday"],
        ["--set-tag", "PatientID={sample_id}"],
        ["--set-tag", "PatientID={a.b}"],
        ["--mapping", "/nonexistent/mapping.txt"],
        ["--set-tag", "PatientID=x", "--dry-run", "--trigger-url", "http://127.0.0.1:9/run"],
        ["--dry-run"],
    ],
)
def test_bad_tag_options_are_usage_errors(folder: Path, words: list[str]) -> None:
    assert main(["upload", str(folder), *words]) == 2


def test_an_unreachable_metadata_service_is_exit_3(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMFLOW_TOKEN", "not-used-before-the-metadata")
    words = ["upload", str(folder), "--set-tag", "PatientID={sample_id}", "--sample-id", "S1"]
    words += ["--metadata-url", UNREACHABLE, "--max-retries", "0", "--server", "http://127.0.0.1:9"]
    assert main([*words, "--dry-run"]) == 3
    assert main(words) == 3
    assert '"service": "metadata service"' in (folder.parent / "S1-1.log").read_text()
