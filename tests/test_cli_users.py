"""`dicomflow users ...` against a real results_service (internal API) and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import aiohttp
import asyncpg
import pytest

from common.cli.main import main
from results_service.main import init_app
from results_service.settings import ResultsSettings
from tests.account_helpers import PASSWORD, unique_email
from tests.service_auth import signing


@pytest.fixture
async def results_url(aiohttp_server: Any, database_url: str) -> str:
    server = await aiohttp_server(init_app(ResultsSettings(database_url=database_url)))
    return str(server.make_url("")).rstrip("/")


async def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str = ""
) -> tuple[int, str, str]:
    """Run the CLI in a worker thread (it runs its own event loop) with this stdin."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = await asyncio.to_thread(main, argv)
    finally:  # the CLI points logging at the (captured) stderr; give the test its own back
        root.handlers[:], root.level = handlers, level
    out, err = capsys.readouterr()
    return code, out, err


async def test_create_list_disable_and_enable(
    results_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    email = unique_email("cli")
    base = ["users", "--results-url", results_url]
    code, out, err = await run(
        monkeypatch, capsys, [*base, "create", email, "--role", "user", "--password-stdin", "--json"], PASSWORD + "\n"
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["email"] == email.lower() and created["role"] == "user" and created["disabled"] is False
    assert PASSWORD not in out and PASSWORD not in err

    code, out, err = await run(monkeypatch, capsys, [*base, "list", "--json"])
    assert code == 0, err
    assert created["id"] in {user["id"] for user in json.loads(out)}
    code, out, _ = await run(monkeypatch, capsys, [*base, "list"])
    assert code == 0 and email.lower() in out and out.splitlines()[0].split()[:3] == ["email", "role", "disabled"]

    code, out, err = await run(monkeypatch, capsys, [*base, "disable", email.upper(), "--json"])
    assert code == 0, err
    assert json.loads(out)["disabled"] is True
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT disabled FROM users WHERE id = $1", created["id"]) is True
        actions = await conn.fetch(
            "SELECT action, actor_id FROM audit_events WHERE resource_id = $1 ORDER BY id", created["id"]
        )
    finally:
        await conn.close()
    assert [(row["action"], row["actor_id"]) for row in actions] == [
        ("user.create", "operator"),
        ("user.update", "operator"),
    ]
    code, out, _ = await run(monkeypatch, capsys, [*base, "enable", email, "--json"])
    assert code == 0 and json.loads(out)["disabled"] is False


@pytest.mark.parametrize(
    ("argv", "stdin", "reason"),
    [
        (["create", "{email}", "--password-stdin"], "short\n", "password"),
        (["create", "{email}", "--password-stdin"], "\n", "empty"),
        (["create", "{email}"], "", "--password-stdin"),
        (["disable", "nobody-here@example.org"], "", "no account"),
    ],
)
async def test_errors_exit_1_with_a_reason_and_no_traceback(
    results_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str,
    reason: str,
) -> None:
    email = unique_email("cli")
    argv = [part.format(email=email) for part in argv]
    code, out, err = await run(monkeypatch, capsys, ["users", "--results-url", results_url, *argv], stdin)
    assert code == 1 and out == ""
    assert reason in err and "Traceback" not in err


async def test_duplicate_email_is_reported(
    results_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    email = unique_email("cli")
    argv = ["users", "--results-url", results_url, "create", email, "--password-stdin"]
    assert (await run(monkeypatch, capsys, argv, PASSWORD + "\n"))[0] == 0
    code, _, err = await run(monkeypatch, capsys, argv, PASSWORD + "\n")
    assert code == 1 and "already exists" in err


async def test_unreachable_results_service_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await run(monkeypatch, capsys, ["users", "--results-url", "http://127.0.0.1:9", "list"])
    assert code == 1 and "cannot reach results_service" in err


async def test_without_the_deployments_service_secret_the_cli_is_refused_and_creates_nothing(
    results_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    email = unique_email("cli")
    argv = ["users", "--results-url", results_url, "create", email, "--role", "admin", "--password-stdin"]
    monkeypatch.setenv("SERVICE_SECRET", "another-deployments-secret-" + "x" * 32)
    code, _, err = await run(monkeypatch, capsys, argv, PASSWORD + "\n")
    assert code == 1 and "service token is not valid" in err and "Traceback" not in err
    monkeypatch.setenv("SERVICE_SECRET", "")
    monkeypatch.setenv("SERVICE_SECRET_FILE", "/nonexistent/service_secret")
    code, _, err = await run(monkeypatch, capsys, argv, PASSWORD + "\n")
    assert code == 1 and "SERVICE_SECRET is not set" in err
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email.lower()) == 0
    finally:
        await conn.close()


async def login_answer(results_url: str, email: str, password: str) -> tuple[int, dict[str, Any]]:
    """results_service's answer to a login, as the gateway relays it."""
    async with (
        aiohttp.ClientSession(middlewares=signing()) as session,
        session.post(f"{results_url}/internal/auth/login", json={"email": email, "password": password}) as response,
    ):
        body: dict[str, Any] = await response.json()
        return response.status, body


async def test_reset_password_prints_a_temporary_password_once_that_must_be_changed(
    results_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    email = unique_email("cli")
    base = ["users", "--results-url", results_url]
    assert (await run(monkeypatch, capsys, [*base, "create", email, "--password-stdin"], PASSWORD + "\n"))[0] == 0

    code, out, err = await run(monkeypatch, capsys, [*base, "reset-password", email.upper()])
    assert code == 0, err
    [temporary] = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("temporary password")]
    assert len(temporary) >= 20 and temporary not in err
    assert "must choose a new password" in out
    assert (await login_answer(results_url, email, PASSWORD))[0] == 401
    status, answer = await login_answer(results_url, email, temporary)
    assert status == 200 and answer["must_change_password"] is True

    chosen = "chosen temporary password"
    code, out, err = await run(
        monkeypatch, capsys, [*base, "reset-password", email, "--password-stdin", "--json"], chosen
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["temporary_password"] is None and document["user"]["must_change_password"] is True
    assert chosen not in out
    assert (await login_answer(results_url, email, chosen))[0] == 200
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT actor_id, detail FROM audit_events WHERE action = 'user.password_reset' AND resource_id = $1"
            " ORDER BY id",
            document["user"]["id"],
        )
    finally:
        await conn.close()
    assert [(row["actor_id"], json.loads(row["detail"])["generated"]) for row in rows] == [
        ("operator", True),
        ("operator", False),
    ]


@pytest.mark.parametrize(("argv", "stdin", "reason"), [
    (["reset-password", "nobody-here@example.org"], "", "no account"),
    (["reset-password", "{email}", "--password-stdin"], "short\n", "at least 12 characters"),
])  # fmt: skip
async def test_reset_password_errors_exit_1_with_a_reason(
    results_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str,
    reason: str,
) -> None:
    email = unique_email("cli")
    base = ["users", "--results-url", results_url]
    assert (await run(monkeypatch, capsys, [*base, "create", email, "--password-stdin"], PASSWORD + "\n"))[0] == 0
    code, out, err = await run(monkeypatch, capsys, [*base, *[part.format(email=email) for part in argv]], stdin)
    assert code == 1 and out == ""
    assert reason in err and "Traceback" not in err
