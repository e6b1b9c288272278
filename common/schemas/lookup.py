"""`POST /api/instances/lookup`: which of these files (by SHA-256) does the caller hold already.

The uploader's resume check (`dicomflow upload`): before sending a folder again it asks which of its
files are stored, and sends only the others. The answer is scoped to the caller's own instances, admins
included: it is not a search, and it says nothing about anyone else's files.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.messaging.messages import InstanceStatus

LOOKUP_MAX_DIGESTS = 1000
LOOKUP_MAX_BYTES = 128 * 1024
"""Largest lookup body: 1000 digests of 64 characters quoted take about 67 KiB."""

Sha256Hex = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-fA-F]{64}$",
        description="A SHA-256 as 64 hexadecimal digits (either case; answered in lower case).",
    ),
]


class InstanceLookup(BaseModel):
    """The digests to look up; a digest given twice is looked up once."""

    model_config = ConfigDict(extra="forbid")

    sha256: list[Sha256Hex] = Field(min_length=1, max_length=LOOKUP_MAX_DIGESTS)

    @field_validator("sha256")
    @classmethod
    def _lower(cls, digests: list[str]) -> list[str]:
        return list(dict.fromkeys(digest.lower() for digest in digests))


class KnownInstance(BaseModel):
    """One of the caller's instances holding the bytes of a digest asked for."""

    sha256: str
    instance_id: str
    status: InstanceStatus
    upload_id: str = Field(description="The upload that first brought these bytes.")


class InstanceLookupAnswer(BaseModel):
    """The digests the caller holds already, in the order asked; the others are unknown."""

    known: list[KnownInstance]
