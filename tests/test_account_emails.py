"""Account e-mails and passwords are checked with messages a person understands (results_service, PostgreSQL).

Hostile or broken addresses are a 422 naming the field, never a 500 or a stored account; login only normalises,
so it answers the one 401 for an address no account can have, and a 422 for a control character.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import asyncpg
import pytest

from results_service.main import init_app
from results_service.settings import ResultsSettings
from tests.account_helpers import PASSWORD, admin_headers, assert_problem, create_user, unique_email
from tests.service_auth import signing

SPECIAL_USE = "The part after the @-sign is a special-use or reserved name that cannot be used with email."
LONG = "a" * 60 + "@" + ".".join(["b" * 60] * 5) + ".org"


@pytest.fixture
async def client(aiohttp_client: Any, database_url: str) -> Any:
    return await aiohttp_client(init_app(ResultsSettings(database_url=database_url)), middlewares=signing())


async def user_count(database_url: str, email: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email.lower())
        return count
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("<script>@x.org", "This is not a valid email address. It must not contain '<' or '>'."),
        (
            "a\x00@x.org",
            "This is not a valid email address. "
            "The email address contains invalid characters before the @-sign: U+0000.",
        ),
        (LONG, f"This email address is too long: it has {len(LONG)} characters, at most 254 are allowed."),
        ("no-at-sign.org", "This is not a valid email address. An email address must have an @-sign."),
        ("x@dicomflow.local", f"This is not a valid email address. {SPECIAL_USE}"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/internal/users", "/api/users"])
async def test_an_invalid_email_is_a_422_in_words_and_no_account(
    client: Any, database_url: str, path: str, email: str, message: str
) -> None:
    assert len(LONG) > 300
    headers = admin_headers() if path.startswith("/api/") else {}
    response = await client.post(path, json={"email": email, "password": PASSWORD}, headers=headers)
    problem = await assert_problem(response, 422)
    assert problem["errors"] == [{"field": "email", "message": message}]
    assert PASSWORD not in json.dumps(problem)
    if "\x00" not in email:
        assert await user_count(database_url, email) == 0


async def test_a_short_password_is_refused_in_words(client: Any) -> None:
    response = await client.post("/internal/users", json={"email": unique_email(), "password": "eleven char"})
    problem = await assert_problem(response, 422)
    assert problem["errors"] == [
        {"field": "password", "message": "The password must have at least 12 characters (this one has 11)."}
    ]


async def test_login_with_a_nul_byte_is_a_422_and_with_an_impossible_address_the_usual_401(client: Any) -> None:
    body = {"email": "a\x00@x.org", "password": PASSWORD}
    problem = await assert_problem(await client.post("/internal/auth/login", json=body), 422)
    assert problem["errors"][0]["field"] == "email" and "control characters" in problem["errors"][0]["message"]
    body = {"email": "<script>@x.org", "password": PASSWORD}
    problem = await assert_problem(await client.post("/internal/auth/login", json=body), 401)
    assert problem["detail"] == "Invalid email or password."


async def test_an_address_is_stored_in_one_form_and_found_in_any_case_or_unicode_form(client: Any) -> None:
    local = f"Zoë-{unique_email('x').split('@')[0]}"
    decomposed = unicodedata.normalize("NFD", f"{local}@Exämple.ORG")
    user = await create_user(client, decomposed)
    assert user["email"] == unicodedata.normalize("NFC", f"{local}@exämple.org").lower()
    composed_upper = unicodedata.normalize("NFC", f"{local}@EXÄMPLE.org").upper()
    response = await client.post("/internal/auth/login", json={"email": composed_upper, "password": PASSWORD})
    assert response.status == 200, await response.text()
    duplicate = {"email": f"  {user['email'].upper()} ", "password": PASSWORD}
    await assert_problem(await client.post("/internal/users", json=duplicate), 409)
