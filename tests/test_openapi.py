"""The gateway's OpenAPI 3.1 document and its page: valid, complete for the elements API, self-contained."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from common.app.api_routes import handled_by
from common.app.openapi import ApiSpec, Operation, Reply
from common.schemas.accounts_api import account_operations
from common.schemas.client_logs_api import client_log_operations
from common.schemas.elements import ElementOut
from common.schemas.elements_api import element_operations
from common.schemas.instances_api import instance_operations
from common.schemas.lookup_api import lookup_operations
from common.schemas.uploads_api import upload_operations
from common.schemas.workers_api import worker_operations
from gateway.keys import api_spec_key
from gateway.main import init_app
from gateway.settings import GatewaySettings
from ingest_service.main import init_app as init_ingest
from ingest_service.settings import IngestSettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings

ELEMENT_ROUTES = {
    "/api/elements/": {"get", "post"},
    "/api/elements/{element_id}/": {"get", "put", "patch", "delete"},
}


@pytest.fixture
async def document(aiohttp_client: Any) -> dict[str, Any]:
    client = await aiohttp_client(init_app(GatewaySettings()))
    response = await client.get("/api/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    return body


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs_in(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs_in(v)]
    return []


async def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


async def test_every_route_of_the_elements_api_is_documented(document: dict[str, Any]) -> None:
    for path, methods in ELEMENT_ROUTES.items():
        assert methods <= set(document["paths"][path]), path
    post = document["paths"]["/api/elements/"]["post"]
    assert set(post["responses"]) >= {"201", "400", "409", "413", "415", "422"}
    body = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in body} == {"ElementIn", "ElementDocument"}
    listing = document["paths"]["/api/elements/"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "offset", "device_name", "owner"}
    for method in ("put", "patch"):
        update = document["paths"]["/api/elements/{element_id}/"][method]
        assert set(update["responses"]) >= {"200", "404", "409", "422"}
    problem = document["paths"]["/api/elements/{element_id}/"]["delete"]["responses"]["404"]["content"]
    assert problem["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    ids = [op["operationId"] for methods in document["paths"].values() for op in methods.values()]
    assert len(ids) == len(set(ids))


async def test_every_schema_reference_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    refs = refs_in(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    element_in = schemas["ElementIn"]
    assert element_in["properties"]["id"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    assert set(element_in["required"]) == {"id", "data", "deviceName"}
    assert set(schemas["ElementUpdate"]["properties"]) == {"id", "deviceName"}
    assert schemas["ElementUpdate"]["additionalProperties"] is False


async def test_the_docs_page_renders_every_operation_without_external_resources(
    aiohttp_client: Any, document: dict[str, Any]
) -> None:
    client = await aiohttp_client(init_app(GatewaySettings()))
    response = await client.get("/api/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    for path in ELEMENT_ROUTES:
        assert path in page
    operations = sum(len(methods) for methods in document["paths"].values())
    assert page.count("<div class=op ") == operations >= 6
    assert 'id="schema-ElementIn"' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_declaring_one_operation_twice_is_refused() -> None:
    spec = ApiSpec("t", "1")
    operation = Operation("GET", "/x", "x", "t", {200: Reply("ok", (ElementOut,), "application/json")})
    spec.add([operation])
    with pytest.raises(ValueError, match="declared twice"):
        spec.add([operation])


def test_a_broken_document_fails_validation() -> None:
    with pytest.raises(OpenAPIValidationError):
        validate({"openapi": "3.1.0", "info": {"title": "x"}, "paths": {}})


def registered_api_routes(app: web.Application) -> Counter[tuple[str, str]]:
    """(method, path) of every /api route of the app's router, HEAD twins of GETs left out."""
    return Counter(
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api") and route.method != "HEAD"
    )


def operation_routes(operations: Iterable[Operation]) -> Counter[tuple[str, str]]:
    return Counter((operation.method, path) for operation in operations for path in operation.paths)


async def test_every_api_route_of_the_gateway_has_exactly_one_operation_and_every_operation_a_route(
    document: dict[str, Any],
) -> None:
    """Walk the real route table: a /api route without an OpenAPI operation (or the reverse) fails here."""
    app = init_app(GatewaySettings())
    spec = app[api_spec_key]
    routes = registered_api_routes(app)
    assert routes == operation_routes(spec.operations)
    assert set(routes.values()) == {1}
    documented = {(method.upper(), path) for path, methods in document["paths"].items() for method in methods}
    assert documented == {(operation.method, operation.path) for operation in spec.operations}
    for path in ("/api/auth/login", "/api/auth/logout", "/api/users", "/api/users/{user_id}", "/api/audit"):
        assert path in document["paths"], path
    assert set(document["paths"]["/api/uploads"]) == {"post"} and set(document["paths"]["/api/events"]) == {"get"}
    assert "401" in document["paths"]["/api/audit"]["get"]["responses"]
    # Every operation needs the bearer token but those declared public, which the gateway lets through.
    assert document["security"] == [{"bearer": []}]
    public = {
        (m.upper(), p) for p, methods in document["paths"].items() for m, op in methods.items() if "security" in op
    }
    assert public == {
        ("POST", "/api/auth/login"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/docs"),
        ("GET", "/api/asyncapi.json"),
        ("GET", "/api/events"),
    }
    assert spec.public_paths() == {path for _, path in public}


async def test_results_service_and_ingest_route_the_operations_they_answer_and_nothing_else_under_api() -> None:
    results = init_results(ResultsSettings())
    assert registered_api_routes(results) == operation_routes(
        [
            *account_operations(),
            *element_operations(),
            *instance_operations(),
            *lookup_operations(),
            *client_log_operations(),
            *worker_operations(),
        ]
    )
    ingest = init_ingest(IngestSettings())
    assert registered_api_routes(ingest) == operation_routes(upload_operations())


def test_an_operation_without_a_handler_or_a_handler_without_an_operation_is_refused() -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(ValueError, match="has no handler"):
        handled_by(element_operations(), {"get_elements": handler})
    with pytest.raises(ValueError, match="handlers of no operation"):
        handled_by(element_operations(), {"get_nothing": handler}, default=handler)


async def test_the_asyncapi_document_is_served_beside_the_openapi_one_without_a_token(aiohttp_client: Any) -> None:
    client = await aiohttp_client(init_app(GatewaySettings()))
    response = await client.get("/api/asyncapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    document = await response.json()
    assert document["asyncapi"] == "3.0.0"
    assert {"ProcessJob", "ProcessResult", "StatusEvent", "StatusChanges"} <= set(document["components"]["messages"])
