"""Client logs: the log a client (`dicomflow upload`) sends after a run, for support to read later.

The body is the log itself (`text/plain` or `application/x-ndjson`), stored as sent; the query names
the upload it belongs to and a display name. These are the models of the query and the answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from common.app.pagination import Limit, Offset
from common.schemas.instances import ID_PATTERN, INSTANCE_ID_PATTERN, Page
from common.schemas.text import PRINTABLE

CLIENT_LOG_TYPES = ("text/plain", "application/x-ndjson")
CLIENT_LOG_ID_PATTERN = INSTANCE_ID_PATTERN
"""Client log ids: 32 lowercase hexadecimal digits, as results_service gives them."""
NAME_MAX = 255

UploadId = Annotated[str, Field(pattern=ID_PATTERN, description="The upload the log is about (`upload_id` of a 202).")]
LogName = Annotated[
    str, Field(min_length=1, max_length=NAME_MAX, description="A name to show (e.g. the log file's)."), PRINTABLE
]


class ClientLogCreateQuery(BaseModel):
    """Query parameters of `POST /api/client-logs`."""

    model_config = ConfigDict(extra="forbid")

    upload_id: UploadId | None = None
    name: LogName | None = None


class ClientLogListQuery(BaseModel):
    """Query parameters of `GET /api/client-logs`."""

    model_config = ConfigDict(extra="forbid")

    upload_id: UploadId | None = Field(default=None, description="Only the logs of this upload.")
    limit: Limit = 100
    offset: Offset = 0


class ClientLogCreated(BaseModel):
    """`201 Created`: the log is stored."""

    id: str = Field(description="Read it back at `/api/client-logs/{id}`.")
    size: int = Field(description="Bytes stored.")
    created_at: datetime
    upload_id: str | None = None


class ClientLogView(ClientLogCreated):
    """One stored log, without its text (`GET /api/client-logs/{id}` answers the text)."""

    owner: str = Field(description="Who sent it.")
    name: str | None = None
    content_type: str


class ClientLogPage(Page[ClientLogView]):
    """One page of logs, newest first, with the link to the next one."""
