"""Folder listing (the brief's exercise 1): count the entries of a folder and name them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common.brief.opening import explain_open_errors

EntryKind = Literal["file", "directory", "symlink", "other"]


class FolderError(ValueError):
    """The folder cannot be listed; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class FolderEntry:
    """One entry of a folder: its name and what kind of thing it is (links are not followed)."""

    name: str
    kind: EntryKind


def list_folder(folder: str | os.PathLike[str]) -> list[FolderEntry]:
    """Every entry of `folder` (hidden ones included), sorted by name."""
    path = Path(folder)
    with explain_open_errors(path, "folder", FolderError), os.scandir(path) as scan:
        entries = [FolderEntry(entry.name, _kind(entry)) for entry in scan]
    return sorted(entries, key=lambda entry: entry.name)


def _kind(entry: os.DirEntry[str]) -> EntryKind:
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "directory"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return "other"
