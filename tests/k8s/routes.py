"""The GET routes each service really serves: its application built by its own `init_app` (nothing started,
no connection opened), with throwaway settings."""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from unittest import mock

from common.storage.crypto_keys import generate_key_spec
from tests.k8s.containers import settings_class

SERVICES = ("gateway", "ingest_service", "processor_service", "results_service")


def get_paths(service: str) -> set[str]:
    """The paths `python -m <service>` answers GET on."""
    init_app = importlib.import_module(f"{service}.main").init_app
    with tempfile.TemporaryDirectory(prefix="dicomflow-routes-") as tmp:
        env = {
            "AUTH_SECRET": "a" * 48,
            "SERVICE_SECRET": "s" * 48,
            "BLOB_KEYS": generate_key_spec("k1"),
            "BLOB_DIR": str(Path(tmp) / "blobs"),
        }
        with mock.patch.dict(os.environ, env, clear=True):
            app = init_app(settings_class(service)())
        return {route.resource.canonical for route in app.router.routes() if route.method in {"GET", "*"}}
