"""Settings of processor_service (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field

from common.settings import BaseServiceSettings


class ProcessorSettings(BaseServiceSettings):
    """Settings of processor_service."""

    processor_port: int = Field(
        default=8083, ge=1, le=65535, description="TCP port of processor_service (`PROCESSOR_PORT`)."
    )
