"""The elements API end to end: client -> gateway -> results_service -> PostgreSQL, all real.

results_service runs on a real port (`aiohttp_server`), the gateway in front of it
(`aiohttp_client`), against the run's migrated database; every test starts from an empty table.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from structlog.testing import capture_logs

from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.elements.helpers import (
    ELEMENTS,
    NO_RATE_LIMIT,
    assert_problem,
    count_rows,
    element,
    expected_figures,
    fields_of,
)
from tests.queue_helpers import LIVENESS


async def test_document_of_sample_04_stores_50_elements_with_figures_computed_from_first_principles(
    client: Any, samples_dir: Path, database_url: str
) -> None:
    document = json.loads((samples_dir / "sample-04-json.json").read_text())
    response = await client.post(ELEMENTS, json=document)
    assert response.status == 201
    created = await response.json()
    assert set(created) == set(document) and len(created) == 50
    for key, source in document.items():
        stored = await (await client.get(f"{ELEMENTS}{source['id']}/")).json()
        assert stored == created[key]
        before, after, size = expected_figures(source["data"])
        assert stored["id"] == source["id"]
        assert stored["device_name"] == source["deviceName"]
        assert stored["average_before"] == pytest.approx(before, rel=1e-12)
        assert stored["average_after"] == pytest.approx(after, rel=1e-12)
        assert stored["data_size"] == size == 50
        assert stored["raw_data"] == source["data"]
    assert await count_rows(database_url) == 50


@pytest.mark.parametrize("path", ["/api/elements", "/api/elements/"])
async def test_single_element_is_created_with_location_and_read_back_with_or_without_slash(
    client: Any, path: str
) -> None:
    response = await client.post(path, json=element("aabbcc1", ["54 26 34", "0 100 7"], "CT SCAN"))
    assert response.status == 201
    created = await response.json()
    assert response.headers["Location"] == "/api/elements/aabbcc1/"
    before, after, size = expected_figures(["54 26 34", "0 100 7"])
    assert created["average_before"] == pytest.approx(before) and created["average_after"] == pytest.approx(after)
    assert created["data_size"] == size and created["device_name"] == "CT SCAN"
    assert created["created_at"].endswith("Z") or created["created_at"].endswith("+00:00")
    for item_path in ("/api/elements/aabbcc1", "/api/elements/aabbcc1/"):
        assert await (await client.get(item_path)).json() == created


async def test_device_name_is_also_accepted_in_snake_case(client: Any) -> None:
    response = await client.post(ELEMENTS, json={"id": "e1", "data": ["1"], "device_name": "MRI"})
    assert response.status == 201
    assert (await response.json())["device_name"] == "MRI"


async def test_document_with_one_bad_element_stores_nothing(client: Any, samples_dir: Path, database_url: str) -> None:
    document = json.loads((samples_dir / "sample-04-json.json").read_text())
    document["37"]["data"][2] = "12 abc 7"
    problem = await assert_problem(await client.post(ELEMENTS, json=document), 422)
    assert problem["errors"] == [{"field": "37.data", "message": "data holds a non-numeric value: 'abc'"}]
    assert await count_rows(database_url) == 0


async def test_document_colliding_with_a_stored_id_is_409_and_stores_nothing(client: Any, database_url: str) -> None:
    assert (await client.post(ELEMENTS, json=element("taken"))).status == 201
    document = {"1": element("fresh1"), "2": element("taken"), "3": element("fresh2")}
    problem = await assert_problem(await client.post(ELEMENTS, json=document), 409)
    assert "'taken'" in problem["detail"]
    assert await count_rows(database_url) == 1


async def test_document_repeating_an_id_is_422_naming_the_second_element(client: Any, database_url: str) -> None:
    document = {"1": element("same"), "2": element("other"), "3": element("same")}
    problem = await assert_problem(await client.post(ELEMENTS, json=document), 422)
    assert fields_of(problem) == {"3.id"}
    assert await count_rows(database_url) == 0


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (element("has space"), {"id"}),
        (element("x" * 65), {"id"}),
        (element("ok", []), {"data"}),
        (element("ok", device=""), {"deviceName"}),
        ({"id": "ok", "data": "1 2 3", "deviceName": "RX"}, {"data"}),
        ({"id": "ok", "data": [1, 2], "deviceName": "RX"}, {"data.0", "data.1"}),
        ({"id": "ok"}, {"data", "deviceName"}),
        ({**element("ok"), "colour": "red"}, {"colour"}),
        (element("ok", ["1 -2 3"]), {"data"}),
        (element("ok", ["0 0 0"]), {"data"}),
        (element("ok", ["1 1e999"]), {"data"}),
        (element("ok", ["   "]), {"data"}),
        ({"1": element("ok", ["nan 1"]), "2": {"id": "b"}}, {"2.data", "2.deviceName"}),
        ({}, {"(body)"}),
        ([element("ok")], {"(body)"}),
    ],
)
async def test_invalid_elements_are_422_naming_each_field(
    client: Any, database_url: str, body: Any, fields: set[str]
) -> None:
    problem = await assert_problem(await client.post(ELEMENTS, json=body), 422)
    assert fields_of(problem) == fields
    assert all(error["message"] for error in problem["errors"])
    assert await count_rows(database_url) == 0


async def test_normalisation_errors_say_why(client: Any) -> None:
    zero = await assert_problem(await client.post(ELEMENTS, json=element("z", ["0 0"])), 422)
    assert "maximum of data is 0" in zero["errors"][0]["message"]
    negative = await assert_problem(await client.post(ELEMENTS, json=element("n", ["3 -1"])), 422)
    assert "negative" in negative["errors"][0]["message"]


async def test_malformed_json_is_400(client: Any) -> None:
    for raw in (b'{"id": "x",', b"", b"\xff\xfe"):
        response = await client.post(ELEMENTS, data=raw, headers={"Content-Type": "application/json"})
        await assert_problem(response, 400)


async def test_wrong_content_type_is_415(client: Any) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        body = json.dumps(element("ok")).encode()
        response = await client.post(ELEMENTS, data=body, headers={"Content-Type": content_type})
        await assert_problem(response, 415)
    patch = await client.patch(f"{ELEMENTS}ok/", data=b'{"id": "b"}', headers={"Content-Type": "text/plain"})
    await assert_problem(patch, 415)


async def test_body_over_the_gateway_limit_is_413_without_reaching_results_service(
    aiohttp_client: Any, gateway_settings: GatewaySettings, auth: dict[str, str], database_url: str
) -> None:
    small_settings = gateway_settings.model_copy(update={"elements_max_body": 1000})
    small = await aiohttp_client(init_gateway(small_settings), headers=auth)
    with capture_logs() as logs:
        response = await small.post(ELEMENTS, json=element("big", ["1 " * 1000]))
        await assert_problem(response, 413)
    reached = [e for e in logs if e["event"] == "http_request" and e.get("service") == "results_service"]
    assert [e for e in reached if e["path"].startswith("/api/elements")] == []
    assert await count_rows(database_url) == 0


async def test_chunked_body_over_the_results_limit_is_413(
    aiohttp_server: Any, aiohttp_client: Any, results_settings: ResultsSettings, auth: dict[str, str], database_url: str
) -> None:
    results = await aiohttp_server(init_results(results_settings.model_copy(update={"elements_max_body": 1000})))
    settings = GatewaySettings(results_url=str(results.make_url("")).rstrip("/"), **NO_RATE_LIMIT)
    gateway = await aiohttp_client(init_gateway(settings), headers=auth)

    async def chunks() -> Any:
        body = json.dumps(element("big", ["7 " * 5000])).encode()
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    response = await gateway.post(ELEMENTS, data=chunks(), headers={"Content-Type": "application/json"})
    await assert_problem(response, 413)
    assert await count_rows(database_url) == 0


async def test_duplicate_id_is_409(client: Any, database_url: str) -> None:
    assert (await client.post(ELEMENTS, json=element("dup"))).status == 201
    problem = await assert_problem(await client.post(ELEMENTS, json=element("dup", ["9"])), 409)
    assert "'dup'" in problem["detail"]
    assert await count_rows(database_url) == 1


async def test_twenty_concurrent_posts_of_one_id_give_one_201_and_nineteen_409(client: Any, database_url: str) -> None:
    responses = await asyncio.gather(*(client.post(ELEMENTS, json=element("race", [f"{n} 1 2"])) for n in range(1, 21)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [409] * 19
    for response in responses:
        if response.status == 409:
            assert "'race'" in (await assert_problem(response, 409))["detail"]
    assert await count_rows(database_url) == 1


async def test_pagination_covers_every_row_exactly_once_in_creation_order(client: Any) -> None:
    devices = ["RX 1", "CT SCAN", "MRI"]
    document = {str(n): element(f"e{n:04d}", [f"{n} 1"], devices[n % 3]) for n in range(237)}
    assert (await client.post(ELEMENTS, json=document)).status == 201
    seen: list[str] = []
    path: str | None = f"{ELEMENTS}?limit=25"
    pages = 0
    while path is not None:
        response = await client.get(path)
        assert response.status == 200
        page = await response.json()
        assert page["total"] == 237 and page["limit"] == 25
        assert len(page["items"]) == min(25, 237 - page["offset"])
        seen.extend(item["id"] for item in page["items"])
        path = page["next"]
        pages += 1
    assert pages == 10
    assert seen == [f"e{n:04d}" for n in range(237)]
    default = await (await client.get("/api/elements")).json()
    assert len(default["items"]) == 100 and default["next"] == "/api/elements?limit=100&offset=100"
    for device in devices:
        filtered: list[dict[str, Any]] = []
        path = f"{ELEMENTS}?device_name={device}&limit=30"
        while path is not None:
            page = await (await client.get(path)).json()
            filtered.extend(page["items"])
            path = page["next"]
        expected = [f"e{n:04d}" for n in range(237) if devices[n % 3] == device]
        assert [item["id"] for item in filtered] == expected
        assert all(item["device_name"] == device for item in filtered)
    empty = await (await client.get(f"{ELEMENTS}?device_name=nothing")).json()
    assert empty == {"items": [], "total": 0, "limit": 100, "offset": 0, "next": None}
    beyond = await (await client.get(f"{ELEMENTS}?offset=500")).json()
    assert beyond["items"] == [] and beyond["total"] == 237 and beyond["next"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("page=2", "page"),
    ],
)
async def test_invalid_list_queries_are_422(client: Any, query: str, field: str) -> None:
    problem = await assert_problem(await client.get(f"{ELEMENTS}?{query}"), 422)
    assert fields_of(problem) == {field}


async def test_patch_changes_the_device_name_only(client: Any) -> None:
    created = await (await client.post(ELEMENTS, json=element("p1", ["2 4"], "RX 1"))).json()
    response = await client.patch("/api/elements/p1", json={"device_name": "MRI"})
    assert response.status == 200
    updated = await response.json()
    assert updated["device_name"] == "MRI"
    unchanged = ("id", "average_before", "average_after", "data_size", "raw_data", "created_at")
    assert {k: updated[k] for k in unchanged} == {k: created[k] for k in unchanged}
    assert updated["updated_at"] > created["updated_at"]
    camel = await client.put("/api/elements/p1/", json={"deviceName": "CT SCAN"})
    assert (await camel.json())["device_name"] == "CT SCAN"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_rename_updates_the_one_row_in_place(client: Any, database_url: str, method: str) -> None:
    await client.post(ELEMENTS, json=element("old-id"))
    conn = await asyncpg.connect(database_url)
    try:
        row_id = await conn.fetchval("SELECT row_id FROM elements WHERE element_id = 'old-id'")
        response = await client.request(method, "/api/elements/old-id/", json={"id": "new-id", "deviceName": "MRI"})
        assert response.status == 200
        body = await response.json()
        assert body["id"] == "new-id" and body["device_name"] == "MRI"
        rows = await conn.fetch("SELECT row_id, element_id FROM elements")
    finally:
        await conn.close()
    assert [(r["row_id"], r["element_id"]) for r in rows] == [(row_id, "new-id")]
    await assert_problem(await client.get("/api/elements/old-id/"), 404)
    assert (await client.get("/api/elements/new-id/")).status == 200
    same = await client.request(method, "/api/elements/new-id/", json={"id": "new-id"})
    assert same.status == 200


async def test_rename_to_a_taken_id_is_409_and_changes_nothing(client: Any, database_url: str) -> None:
    await client.post(ELEMENTS, json={"1": element("a", device="RX 1"), "2": element("b", device="MRI")})
    problem = await assert_problem(await client.put("/api/elements/a/", json={"id": "b", "device_name": "CT"}), 409)
    assert "'b'" in problem["detail"]
    assert (await (await client.get("/api/elements/a/")).json())["device_name"] == "RX 1"
    assert (await (await client.get("/api/elements/b/")).json())["device_name"] == "MRI"
    assert await count_rows(database_url) == 2


async def test_concurrent_renames_to_one_new_id_let_exactly_one_win(client: Any, database_url: str) -> None:
    document = {str(n): element(f"r{n}") for n in range(8)}
    await client.post(ELEMENTS, json=document)
    responses = await asyncio.gather(*(client.patch(f"/api/elements/r{n}", json={"id": "winner"}) for n in range(8)))
    assert sorted(r.status for r in responses) == [200] + [409] * 7
    assert await count_rows(database_url) == 8
    assert await count_rows(database_url, "element_id = $1", "winner") == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"data": ["1 2"]}, {"data"}),
        ({"average_before": 3.0, "device_name": "MRI"}, {"average_before"}),
        ({"created_at": "2020-01-01T00:00:00Z"}, {"created_at"}),
        ({}, {"(body)"}),
        ({"id": None}, {"id"}),
        ({"device_name": ""}, {"device_name"}),
        ({"id": "bad id"}, {"id"}),
    ],
)
async def test_update_of_anything_but_id_and_device_name_is_422_naming_the_field(
    client: Any, body: dict[str, Any], fields: set[str]
) -> None:
    created = await (await client.post(ELEMENTS, json=element("u1"))).json()
    for method in ("PUT", "PATCH"):
        problem = await assert_problem(await client.request(method, "/api/elements/u1/", json=body), 422)
        assert fields_of(problem) == fields
    assert await (await client.get("/api/elements/u1/")).json() == created


async def test_update_of_an_unknown_id_is_404(client: Any) -> None:
    await assert_problem(await client.patch("/api/elements/ghost/", json={"device_name": "MRI"}), 404)
    await assert_problem(await client.put("/api/elements/ghost", json={"id": "x"}), 404)


async def test_delete_is_204_then_404(client: Any, database_url: str) -> None:
    await client.post(ELEMENTS, json={"1": element("d1"), "2": element("d2")})
    response = await client.delete("/api/elements/d1/")
    assert response.status == 204 and await response.read() == b""
    await assert_problem(await client.delete("/api/elements/d1/"), 404)
    await assert_problem(await client.get("/api/elements/d1"), 404)
    assert await count_rows(database_url) == 1
    assert (await client.delete("/api/elements/d2")).status == 204


@pytest.mark.parametrize("path", ["/api/elements/nope/", "/api/elements/nope", "/api/elements/bad%20id/"])
async def test_unknown_ids_are_404(client: Any, path: str) -> None:
    problem = await assert_problem(await client.get(path), 404)
    assert problem["instance"] == path.replace("%20", " ")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", ELEMENTS, {"GET", "HEAD", "POST"}),
        ("PUT", "/api/elements", {"GET", "HEAD", "POST"}),
        ("POST", "/api/elements/x1/", {"DELETE", "GET", "HEAD", "PATCH", "PUT"}),
        ("TRACE", "/api/elements/x1", {"DELETE", "GET", "HEAD", "PATCH", "PUT"}),
    ],
)
async def test_unsupported_methods_are_405_with_allow(client: Any, method: str, path: str, allowed: set[str]) -> None:
    response = await client.request(method, path)
    await assert_problem(response, 405)
    assert set(response.headers["Allow"].split(",")) == allowed


async def test_results_service_down_is_a_503_problem_without_waiting_for_a_timeout(
    aiohttp_client: Any, auth: dict[str, str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    never = 10 * LIVENESS  # timeouts longer than the test may run: the answer can only come from the refusal
    settings = GatewaySettings(
        results_url=f"http://127.0.0.1:{port}",
        auth_cache_seconds=0,
        upstream_connect_timeout=never,
        upstream_timeout=never,
    )
    gateway = await aiohttp_client(init_gateway(settings), headers=auth)
    await assert_problem(await gateway.get(ELEMENTS), 503)
    await assert_problem(await gateway.post(ELEMENTS, json=element("lost")), 503)


async def test_correlation_id_reaches_both_services_logs_and_bodies_are_not_logged(client: Any) -> None:
    marker = "7919 7907 7901"  # would show up if a body were logged
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await client.post(
            ELEMENTS, json=element("logged", [marker], "Secret Device"), headers={"X-Request-ID": "corr-abc-123"}
        )
        assert response.status == 201
        failed = await client.get("/api/elements/missing/", headers={"X-Request-ID": "corr-missing"})
        assert failed.status == 404
    assert response.headers["X-Request-ID"] == "corr-abc-123"
    assert failed.headers["X-Request-ID"] == "corr-missing"
    for correlation_id, status in (("corr-abc-123", 201), ("corr-missing", 404)):
        lines = [e for e in logs if e.get("request_id") == correlation_id and e.get("path", "").startswith("/api/")]
        for service in ("gateway", "results_service"):
            (request,) = [e for e in lines if e["event"] == "http_request" and e["service"] == service]
            (answer,) = [e for e in lines if e["event"] == "http_response" and e["service"] == service]
            assert answer["status"] == status and answer["duration_ms"] >= 0
            assert request["method"] == answer["method"]
    posted = [e for e in logs if e.get("request_id") == "corr-abc-123" and e["event"] == "http_request"]
    assert all(isinstance(e["bytes"], int) and e["bytes"] > 0 for e in posted if e["service"] == "results_service")
    reasons = [e for e in logs if e.get("request_id") == "corr-missing" and e["event"] == "request_failed"]
    assert all("Bearer" not in repr(e) for e in logs)
    assert reasons and "missing" in reasons[0]["reason"]
    text = repr(logs)
    assert marker not in text and "Secret Device" not in text


async def test_a_correlation_id_is_made_when_the_client_sends_none(client: Any) -> None:
    response = await client.get(ELEMENTS)
    assert response.status == 200
    assert len(response.headers["X-Request-ID"]) == 32


async def test_results_service_is_ready_when_its_database_answers(results_server: Any, aiohttp_client: Any) -> None:
    direct = await aiohttp_client(results_server)
    response = await direct.get("/readyz")
    assert response.status == 200 and await response.json() == {"status": "ready"}


async def test_results_service_is_not_ready_without_its_database(aiohttp_client: Any, database_url: str) -> None:
    missing = database_url.rsplit("/", 1)[0] + "/dicomflow_no_such_database"
    direct = await aiohttp_client(init_results(ResultsSettings(database_url=missing)))
    response = await direct.get("/readyz")
    problem = await assert_problem(response, 503)
    assert "database" in problem["checks"]
