"""A real S3 endpoint on 127.0.0.1 for tests and the pipeline benchmark: moto's server mode, as a subprocess.

MinIO and Ceph cannot be installed here; moto speaks the same HTTP API (multipart uploads, ranged GETs,
conditional PUTs, IAM-signed requests), so the S3 backend is tested over the wire, not with a mock client.
`MotoServer(auth=True)` enforces credentials (after the few unauthenticated requests that make the bucket
and a user), so a refused key is a real 403.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from single_host.processes import free_port

START_TIMEOUT = 30.0
_SETUP_REQUESTS = 4  # auth=True: create_bucket, create_user, create_access_key, put_user_policy go unsigned


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str


class MotoServer:
    """One moto server on a free port of 127.0.0.1 (in memory: everything is gone when it stops)."""

    def __init__(self, log: Path, *, auth: bool = False) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.auth = auth
        self.credentials = S3Credentials("testing", "testing")
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        if auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_SETUP_REQUESTS)
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1).close()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server not ready on {self.endpoint_url} after {START_TIMEOUT} s")

    def client(self, service: str = "s3", credentials: S3Credentials | None = None) -> Any:
        creds = credentials or self.credentials
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
        )

    def make_bucket(self, name: str | None = None) -> str:
        """A new empty bucket (with auth=True, also the user whose keys become `credentials`)."""
        bucket = name or f"blobs-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        if self.auth:
            iam = self.client("iam")
            iam.create_user(UserName="dicomflow")
            key = iam.create_access_key(UserName="dicomflow")["AccessKey"]
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
            iam.put_user_policy(UserName="dicomflow", PolicyName="blobs", PolicyDocument=json.dumps(policy))
            self.credentials = S3Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix` (committed objects only: S3 lists no open upload)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def open_uploads(self, bucket: str) -> int:
        """Multipart uploads started and neither completed nor aborted."""
        return len(self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def blob_env(self, bucket: str, prefix: str = "blobs", *, client: str = "obstore") -> dict[str, str]:
        """The environment that points a service at this bucket (BLOB_URL and the S3 settings)."""
        return {
            "BLOB_URL": f"s3://{bucket}/{prefix}",
            "BLOB_S3_ENDPOINT_URL": self.endpoint_url,
            "BLOB_S3_REGION": "us-east-1",
            "BLOB_S3_ADDRESSING_STYLE": "path",
            "BLOB_S3_CLIENT": client,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_access_key,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the run (each test makes its own bucket)."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()
