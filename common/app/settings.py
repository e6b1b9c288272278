"""One typed settings object per process, read from environment variables.

Every service subclasses :class:`BaseServiceSettings` with its own fields; the defaults are
safe for a single local machine, so `make up` needs no configuration at all.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.app.blob_settings import BlobSettings

LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class BaseServiceSettings(BlobSettings):
    """Settings every process needs: where PostgreSQL, RabbitMQ and the blobs are, how to log."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    log_level: LogLevel = Field(default="INFO", description="Lowest level written to the log.")
    log_format: LogFormat = Field(default="json", description="`json` for machines, `console` for people.")
    database_url: str = Field(
        default="postgres://postgres@127.0.0.1:5432/dicomflow",
        description="PostgreSQL DSN used by results_service.",
    )
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", description="RabbitMQ URL.")
    amqp_prefix: str = Field(
        default="dicom",
        description="Prefix of every exchange and queue name, so several deployments (or test runs) share a broker.",
    )
    job_delivery_limit: int = Field(
        default=5,
        ge=1,
        description="Deliveries of a message before the broker parks it (quorum `x-delivery-limit`); same everywhere.",
    )
    host: str = Field(default="127.0.0.1", description="Interface the HTTP server binds to.")
    results_url: str = Field(default="http://127.0.0.1:8081", description="Base URL of results_service.")
    ingest_url: str = Field(default="http://127.0.0.1:8082", description="Base URL of ingest_service.")
    shutdown_timeout: float = Field(default=10.0, gt=0, description="Seconds granted to in-flight work on stop.")
    amqp_connect_timeout: float = Field(
        default=60.0, ge=0, description="Seconds start-up keeps trying to reach RabbitMQ (backoff with jitter)."
    )
    amqp_reconnect_interval: float = Field(
        default=5.0, gt=0, description="Mean seconds between reconnects to RabbitMQ; each wait is drawn from 0.5-1.5x."
    )
    retry_max_delay: float = Field(
        default=30.0, gt=0, description="Longest wait between two tries of work held through an outage (full jitter)."
    )


class ElementsBodyLimit(BaseSettings):
    """The elements API's body limit, enforced by both the gateway and results_service: one definition."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    elements_max_body: int = Field(
        default=32 * 1024**2,
        ge=1,
        description="Largest body accepted by POST/PUT/PATCH /api/elements, in bytes (`ELEMENTS_MAX_BODY`).",
    )


class ClientLogBodyLimit(BaseSettings):
    """The client-log upload's body limit, enforced by both the gateway and results_service: one definition."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    client_log_max_bytes: int = Field(
        default=1024**2,
        ge=1,
        description="Largest body accepted by POST /api/client-logs, in bytes; more is a 413 (`CLIENT_LOG_MAX_BYTES`).",
    )
