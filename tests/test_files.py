"""Folder listing: every entry counted and named, with its kind; clear errors for bad folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.brief.files import FolderEntry, FolderError, list_folder


def test_lists_every_entry_sorted_with_its_kind(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / ".hidden").write_text("h")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "b.txt")

    entries = list_folder(tmp_path)

    assert entries == [
        FolderEntry(".hidden", "file"),
        FolderEntry("a_folder", "directory"),
        FolderEntry("b.txt", "file"),
        FolderEntry("link", "symlink"),
    ]


def test_counts_the_samples_folder_like_the_operating_system(samples_dir: Path) -> None:
    entries = list_folder(samples_dir)

    assert [entry.name for entry in entries] == sorted(os.listdir(samples_dir))
    assert {"sample-01-csv.csv", "sample-01-dicom.dcm", "sample-04-json.json"} <= {e.name for e in entries}


def test_an_empty_folder_has_no_entries(tmp_path: Path) -> None:
    assert list_folder(tmp_path) == []


def test_a_missing_folder_is_refused_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(FolderError, match="does not exist"):
        list_folder(tmp_path / "nope")


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "file.txt"
    file.write_text("x")

    with pytest.raises(FolderError, match="is not a folder"):
        list_folder(file)
