"""The answer of `POST /api/uploads` (one outcome per file, in the order the files arrived), and the report
of an upload that ingest answered with a problem."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from common.schemas.instances import FileStatus


class UploadedFile(BaseModel):
    """What happened to one file at the door."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Client-side name (display only).")
    sha256: str | None = Field(default=None, description="None when the file was refused before it was read.")
    status: FileStatus
    instance_id: str | None = Field(default=None, description="For `duplicate`: the first upload's instance.")
    reason: str | None = Field(default=None, description="Why a file was rejected, in words a person can act on.")


class UploadReceipt(BaseModel):
    """`202 Accepted`: every file was stored and queued, found to be a duplicate, or rejected."""

    upload_id: str
    files: list[UploadedFile]


class UploadStopped(BaseModel):
    """ingest → results: `POST /internal/uploads/{upload_id}/stop`: an upload answered with a problem, for its
    `upload.stop` audit record. Counts only: never a file name, which may carry a patient's name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: str = Field(min_length=1, max_length=128, description="The uploader.")
    status: int = Field(ge=400, le=599, description="The problem's HTTP status.")
    accepted: int = Field(default=0, ge=0)
    duplicate: int = Field(default=0, ge=0)
    rejected: int = Field(default=0, ge=0)
    email: str | None = Field(default=None, max_length=320)
    client: str | None = Field(default=None, max_length=128)
    correlation_id: str | None = Field(default=None, max_length=128)


NOT_TAKEN_REASON = "valid, but not taken: other files of this all-or-nothing upload were rejected"
"""The reason given, in an all-or-nothing upload's 422, for each of its files that was valid."""


class UploadQuery(BaseModel):
    """Query parameters of `POST /api/uploads`."""

    model_config = ConfigDict(extra="forbid")

    atomic: bool = Field(
        default=False,
        description="All or nothing: every file is validated and staged first; if any is rejected nothing is "
        "registered, stored or queued and the answer is a 422 whose `files` gives each file's reason.",
    )
