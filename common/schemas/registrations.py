"""The registration call ingest → results (the only way a file is registered): many files, of any uploads,
in one request.

Under load, ingest takes files of many uploads at once; registering each with its own HTTP call
and its own commit costs more than the registration itself. So ingest gathers the registrations
that arrive while one call is in flight and sends them together (`RegistrationBatch`); results
answers one `RegistrationAnswer` per item, in order, each on its own (a 409 for one item does not
stop the others). Every item carries who asked (email, client address, correlation id), because
the audit records written with it name them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.schemas.instances import ID_PATTERN, FileRegistered, FileRegistration, FileStatus

MAX_BATCH = 256


class RegistrationItem(BaseModel):
    """One file's registration and the identity of the request that brought it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    upload_id: str = Field(pattern=ID_PATTERN)
    registration: FileRegistration
    email: str | None = Field(default=None, max_length=320)
    client: str | None = Field(default=None, max_length=128)
    correlation_id: str | None = Field(default=None, max_length=128)


class RegistrationBatch(BaseModel):
    """ingest → results: `POST /internal/registrations`: the files to register."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: list[RegistrationItem] = Field(min_length=1, max_length=MAX_BATCH)


class RegistrationAnswer(BaseModel):
    """One item's answer: `status` as for a call of its own (201 new, 200 replay, 409 another
    owner's upload); `registered` for 200/201, `detail` otherwise."""

    model_config = ConfigDict(frozen=True)

    status: int = Field(ge=100, le=599)
    registered: FileRegistered | None = None
    detail: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RegistrationAnswer:
        if (self.status in (200, 201)) != (self.registered is not None):
            raise ValueError("200 and 201 answers, and only they, carry the registration")
        return self


class RegistrationBatchAnswer(BaseModel):
    """results → ingest: the answers, one per item, in the order of the items."""

    items: list[RegistrationAnswer]


ATOMIC_MAX_FILES = 10_000
"""Most files of one all-or-nothing upload: its registration is one call and one transaction."""
ATOMIC_BYTES_PER_FILE = 8 * 1024
"""Body allowance per file of the all-or-nothing registration call (a name of 1024 characters, escaped, and the
DICOM attributes fit with room to spare)."""


class AtomicRegistration(BaseModel):
    """ingest → results: `POST /internal/registrations/atomic`: every file of one all-or-nothing upload, each valid
    (ingest answers an upload holding a rejected file with a 422 and registers nothing), registered in one
    transaction or not at all."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    upload_id: str = Field(pattern=ID_PATTERN)
    files: list[FileRegistration] = Field(min_length=1, max_length=ATOMIC_MAX_FILES)
    email: str | None = Field(default=None, max_length=320)
    client: str | None = Field(default=None, max_length=128)
    correlation_id: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _one_owner_all_valid(self) -> AtomicRegistration:
        if len({file.owner for file in self.files}) != 1:
            raise ValueError("every file of an upload has the same owner")
        if any(file.outcome is not FileStatus.ACCEPTED for file in self.files):
            raise ValueError("an all-or-nothing upload registers valid files only")
        if len({file.index for file in self.files}) != len(self.files):
            raise ValueError("each file has an index of its own")
        return self


class AtomicRegistrationAnswer(BaseModel):
    """results → ingest: every file registered (`accepted`, or `duplicate` of an instance the owner held), in the
    order of the files."""

    files: list[FileRegistered]
