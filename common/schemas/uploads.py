"""The answer of `POST /api/uploads`: one outcome per file, in the order the files arrived."""

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
