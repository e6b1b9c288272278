"""/api/client-logs on the real results_service (this run's database) and through the gateway: a log is stored as
sent, owned by its sender, readable by them and admins only, limited in size, and every call is audited."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from common.app.problems import PROBLEM_CONTENT_TYPE
from results_service.main import init_app
from results_service.settings import ResultsSettings
from tests.ingest_rig import IngestRig, gateway_with_user, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    fetch,
    owner_fixture,
    results_settings_fixture,
    topology_fixture,
)
from tests.service_auth import as_user, signing

PATH = "/api/client-logs"
TEXT = {"Content-Type": "text/plain; charset=utf-8"}
NDJSON = {"Content-Type": "application/x-ndjson"}


async def send_log(client: Any, owner: str, body: bytes, query: str = "", **headers: str) -> tuple[int, Any]:
    response = await client.post(f"{PATH}{query}", data=body, headers={**as_user(owner), **TEXT, **headers})
    return response.status, await response.json(content_type=None)


async def test_a_log_is_stored_as_sent_and_read_back_by_its_owner(client: Any, owner: str, database_url: str) -> None:
    upload_id = uuid.uuid4().hex
    text = '{"event": "file_sent", "name": "ä.dcm"}\n{"event": "done"}\n'.encode()
    status, created = await send_log(client, owner, text, f"?upload_id={upload_id}&name=run.log", **NDJSON)
    assert status == 201
    assert (created["size"], created["upload_id"]) == (len(text), upload_id)
    [row] = await fetch(database_url, "SELECT * FROM client_logs WHERE id = $1", created["id"])
    assert (row["owner"], row["name"], row["content_type"], bytes(row["body"])) == (
        owner,
        "run.log",
        "application/x-ndjson",
        text,
    )
    response = await client.get(f"{PATH}/{created['id']}", headers=as_user(owner))
    assert response.status == 200 and await response.read() == text
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    records = await fetch(
        database_url,
        "SELECT action, outcome, resource_id, detail FROM audit_events WHERE actor_id = $1 ORDER BY id",
        owner,
    )
    assert [(r["action"], r["outcome"], r["resource_id"], json.loads(r["detail"])) for r in records] == [
        ("client_log.create", "success", created["id"], {"size": len(text), "upload_id": upload_id}),
        ("client_log.read", "success", created["id"], {"size": len(text)}),
    ]


async def test_another_users_log_is_a_404_like_a_missing_one_and_admins_read_any(client: Any, owner: str) -> None:
    _, created = await send_log(client, owner, b"mine")
    other = as_user(f"other-{uuid.uuid4().hex[:8]}")
    theirs = await client.get(f"{PATH}/{created['id']}", headers=other)
    missing = await client.get(f"{PATH}/{uuid.uuid4().hex}", headers=other)
    assert theirs.status == missing.status == 404
    assert theirs.content_type == PROBLEM_CONTENT_TYPE
    assert (await theirs.json())["detail"].replace(created["id"], "X") == (await missing.json())["detail"].replace(
        missing.url.path.rsplit("/", 1)[1], "X"
    )
    admin = await client.get(f"{PATH}/{created['id']}", headers=as_user("an-admin", "admin"))
    assert admin.status == 200 and await admin.read() == b"mine"


async def test_the_list_holds_the_callers_own_logs_newest_first_admins_see_all(client: Any, owner: str) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    upload_id = uuid.uuid4().hex
    ids = [(await send_log(client, owner, f"log {n}".encode(), f"?upload_id={upload_id}"))[1]["id"] for n in range(3)]
    _, theirs = await send_log(client, other, b"theirs", f"?upload_id={upload_id}")
    response = await client.get(f"{PATH}?upload_id={upload_id}&limit=2", headers=as_user(owner))
    page = await response.json()
    assert response.status == 200
    assert ([item["id"] for item in page["items"]], page["total"]) == ([ids[2], ids[1]], 3)
    assert page["items"][0] | {"created_at": None} == {
        "id": ids[2],
        "size": 5,
        "created_at": None,
        "upload_id": upload_id,
        "owner": owner,
        "name": None,
        "content_type": "text/plain",
    }
    assert page["next"] == f"{PATH}?upload_id={upload_id}&limit=2&offset=2"
    last = await (await client.get(page["next"], headers=as_user(owner))).json()
    assert ([item["id"] for item in last["items"]], last["next"]) == ([ids[0]], None)
    every = await (await client.get(f"{PATH}?upload_id={upload_id}", headers=as_user("an-admin", "admin"))).json()
    assert [item["id"] for item in every["items"]] == [theirs["id"], *reversed(ids)]


async def test_bad_logs_are_problems_and_nothing_is_stored(client: Any, owner: str, database_url: str) -> None:
    assert (await send_log(client, owner, b""))[0] == 400
    assert (await send_log(client, owner, b"x", **{"Content-Type": "application/json"}))[0] == 415
    status, problem = await send_log(client, owner, b"x", "?upload_id=../../etc")
    assert status == 422 and problem["errors"][0]["field"] == "upload_id"
    assert (await send_log(client, owner, b"x", "?name=a%00b"))[0] == 422
    assert (await send_log(client, owner, b"x", "?colour=red"))[0] == 422
    assert await fetch(database_url, "SELECT id FROM client_logs WHERE owner = $1", owner) == []


async def test_a_log_over_the_limit_is_a_413_at_results_service(
    results_settings: ResultsSettings, aiohttp_client: Any, owner: str, database_url: str
) -> None:
    small = results_settings.model_copy(update={"client_log_max_bytes": 100})
    client = await aiohttp_client(init_app(small), middlewares=signing())
    assert (await send_log(client, owner, b"x" * 100))[0] == 201
    status, problem = await send_log(client, owner, b"x" * 101)
    assert status == 413 and "100" in problem["detail"]
    assert len(await fetch(database_url, "SELECT id FROM client_logs WHERE owner = $1", owner)) == 1


async def _chunked(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 65536):
        yield b"y" * 65536


async def test_the_gateway_refuses_a_log_over_the_limit_declared_or_streamed(
    rig: IngestRig, aiohttp_client: Any
) -> None:
    gateway = await gateway_with_user(rig, aiohttp_client)
    ok = await gateway.post(PATH + "?name=fine", data=b"fine\n", headers={**gateway.headers, **TEXT})
    assert ok.status == 201, await ok.text()
    for body in (io.BytesIO(b"y" * (1024**2 + 1)), _chunked(2 * 1024**2)):
        response = await gateway.post(PATH, data=body, headers={**gateway.headers, **TEXT})
        assert response.status == 413 and response.content_type == PROBLEM_CONTENT_TYPE
    listing = await gateway.get(PATH, headers=gateway.headers)
    assert [item["name"] for item in (await listing.json())["items"]] == ["fine"]
