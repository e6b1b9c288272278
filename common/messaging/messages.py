"""Every message that crosses RabbitMQ: versioned pydantic models serialised as JSON.

`message_id` is the idempotency key of each message (also set as the AMQP `message_id`
property); the correlation id travels in the AMQP headers, not in the body. Consumers accept
only the `version` they know and reject anything else to the dead-letter exchange.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PIPELINE_VERSION = "1"


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class InstanceStatus(StrEnum):
    """Lifecycle of one stored DICOM instance; it only ever moves forward in this order."""

    RECEIVED = "received"
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        """Position in the lifecycle; `done` and `failed` are both final and rank equal."""
        return _RANKS[self]

    def can_move_to(self, new: InstanceStatus) -> bool:
        """True when `new` is later in the lifecycle (never back, never from one final state to another)."""
        return new.rank > self.rank


_RANKS = {
    InstanceStatus.RECEIVED: 0,
    InstanceStatus.QUEUED: 1,
    InstanceStatus.PROCESSING: 2,
    InstanceStatus.DONE: 3,
    InstanceStatus.FAILED: 3,
}


class Message(BaseModel):
    """Fields every message carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field(default_factory=_new_id, description="Idempotency key.")
    created_at: datetime = Field(default_factory=_now)


class ProcessJob(Message):
    """ingest_service (or results_service's reconciler) → processor_service: process one stored instance.

    The broker also routes a copy to results_service (`P.queued`), which moves the instance to `queued`.
    Built and published only through `common.messaging.jobs` (one message id, one routing rule)."""

    kind: Literal["process_job"] = "process_job"
    version: Literal[1] = 1
    instance_id: str
    upload_id: str
    owner: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Blob key of the stored file.")
    size: int = Field(ge=0)
    sop_class_uid: str
    transfer_syntax_uid: str
    pipeline_version: str = PIPELINE_VERSION
    cost_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Estimated memory of processing it (`common.dicom.cost`), which admission reserves and size "
        "routing compares. Absent from jobs published before it existed: the processor then estimates it from the "
        "stored file's header.",
    )


class StatusEvent(Message):
    """One state change of one instance: a worker's to results_service (`P.status`); results_service's
    committed ones reach the gateways inside `StatusChanges`."""

    kind: Literal["status_event"] = "status_event"
    version: Literal[1] = 1
    instance_id: str
    upload_id: str
    owner: str
    status: InstanceStatus
    reason: str | None = None


class StatusChanges(Message):
    """results_service → every gateway replica (`P.events`): the status changes one batch committed, in one
    message, so a busy pipeline costs the live feeds one delivery per batch rather than one per file."""

    kind: Literal["status_changes"] = "status_changes"
    version: Literal[1] = 1
    events: list[StatusEvent] = Field(min_length=1, max_length=1000)


class Statistics(BaseModel):
    """min/max/mean/std of a pixel array, computed in float64."""

    model_config = ConfigDict(frozen=True)

    min: float
    max: float
    mean: float
    std: float


class Histogram(BaseModel):
    """Pixel counts in `len(counts)` equal bins between `low` and `high` (the value range)."""

    model_config = ConfigDict(frozen=True)

    low: float
    high: float
    counts: list[int]


class ImageResult(BaseModel):
    """What processing measures of one instance's pixel data."""

    model_config = ConfigDict(frozen=True)

    has_pixel_data: bool
    note: str | None = Field(default=None, description='E.g. "no pixel data" for SR or RT objects.')
    rows: int | None = None
    columns: int | None = None
    frames: int | None = None
    samples_per_pixel: int | None = None
    dtype: str | None = None
    pixel_count: int | None = None
    original: Statistics | None = None
    normalized: Statistics | None = None
    histogram: Histogram | None = None
    preview_sha256: str | None = Field(default=None, description="Blob key of the PNG preview.")
    processing_ms: float
    worker: str


class ProcessResult(Message):
    """processor_service → results_service: the outcome of one job."""

    kind: Literal["process_result"] = "process_result"
    version: Literal[1] = 1
    instance_id: str
    upload_id: str
    owner: str
    pipeline_version: str = PIPELINE_VERSION
    status: Literal[InstanceStatus.DONE, InstanceStatus.FAILED]
    result: ImageResult | None = None
    reason: str | None = None


AUDIT_UPLOAD_STOP = "audit.upload.stop"
"""The routing key of an `UploadStopRecord` (bound to `P.audit` by `audit.#`)."""


class UploadStopRecord(Message):
    """ingest_service → results_service (`P.audit`): the `upload.stop` audit record of an upload answered with a
    problem, when results_service could not take it at once; written later, once per upload.

    The fields of `common.schemas.uploads.UploadStopped` (counts only, never a file name) and the upload's id;
    `created_at` is when ingest stopped the upload, which the record keeps as its time."""

    kind: Literal["upload_stop"] = "upload_stop"
    version: Literal[1] = 1
    upload_id: str = Field(min_length=1, max_length=128)
    owner: str = Field(min_length=1, max_length=128)
    status: int = Field(ge=400, le=599)
    accepted: int = Field(default=0, ge=0)
    duplicate: int = Field(default=0, ge=0)
    rejected: int = Field(default=0, ge=0)
    email: str | None = Field(default=None, max_length=320)
    client: str | None = Field(default=None, max_length=128)
    correlation_id: str | None = Field(default=None, max_length=128)


class DecoderSupport(BaseModel):
    """A transfer syntax whose pixel data a worker can decode, and the pydicom plugins that can do it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transfer_syntax_uid: str
    name: str
    plugins: list[str] = Field(description="pydicom decoder plugins available; empty for native (uncompressed) data.")


class WorkerHeartbeat(Message):
    """processor_service → every results_service replica (`worker.heartbeat`, transient): who this worker is and how
    loaded it is now, every `WORKER_HEARTBEAT_INTERVAL` seconds; `created_at` is when it was sent. A last one with
    `stopping` set on a clean shutdown removes the worker from the live list at once."""

    kind: Literal["worker_heartbeat"] = "worker_heartbeat"
    version: Literal[1] = 1
    worker: str = Field(description="hostname:pid, the `worker` its results carry.")
    host: str
    pid: int = Field(ge=0)
    started_at: datetime
    queues: list[str] = Field(description="The job queues it consumes (`standard`, `large`).")
    memory_budget_bytes: int = Field(ge=0)
    cpu_slots: int = Field(ge=0)
    reserved_bytes: int = Field(ge=0, description="Memory reserved by the jobs it runs now (their estimates).")
    jobs_in_flight: int = Field(ge=0)
    paused: bool = False
    pause_reason: str | None = None
    cpu_percent: float = Field(ge=0, description="CPU use of the processor and its worker processes (100 = 1 core).")
    memory_bytes: int = Field(ge=0, description="Resident memory of the processor and its worker processes.")
    decoders: list[DecoderSupport] = Field(default_factory=list)
    stopping: bool = False
