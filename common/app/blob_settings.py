"""Where the blob store keeps blobs (`BLOB_URL`: a local directory or an S3 bucket) and where uploads are staged.

Read by the three services that touch blobs (through `BaseServiceSettings`); `open_blob_store` builds the
store they describe. The default is the local directory `BLOB_DIR`, so `make up` needs no configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.storage.s3_objects import S3Location

if TYPE_CHECKING:  # the store (and Tink) are imported by the services that open one, not by every settings class
    from common.storage.blobs import BlobStore
    from common.storage.crypto import Keyring

S3_STAGING_DIR = "var/staging"


class BlobSettings(BaseSettings):
    """The blob store's location and, for S3, its endpoint and credentials."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    blob_dir: str = Field(
        default="var/blobs", description="Directory of the local blob store (when BLOB_URL is empty)."
    )
    blob_url: str = Field(
        default="",
        description="`file:///abs/dir`, `file:relative/dir` or `s3://bucket/prefix`; empty: the directory BLOB_DIR.",
    )
    blob_staging_dir: str = Field(
        default="",
        description="Local directory where uploads are sealed before they are committed; "
        f"default `<BLOB_DIR>/tmp` for a directory, `{S3_STAGING_DIR}` for S3.",
    )
    blob_s3_endpoint_url: str = Field(default="", description="S3 endpoint (MinIO, Ceph RGW...); empty: AWS.")
    blob_s3_region: str = Field(default="us-east-1", description="S3 region the requests are signed for.")
    blob_s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto",
        description="`path` for stores without virtual-host buckets (MinIO, moto); `auto`: the client's.",
    )
    blob_s3_client: Literal["obstore", "aiobotocore"] = Field(
        default="obstore", description="Python client of S3 (obstore is faster on the pipeline; see bench/README.md)."
    )
    aws_access_key_id: SecretStr = Field(default=SecretStr(""), description="S3 access key id; empty: AWS's chain.")
    aws_secret_access_key: SecretStr = Field(default=SecretStr(""), description="S3 secret access key.")

    @field_validator("blob_url")
    @classmethod
    def _known_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and parts.scheme not in {"file", "s3"}:
            raise ValueError("BLOB_URL must start with file: or s3://")
        if parts.scheme == "s3" and not parts.netloc:
            raise ValueError("BLOB_URL s3://bucket/prefix names no bucket")
        if parts.scheme == "file" and not (parts.path or parts.netloc):
            raise ValueError("BLOB_URL file: names no directory")
        return value

    def s3_location(self) -> S3Location | None:
        """The bucket BLOB_URL names, or None for a local directory."""
        parts = urlsplit(self.blob_url)
        if parts.scheme != "s3":
            return None
        return S3Location(
            bucket=parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint_url=self.blob_s3_endpoint_url,
            region=self.blob_s3_region,
            access_key_id=self.aws_access_key_id.get_secret_value(),
            secret_access_key=self.aws_secret_access_key.get_secret_value(),
            addressing_style=self.blob_s3_addressing_style,
        )

    def local_blob_dir(self) -> Path:
        """The directory of a local store: BLOB_URL's `file:` path, else BLOB_DIR."""
        parts = urlsplit(self.blob_url)
        if parts.scheme == "file":
            return Path(parts.netloc + parts.path) if parts.netloc else Path(parts.path)
        return Path(self.blob_dir)


def open_blob_store(settings: BlobSettings, keyring: Keyring) -> BlobStore:
    """The blob store the settings describe (the staging directory is created)."""
    from common.storage.blobs import BlobStore
    from common.storage.s3_objects import S3Objects

    staging = Path(settings.blob_staging_dir) if settings.blob_staging_dir else None
    location = settings.s3_location()
    if location is None:
        return BlobStore(settings.local_blob_dir(), keyring, staging=staging)
    objects = S3Objects(location, settings.blob_s3_client)
    return BlobStore(None, keyring, objects=objects, staging=staging or Path(S3_STAGING_DIR))
