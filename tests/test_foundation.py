"""The foundation: sample files intact, every service importable and answering its health routes."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

from common.app.problems import PROBLEM_CONTENT_TYPE
from tests.service_auth import signing

SERVICES = ["gateway", "ingest_service", "processor_service", "results_service"]


def test_sample_files_match_their_checksums(samples_dir: Path) -> None:
    lines = (samples_dir / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 5
    for line in lines:
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((samples_dir / name.lstrip("*")).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("service", SERVICES)
async def test_service_answers_healthz_with_correlation_id(service: str, aiohttp_client, base_settings) -> None:
    main = importlib.import_module(f"{service}.main")
    settings_mod = importlib.import_module(f"{service}.settings")
    settings_cls = next(
        v for k, v in vars(settings_mod).items() if k.endswith("Settings") and v.__module__ == settings_mod.__name__
    )
    # Signed as a service for the services that need one (a route they lack is then a 404, not a 401).
    client = await aiohttp_client(main.init_app(settings_cls()), middlewares=signing(service))
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    assert response.headers["X-Request-ID"] == "abc-123"
    missing = await client.get("/no/such/route")
    assert missing.status == 404
    assert missing.content_type == PROBLEM_CONTENT_TYPE
    body = await missing.json()
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert len(missing.headers["X-Request-ID"]) == 32
