"""Hostile input to the read and elements APIs is a 4xx problem a person can read, never a 500 (issue 13).

Each case was a 500 before: an instance id longer than its column, an offset past PostgreSQL's
bigint, a NUL byte (which PostgreSQL refuses in text) in a filter, a path or a body, a filter
longer than the column it is compared with. Requests go through the gateway with real tokens, to
results_service on a real port, so what is checked is what a client gets; what was written is read
back from PostgreSQL.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from common.app.logs import CORRELATION_HEADER
from common.app.pagination import MAX_LIMIT, MAX_OFFSET
from common.app.problems import PROBLEM_CONTENT_TYPE
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.account_helpers import audit_rows, insert_api_user
from tests.elements.helpers import NO_RATE_LIMIT, count_rows, element

BIGINT_OVERFLOW = str(2**63)
LISTS = ("/api/instances", "/api/studies", "/api/elements/", "/api/audit", "/api/client-logs")


@pytest.fixture
async def results_server(aiohttp_server: Any, database_url: str) -> Any:
    return await aiohttp_server(init_results(ResultsSettings(database_url=database_url)))


@pytest.fixture
def gateway_settings(results_server: Any) -> GatewaySettings:
    return GatewaySettings(results_url=str(results_server.make_url("")).rstrip("/"), **NO_RATE_LIMIT)


@pytest.fixture
async def admin(aiohttp_client: Any, gateway_settings: GatewaySettings, database_url: str) -> Any:
    """An admin's client of the gateway (admins reach every list, the audit trail included)."""
    user = await insert_api_user(database_url, role="admin")
    return await aiohttp_client(init_gateway(gateway_settings), headers={"Authorization": user["Authorization"]})


@pytest.fixture
async def user(aiohttp_client: Any, gateway_settings: GatewaySettings, database_url: str) -> Any:
    """A user's client of the gateway, with its user id as `client.user_id`."""
    account = await insert_api_user(database_url)
    client = await aiohttp_client(init_gateway(gateway_settings), headers={"Authorization": account["Authorization"]})
    client.user_id = account["id"]
    return client


