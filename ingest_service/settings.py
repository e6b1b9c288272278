"""Settings of ingest_service (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from common.app.secret_settings import BlobKeySettings, ServiceTokenSettings
from common.app.settings import BaseServiceSettings
from common.messaging.jobs import JobRoutingSettings

GIB = 1024**3
MIB = 1024**2


class IngestSettings(BaseServiceSettings, BlobKeySettings, ServiceTokenSettings, JobRoutingSettings):
    """Settings of ingest_service."""

    ingest_port: int = Field(default=8082, ge=1, le=65535, description="TCP port of ingest_service (`INGEST_PORT`).")
    upload_max_bytes: int = Field(
        default=4 * GIB,
        ge=1,
        description="Largest upload body, in bytes; more is refused with 413 (`UPLOAD_MAX_BYTES`). Enforced here "
        "only: ingest reads the body, the gateway streams it through uncounted.",
    )
    upload_max_files: int = Field(
        default=10_000,
        ge=1,
        validation_alias=AliasChoices("upload_max_files", "zip_max_entries"),
        description="Most files one upload may hold: entries of a zip archive, parts of a multipart body "
        "(form fields included); more is refused with 413 (`UPLOAD_MAX_FILES`; `ZIP_MAX_ENTRIES`, its former "
        "name, is still read).",
    )
    zip_max_total_bytes: int = Field(
        default=16 * GIB,
        ge=1,
        description="Largest total uncompressed size of a zip upload's entries, in bytes (`ZIP_MAX_TOTAL_BYTES`).",
    )
    zip_max_ratio: float = Field(
        default=100.0,
        gt=1,
        description="Largest expansion ratio of one zip entry; more is rejected as a bomb (`ZIP_MAX_RATIO`).",
    )
    ingest_memory_file_bytes: int = Field(
        default=2 * MIB,
        ge=0,
        description=(
            "Files up to this size are validated and stored from memory in one worker-thread call; larger ones "
            "are streamed to disk (memory per file in flight stays below this plus one chunk) "
            "(`INGEST_MEMORY_FILE_BYTES`)."
        ),
    )
    results_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for results_service to register a file (`RESULTS_TIMEOUT`)."
    )
