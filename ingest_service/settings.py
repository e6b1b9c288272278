"""Settings of ingest_service (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field

from common.settings import BaseServiceSettings


class IngestSettings(BaseServiceSettings):
    """Settings of ingest_service."""

    ingest_port: int = Field(default=8082, ge=1, le=65535, description="TCP port of ingest_service (`INGEST_PORT`).")