async def problem(response: Any, status: int) -> dict[str, Any]:
    """The response is a problem+json of `status` whose text holds no raw control character."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert not any(ord(char) < 0x20 for char in text), text
    body: dict[str, Any] = await response.json()
    assert body["status"] == status and body["detail"]
    return body


def messages(body: dict[str, Any]) -> dict[str, str]:
    return {error["field"]: error["message"] for error in body["errors"]}


@pytest.mark.parametrize(
    "path",
    [
        "/api/instances/" + "a" * 33,
        "/api/instances/" + "a" * 64,
        "/api/instances/" + "A" * 32,
        "/api/instances/" + "a" * 33 + "/preview.png",
        "/api/instances/" + "a" * 33 + "/file",
        "/api/instances/" + "a" * 33 + "/file?deidentified=true",
        "/api/instances/a%00b",
        "/api/instances/a%00b/file",
        "/api/uploads/" + "a" * 65,
        "/api/uploads/a%00b",
    ],
)
async def test_ids_that_cannot_exist_are_404_and_audited_escaped(user: Any, database_url: str, path: str) -> None:
    marker = uuid.uuid4().hex
    body = await problem(await user.get(path, headers={CORRELATION_HEADER: marker}), 404)
    assert "was not found" in body["detail"]
    [row] = await audit_rows(database_url, "correlation_id = $1", marker)
    assert row["outcome"] == "failure" and "\x00" not in row["resource_id"] and len(row["resource_id"]) <= 128


async def test_an_element_id_with_a_nul_in_the_path_is_404_and_audited_escaped(user: Any, database_url: str) -> None:
    marker = uuid.uuid4().hex
    for method in ("GET", "PATCH", "DELETE"):
        response = await user.request(method, "/api/elements/a%00b/", headers={CORRELATION_HEADER: marker})
        assert "a\\x00b" in (await problem(response, 404))["detail"]
    rows = await audit_rows(database_url, "correlation_id = $1", marker)
    assert [row["resource_id"] for row in rows] == ["a\\x00b"] * 3


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        (f"offset={BIGINT_OVERFLOW}", "offset", str(MAX_OFFSET)),
        (f"offset={MAX_OFFSET + 1}", "offset", str(MAX_OFFSET)),
        ("offset=-1", "offset", "greater than or equal to 0"),
        ("offset=ten", "offset", "valid integer"),
        (f"limit={BIGINT_OVERFLOW}", "limit", str(MAX_LIMIT)),
        ("limit=0", "limit", "greater than or equal to 1"),
        ("limit=1e3", "limit", "valid integer"),
    ],
)
async def test_paging_out_of_bounds_is_422_naming_the_bound(
    admin: Any, path: str, query: str, field: str, words: str
) -> None:
    body = await problem(await admin.get(f"{path}?{query}"), 422)
    assert words in messages(body)[field]


@pytest.mark.parametrize("path", LISTS)
async def test_the_last_offset_allowed_is_an_empty_page_with_the_total(admin: Any, path: str) -> None:
    response = await admin.get(f"{path}?offset={MAX_OFFSET}&limit={MAX_LIMIT}")
    assert response.status == 200, await response.text()
    page = await response.json()
    assert (page["items"], page["offset"], page["next"]) == ([], MAX_OFFSET, None)
    assert page["total"] >= 0


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/instances?modality=%00", "modality"),
        ("/api/instances?study=1.2%00.3", "study"),
        ("/api/elements/?device_name=RX%001", "device_name"),
        ("/api/elements/?owner=a%00b", "owner"),
        ("/api/elements/x1/?owner=a%00b", "owner"),
        ("/api/audit?actor=a%00b", "actor"),
        ("/api/audit?action=instance.%00", "action"),
        ("/api/audit?resource_type=%07", "resource_type"),
        ("/api/audit?resource_id=%1b[2J", "resource_id"),
    ],
)
async def test_control_characters_in_a_filter_are_422_naming_it(admin: Any, path: str, field: str) -> None:
    body = await problem(await admin.get(path), 422)
    assert "control characters" in messages(body)[field]


@pytest.mark.parametrize(
    ("path", "field", "length"),
    [
        ("/api/instances?modality=", "modality", 17),
        ("/api/instances?study=", "study", 129),
        ("/api/elements/?device_name=", "device_name", 256),
        ("/api/elements/?owner=", "owner", 129),
        ("/api/elements/x1/?owner=", "owner", 129),
        ("/api/audit?actor=", "actor", 321),
        ("/api/audit?resource_id=", "resource_id", 129),
    ],
)
async def test_a_filter_longer_than_its_column_is_422_naming_its_limit(
    admin: Any, path: str, field: str, length: int
) -> None:
    body = await problem(await admin.get(path + "a" * length), 422)
    assert f"at most {length - 1} characters" in messages(body)[field]


@pytest.mark.parametrize("length", [65, 200, 320])
async def test_an_actor_longer_than_any_user_id_is_looked_up_as_an_email(admin: Any, length: int) -> None:
    response = await admin.get("/api/audit", params={"actor": "a" * length})
    assert response.status == 200, await response.text()
    assert (await response.json())["total"] == 0


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"since": "2026-01-01T00:00:00"}, "timezone"),
        ({"until": "2026-01-01"}, "timezone"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "out of range"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "out of range"),
    ],
)
async def test_a_time_without_offset_or_out_of_range_is_422(admin: Any, query: dict[str, str], words: str) -> None:
    body = await problem(await admin.get("/api/audit", params=query), 422)
    [message] = messages(body).values()
    assert words in message


async def test_times_with_an_offset_filter_the_audit_trail(admin: Any) -> None:
    response = await admin.get(
        "/api/audit", params={"since": "2000-01-01T00:00:00+14:00", "until": "9999-01-01T00:00Z"}
    )
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    "path",
    [
        "/api/instances?modality=MR&modality=CT",
        "/api/studies?limit=1&limit=1000",
        "/api/elements/?offset=0&offset=5",
        "/api/elements/x1/?owner=a&owner=b",
        "/api/audit?actor=a&actor=b",
        "/api/instances/" + "a" * 32 + "/file?deidentified=false&deidentified=true",
    ],
)
async def test_a_query_parameter_given_twice_is_422_naming_it(admin: Any, path: str) -> None:
    body = await problem(await admin.get(path), 422)
    [(field, message)] = messages(body).items()
    assert field in path and "more than once" in message


async def test_an_unknown_query_parameter_of_an_element_is_422(user: Any) -> None:
    body = await problem(await user.get("/api/elements/x1/?own=me"), 422)
    assert set(messages(body)) == {"own"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (element("nul-device", device="RX\x001"), "deviceName"),
        (element("bell-device", device="RX\x07"), "deviceName"),
        ({"1": element("in-a-document", device="\x00")}, "1.deviceName"),
        (element("nul-data", data=["1 2\x00"]), "data"),
        (element("nul\x00id"), "id"),
    ],
)
async def test_a_control_character_in_an_element_is_422_and_nothing_is_stored(
    user: Any, database_url: str, body: dict[str, Any], field: str
) -> None:
    response = await user.post("/api/elements/", json=body)
    assert field in messages(await problem(response, 422))
    assert await count_rows(database_url, "owner = $1", user.user_id) == 0


async def test_a_control_character_in_an_element_update_is_422_and_changes_nothing(
    user: Any, database_url: str
) -> None:
    assert (await user.post("/api/elements/", json=element("kept", device="RX 1"))).status == 201
    for method in ("PUT", "PATCH"):
        response = await user.request(method, "/api/elements/kept/", json={"device_name": "RX\x002"})
        assert "control characters" in messages(await problem(response, 422))["device_name"]
    assert await count_rows(database_url, "owner = $1 AND device_name = 'RX 1'", user.user_id) == 1


async def test_a_refused_login_does_not_name_the_internal_route_it_was_relayed_to(user: Any) -> None:
    response = await user.post("/api/auth/login", json={"email": "nobody@example.org", "password": "not this one"})
    assert response.status == 401, await response.text()
    assert "/internal" not in await response.text()
