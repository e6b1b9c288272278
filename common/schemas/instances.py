"""HTTP bodies of the upload, instance and study APIs, and of the registration call ingest → results.

`FileRegistration`/`FileRegistered` are the internal, idempotent registration contract: one call per
file of an upload, keyed by (upload_id, index). The `*View` models are what the read API answers.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.app.pagination import MAX_LIMIT, MAX_OFFSET, Limit, Offset
from common.messaging.messages import ImageResult, InstanceStatus
from common.schemas.text import PRINTABLE

SHA256_PATTERN = r"^[0-9a-f]{64}$"
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Upload ids (ingest gives 32 hex digits; the registration contract allows up to 64 of these characters)."""
INSTANCE_ID_PATTERN = r"^[0-9a-f]{32}$"
"""Instance ids: results_service gives each instance 32 lowercase hex digits (a UUID4 without dashes)."""
UID_MAX = 128
MODALITY_MAX = 16


class FileStatus(StrEnum):
    """What happened to one file of an upload at the door."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class DicomMetadata(BaseModel):
    """The identifying attributes ingest read from a valid file (indexing and display only). No patient name
    or id: those stay in the encrypted blob, so an unknown field is refused rather than dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sop_class_uid: str = Field(min_length=1, max_length=128)
    sop_instance_uid: str = Field(min_length=1, max_length=128)
    study_instance_uid: str = Field(min_length=1, max_length=128)
    series_instance_uid: str = Field(min_length=1, max_length=128)
    modality: str | None = Field(default=None, max_length=16)
    transfer_syntax_uid: str = Field(min_length=1, max_length=128)
    study_date: str | None = Field(default=None, max_length=16)
    number_of_frames: int | None = Field(default=None, ge=0)
    rows: int | None = Field(default=None, ge=0)
    columns: int | None = Field(default=None, ge=0)
    samples_per_pixel: int | None = Field(default=None, ge=0, description="For the job's memory estimate.")
    bits_allocated: int | None = Field(default=None, ge=0, description="For the job's memory estimate.")


class FileRegistration(BaseModel):
    """ingest → results: one file of an upload, accepted (with its DICOM metadata) or rejected (with a reason)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0, description="Position of the file in the upload; (upload_id, index) is idempotent.")
    name: str = Field(max_length=1024, description="Client-side name, for display only (never a path).")
    owner: str = Field(min_length=1, max_length=128)
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN, description="None when never fully read.")
    size: int | None = Field(default=None, ge=0)
    outcome: Literal[FileStatus.ACCEPTED, FileStatus.REJECTED]
    reason: str | None = Field(default=None, max_length=2000)
    dicom: DicomMetadata | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FileRegistration:
        if self.outcome is FileStatus.ACCEPTED:
            if self.dicom is None or self.sha256 is None or self.size is None:
                raise ValueError("an accepted file needs sha256, size and dicom")
        elif not self.reason:
            raise ValueError("a rejected file needs a reason")
        return self


class FileRegistered(BaseModel):
    """results → ingest: the file's outcome; for `duplicate`, `instance_id` is the first instance's."""

    model_config = ConfigDict(frozen=True)

    instance_id: str | None = None
    status: FileStatus
    reason: str | None = None


class PatientView(BaseModel):
    """Patient-identifying attributes of an instance, read from its stored file."""

    name: str | None = None
    id: str | None = None
    birth_date: str | None = Field(default=None, description="DICOM DA (`YYYYMMDD`) as stored.")


class InstanceView(BaseModel):
    """One stored instance: identity, live status and, once done, its processing result."""

    id: str
    upload_id: str
    status: InstanceStatus
    reason: str | None = None
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str | None = None
    transfer_syntax_uid: str
    file_name: str
    sha256: str
    size: int
    created_at: datetime
    updated_at: datetime
    result: ImageResult | None = None
    patient: PatientView | None = Field(
        default=None,
        description="Only in `GET /api/instances/{id}`, which nobody but the owner and admins can reach; "
        "never in lists.",
    )


class StatusCounts(BaseModel):
    """How many instances are in each lifecycle state."""

    received: int = 0
    queued: int = 0
    processing: int = 0
    done: int = 0
    failed: int = 0


class UploadFileView(BaseModel):
    """One file of an upload: its outcome at the door and the live status of its instance."""

    index: int
    name: str
    sha256: str | None = None
    size: int | None = None
    status: FileStatus
    reason: str | None = None
    instance_id: str | None = None
    instance_status: InstanceStatus | None = None


class UploadView(BaseModel):
    """One upload with its files; `counts` are of the files' instances (duplicates included)."""

    id: str
    created_at: datetime
    files: list[UploadFileView]
    accepted: int
    duplicates: int
    rejected: int
    counts: StatusCounts


class StudyView(BaseModel):
    """One study of the caller's instances, with counts per lifecycle state."""

    study_instance_uid: str
    modalities: list[str]
    series: int
    instances: int
    counts: StatusCounts
    first_received_at: datetime
    last_updated_at: datetime


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a listing in a stable order; `total` counts every match, not just this page."""

    items: list[T]
    total: int
    limit: int
    offset: int
    next: str | None = Field(description="Path and query of the next page; null on the last page.")


InstancePage = Page[InstanceView]


class StudyPage(Page[StudyView]):
    """One page of studies, oldest first (by first arrival, then UID), with the link to the next one."""


class InstanceListQuery(BaseModel):
    """Query parameters of `GET /api/instances`."""

    model_config = ConfigDict(extra="forbid")

    status: InstanceStatus | None = Field(default=None, description="Only instances in this state.")
    modality: Annotated[str, Field(min_length=1, max_length=MODALITY_MAX), PRINTABLE] | None = Field(
        default=None, description="E.g. `MR`, `XA`."
    )
    study: Annotated[str, Field(min_length=1, max_length=UID_MAX), PRINTABLE] | None = Field(
        default=None, description="Study Instance UID."
    )
    limit: Limit = 100
    offset: Offset = 0


class InstanceFileQuery(BaseModel):
    """Query parameters of `GET /api/instances/{id}/file`."""

    model_config = ConfigDict(extra="forbid")

    deidentified: bool = Field(
        default=False, description="A copy de-identified with the DICOM PS3.15 basic profile instead of the original."
    )


class StudyListQuery(BaseModel):
    """Query parameters of `GET /api/studies`."""

    model_config = ConfigDict(extra="forbid")

    limit: Limit = Field(default=100, description=f"Studies per page, from 1 to {MAX_LIMIT}.")
    offset: Offset = Field(default=0, description=f"Studies to skip, from 0 to {MAX_OFFSET}.")
