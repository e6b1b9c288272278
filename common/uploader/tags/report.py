"""Verify and dry-run: what each file's copy would change, listed for people or as one JSON document.

Verify lists the files whose current tags disagree with what the rules (the metadata) say, keyword by keyword,
current value against expected; a dry run lists every change of every file, and the files that stay as they are.
Neither encodes nor sends anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.cli.support import print_json
from common.uploader.tags.options import DRY_RUN, TagOptions
from common.uploader.tags.rewrite import TagChange, TagRewriteError, TagRewriter


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One file's planned changes, or why it cannot be rewritten."""

    path: Path
    changes: list[TagChange] = field(default_factory=list)
    error: str | None = None


async def check_files(rewriter: TagRewriter, paths: Iterable[Path]) -> list[FileCheck]:
    """Each file's changes (headers only, one file at a time)."""
    checks: list[FileCheck] = []
    for path in paths:
        try:
            checks.append(FileCheck(path, await rewriter.inspect(path)))
        except TagRewriteError as e:
            checks.append(FileCheck(path, error=e.reason))
    return checks


def checks_document(checks: list[FileCheck], mode: str) -> dict[str, Any]:
    """The `--json` form: counts and, per file, its changes (`current` null when the tag is absent) or error."""
    return {
        "mode": mode,
        "files": len(checks),
        "disagreeing": sum(1 for check in checks if check.changes),
        "errors": sum(1 for check in checks if check.error),
        "checks": [
            {
                "path": str(check.path),
                "changes": [{"keyword": c.keyword, "current": c.current, "expected": c.new} for c in check.changes],
                "error": check.error,
            }
            for check in checks
        ],
    }


def checks_lines(checks: list[FileCheck], *, every_file: bool) -> list[str]:
    """Lines for people: `path: Keyword: 'current' -> 'expected'` per change, `path: cannot be rewritten: why` per
    error, and with `every_file` (the dry run) `path: unchanged` for the rest; then a count."""
    lines: list[str] = []
    for check in checks:
        if check.error:
            lines.append(f"{check.path}: cannot be rewritten: {check.error}")
        for change in check.changes:
            current = "(absent)" if change.current is None else repr(change.current)
            lines.append(f"{check.path}: {change.keyword}: {current} -> {change.new!r}")
        if every_file and not check.changes and not check.error:
            lines.append(f"{check.path}: unchanged")
    disagreeing = sum(1 for check in checks if check.changes)
    errors = sum(1 for check in checks if check.error)
    lines.append(f"{disagreeing} of {len(checks)} files disagree with the tag rules; {errors} cannot be rewritten")
    return lines


async def run_check_mode(options: TagOptions, rewriter: TagRewriter, paths: list[Path], *, as_json: bool) -> int:
    """`--dry-run` or `--verify-only`: print the checks, send nothing; the exit status. A dry run exits 1 only when
    a file cannot be rewritten; a verification also when a file disagrees."""
    checks = await check_files(rewriter, paths)
    if as_json:
        print_json(checks_document(checks, options.mode))
    else:
        print("\n".join(checks_lines(checks, every_file=options.mode == DRY_RUN)))
    failed = any(check.error for check in checks)
    disagree = any(check.changes for check in checks)
    return 1 if failed or (disagree and options.mode != DRY_RUN) else 0
