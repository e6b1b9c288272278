"""What a run did, file by file: the `--json` document, the lines printed for people, and the exit status.

Exit status (the issue's contract): 0 when every file is on the server (accepted, a duplicate, or skipped as
already there) and, with `--wait`, every instance ended `done`; 1 when a file was rejected, not sent, or its
instance `failed`; 3 when the server (or a metadata or trigger service) could not be reached after the retries.
Usage errors (2) never get this far.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

from pydantic import BaseModel, Field

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREACHABLE = 3


class Outcome(StrEnum):
    """What became of one local file."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """Sent, and the server already held the bytes (also a retried file the server had taken): counts as sent."""
    SKIPPED = "skipped"
    """Not sent: the resume lookup found the bytes on the server already."""
    REJECTED = "rejected"
    NOT_SENT = "not_sent"
    """Not registered: an `--atomic` upload refused because of another file, or a run that stopped early."""


ON_SERVER = frozenset({Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.SKIPPED})
FINAL_STATUSES = frozenset({"done", "failed"})


class FileReport(BaseModel):
    """One local file: where it is, what was sent, and what the server made of it."""

    path: str
    name: str = Field(description="The name it was sent under.")
    size: int
    sha256: str | None = None
    index: int | None = Field(default=None, description="Its position in the upload it went in.")
    outcome: Outcome = Outcome.NOT_SENT
    reason: str | None = None
    upload_id: str | None = None
    instance_id: str | None = None
    status: str | None = Field(default=None, description="The instance's processing status, when known.")


class UploadSummary(BaseModel):
    """The whole run (`dicomflow upload --json`)."""

    server: str
    atomic: bool
    waited: bool
    files: list[FileReport]
    counts: dict[str, int] = Field(default_factory=dict, description="Files per outcome.")
    statuses: dict[str, int] = Field(default_factory=dict, description="Instances per processing status.")
    upload_ids: list[str] = Field(default_factory=list)
    bytes_sent: int = 0
    retries: int = 0
    seconds: float = 0.0
    files_per_second: float = 0.0
    megabytes_per_second: float = 0.0
    unreachable: str | None = Field(default=None, description="The service that could not be reached, and why.")
    error: str | None = Field(default=None, description="Why the run stopped early, if it did.")
    client_log_id: str | None = Field(default=None, description="The id of the log sent by --send-log-on-failure.")
    exit_status: int = EXIT_OK

    def finish(self, seconds: float) -> UploadSummary:
        """Fill the counts, rates and exit status from the files; returns self."""
        self.counts = dict(sorted(Counter(f.outcome.value for f in self.files).items()))
        self.statuses = dict(sorted(Counter(f.status for f in self.files if f.status).items()))
        self.upload_ids = sorted({f.upload_id for f in self.files if f.upload_id and f.outcome != Outcome.SKIPPED})
        self.seconds = round(seconds, 3)
        sent = sum(1 for f in self.files if f.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE))
        self.files_per_second = round(sent / seconds, 2) if seconds > 0 else 0.0
        self.megabytes_per_second = round(self.bytes_sent / 1e6 / seconds, 3) if seconds > 0 else 0.0
        self.exit_status = exit_status(self)
        return self


def exit_status(summary: UploadSummary) -> int:
    """0, 1 or 3, as the module says."""
    if summary.unreachable is not None:
        return EXIT_UNREACHABLE
    if summary.error is not None or any(f.outcome not in ON_SERVER for f in summary.files):
        return EXIT_FAILED
    if summary.waited and any(f.status != "done" for f in summary.files):
        return EXIT_FAILED
    return EXIT_OK


def summary_lines(summary: UploadSummary) -> list[str]:
    """The run for people: one line per file that did not simply arrive, then the totals."""
    lines: list[str] = []
    for f in summary.files:
        if f.outcome not in ON_SERVER:
            lines.append(f"{f.outcome.value:9} {f.name}: {f.reason or 'no reason given'}")
        elif summary.waited and f.status != "done":
            lines.append(f"{f.status or 'unknown':9} {f.name}" + (f": {f.reason}" if f.reason else ""))
    counts = ", ".join(f"{n} {what}" for what, n in summary.counts.items()) or "no files"
    lines.append(
        f"{len(summary.files)} file(s): {counts}; {summary.bytes_sent / 1e6:.1f} MB in {summary.seconds:.1f} s "
        f"({summary.files_per_second:.1f} files/s, {summary.megabytes_per_second:.2f} MB/s), {summary.retries} retries"
    )
    if summary.waited:
        lines.append("processing: " + (", ".join(f"{n} {s}" for s, n in summary.statuses.items()) or "nothing"))
    if summary.upload_ids:
        shown = ", ".join(summary.upload_ids[:3]) + (" ..." if len(summary.upload_ids) > 3 else "")
        lines.append(f"upload id(s): {shown}")
    if summary.unreachable:
        lines.append(f"unreachable: {summary.unreachable}")
    if summary.error:
        lines.append(f"stopped: {summary.error}")
    if summary.client_log_id:
        lines.append(f"log sent to the server: client log {summary.client_log_id}")
    return lines
