"""The frames of the live feed's WebSocket protocol, as pydantic models like every API body."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_serializer

from common.auth.tokens import Role
from common.messaging.messages import InstanceStatus, StatusEvent


class AuthFrame(BaseModel):
    """client → server, the first frame: the bearer token (browsers cannot set headers on a WebSocket)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["auth"]
    token: str


class ReadyFrame(BaseModel):
    """server → client once authenticated: every event after it reaches the socket; re-read the API now."""

    type: Literal["ready"] = "ready"
    user: str
    role: Role


class FeedEvent(BaseModel):
    """One status change as a client sees it (no correlation or message ids: they are internal)."""

    instance_id: str
    upload_id: str
    owner: str
    status: InstanceStatus
    reason: str | None
    at: datetime

    @field_serializer("at")
    def _iso(self, at: datetime) -> str:
        return at.isoformat()


class StatusFrame(BaseModel):
    """server → client, one per status change the socket may see."""

    type: Literal["status"] = "status"
    event: FeedEvent

    @classmethod
    def of(cls, event: StatusEvent) -> StatusFrame:
        """The frame of one announced event."""
        return cls(
            event=FeedEvent(
                instance_id=event.instance_id,
                upload_id=event.upload_id,
                owner=event.owner,
                status=event.status,
                reason=event.reason,
                at=event.created_at,
            )
        )
