"""Schemathesis against the running system: every operation of the gateway's OpenAPI document, fed data generated
from the document itself (valid and invalid), answers without a 5xx and as the document says (issue 13).

The four services run as processes (`single_host.processes.RunningSystem`: this run's database, its own AMQP
prefix and blob folder); schemathesis loads `/api/openapi.json` from the gateway and calls every operation over
HTTP with an admin's and a user's bearer token, in its positive mode (data the document allows) and its negative
mode (data it forbids, requests without the token included). The checks: no server error, a status code, a content
type and a body the document declares. The run is seeded and bounded (EXAMPLES per operation, mode and token; no
deadline, no shrinking), so it is the same run each time and takes well under two minutes on two CPUs. Every
failure of every operation is collected and reported together, each with a curl command that repeats it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from single_host.processes import RunningSystem

SEED = 13
EXAMPLES = 15
"""Examples per operation, generation mode and token: about 1 500 requests in all."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXCLUDED = {
    # Revokes the bearer token it is called with: every later call of the run would be a 401.
    ("POST", "/api/auth/logout"),
    # A WebSocket: its only success is `101 Switching Protocols`, which an HTTP client cannot follow; the feed
    # has its own tests (tests/test_events_feed.py).
    ("GET", "/api/events"),
}
REQUEST_TIMEOUT = 30
ROLES = ("admin", "user")


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """The four services, with a rate limit that never throttles the run (the API is under test, not the limit)."""
    limits = {"RATE_LIMIT_PER_MINUTE": "1000000", "RATE_LIMIT_BURST": "1000000"}
    running = RunningSystem(database_url, tmp_path_factory.mktemp("schemathesis"), limits)
    try:
        running.start_all()
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def tokens(system: RunningSystem) -> dict[str, dict[str, str]]:
    """The Authorization header of an admin and of a user, each logged in through the gateway."""

    async def log_in() -> dict[str, dict[str, str]]:
        return {role: (await system.create_user(f"schemathesis-{role}", role)).headers for role in ROLES}

    return asyncio.run(log_in())


def _run(operation: Any, mode: GenerationMode, headers: dict[str, str], statuses: Counter[int]) -> None:
    """A seeded run of EXAMPLES cases of one operation in one generation mode, with one token."""
    protected = operation.definition.raw.get("security") != []

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        # A copy: schemathesis masks the secrets of the headers it reports a failure with, in place.
        response = case.call_and_validate(headers=dict(headers), checks=CHECKS, timeout=REQUEST_TIMEOUT)
        statuses[response.status_code] += 1
        # Valid data with a valid token: a 401 would mean the run's token was refused and nothing was tested.
        assert not (protected and mode is GenerationMode.POSITIVE and response.status_code == 401), response.text

    run()


def test_every_operation_answers_without_a_server_error_and_as_documented(
    system: RunningSystem, tokens: dict[str, dict[str, str]]
) -> None:
    schema = schemathesis.openapi.from_url(f"{system.gateway_url}/api/openapi.json")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        tested += 1
        for role in ROLES:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    _run(operation, mode, tokens[role], statuses)
                except hypothesis.errors.Unsatisfiable:
                    # Nothing the document forbids can be sent (no parameters, no body): no negative case exists.
                    assert mode is GenerationMode.NEGATIVE, f"{name} has no valid input"
                except (Exception, FailureGroup) as exc:  # every failure of every operation, not only the first
                    failures.append(f"{name} as {role}, {mode.value}:\n{exc}")
    assert not failures, "\n\n".join(failures)
    assert tested >= 20, f"only {tested} operations in the document"
    assert sum(count for status, count in statuses.items() if status < 300) > tested, statuses
