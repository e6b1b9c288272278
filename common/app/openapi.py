"""An OpenAPI 3.1 document built from the pydantic models of the API and a list of operations.

Each API declares its operations (method, path, models of the bodies and parameters) next to
its models. An operation is also the declaration of its route: services register their routes
from operations (`common.app.api_routes`), and the gateway adds the same operations to one
:class:`ApiSpec` and serves the document. Schemas come from pydantic (`models_json_schema`), so
the document cannot drift from what is validated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from common.app.problems import PROBLEM_CONTENT_TYPE, Problem

REF_TEMPLATE = "#/components/schemas/{model}"
Refs = Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]
JSON = "application/json"
BEARER = "bearer"
ParamLocation = Literal["query", "path", "header"]


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter."""

    name: str
    location: ParamLocation
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """One response of an operation; errors default to a problem+json body."""

    description: str
    models: tuple[type[BaseModel], ...] = (Problem,)
    content_type: str = PROBLEM_CONTENT_TYPE


def json_reply(description: str, *models: type[BaseModel]) -> Reply:
    """A JSON success response whose body is one of `models` (none for an empty body)."""
    return Reply(description, models, JSON)


@dataclass(frozen=True, slots=True)
class RawBody:
    """A request body that is not a JSON model (files, archives): its media type, the schema of what it
    carries and, for a multipart body, the encoding of its fields (OpenAPI's Media Type Object)."""

    content_type: str
    schema: Mapping[str, Any]
    encoding: Mapping[str, Any] | None = None

    def media(self) -> dict[str, Any]:
        """The Media Type Object."""
        media: dict[str, Any] = {"schema": dict(self.schema)}
        if self.encoding:
            media["encoding"] = dict(self.encoding)
        return media


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path, with the models of its request and responses."""

    method: str
    path: str
    summary: str
    tag: str
    responses: dict[int, Reply]
    request_body: tuple[type[BaseModel], ...] = ()
    params: tuple[Param, ...] = ()
    description: str = ""
    slash_twin: bool = False
    """The path also answers with (or without) a trailing slash: routed both ways, documented once."""
    public: bool = False
    """Callable without a bearer token (documented with `security: []`; the gateway lets it through)."""
    raw_bodies: tuple[RawBody, ...] = ()
    """Request bodies other than the JSON models of `request_body`, documented beside them."""
    request_description: str = ""

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path the route answers at: the documented one first, then its slash twin."""
        if not self.slash_twin:
            return (self.path,)
        twin = self.path[:-1] if self.path.endswith("/") else self.path + "/"
        return (self.path, twin)

    @property
    def operation_id(self) -> str:
        words = [w for w in self.path.replace("{", "").replace("}", "").split("/") if w and w != "api"]
        return "_".join([self.method.lower(), *words])


def query_params(model: type[BaseModel]) -> tuple[Param, ...]:
    """The fields of a query model as query parameters (schemas from pydantic, `null` dropped)."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", "")
        prop.pop("title", None)
        if "anyOf" in prop:
            options = [option for option in prop.pop("anyOf") if option != {"type": "null"}]
            prop.update(options[0] if len(options) == 1 else {"anyOf": options})
        if prop.get("default", "") is None:
            del prop["default"]
        params.append(Param(name, "query", prop, description, name in required))
    return tuple(params)


class ApiSpec:
    """A registry of operations that renders as one OpenAPI 3.1 document."""

    def __init__(self, title: str, version: str, description: str = "") -> None:
        self.title = title
        self.version = version
        self.description = description
        self.operations: list[Operation] = []
        self._document: dict[str, Any] | None = None
        self._public: frozenset[str] | None = None

    def add(self, operations: Iterable[Operation]) -> None:
        """Declare operations; a method declared twice on one path is a programming error."""
        for operation in operations:
            if any((o.method, o.path) == (operation.method, operation.path) for o in self.operations):
                raise ValueError(f"{operation.method} {operation.path} is declared twice")
            self.operations.append(operation)
        self._document = None
        self._public = None

    def public_paths(self) -> frozenset[str]:
        """Every path (slash twins included) of the operations anyone may call without a token (built once)."""
        if self._public is None:
            self._public = frozenset(path for op in self.operations if op.public for path in op.paths)
        return self._public

    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every declared operation (built once, then reused)."""
        if self._document is None:
            self._document = self._build()
        return self._document

    def _build(self) -> dict[str, Any]:
        models = self._models()
        refs, definitions = models_json_schema(models, ref_template=REF_TEMPLATE) if models else ({}, {})
        paths: dict[str, dict[str, Any]] = {}
        for operation in self.operations:
            paths.setdefault(operation.path, {})[operation.method.lower()] = self._operation(operation, refs)
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version, "description": self.description},
            "paths": paths,
            "security": [{BEARER: []}],
            "components": {
                "schemas": definitions.get("$defs", {}),
                "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            },
        }

    def _models(self) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
        seen: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
        for operation in self.operations:
            for model in operation.request_body:
                seen[(model, "validation")] = None
            for reply in operation.responses.values():
                for model in reply.models:
                    seen[(model, "serialization")] = None
        return list(seen)

    @staticmethod
    def _operation(operation: Operation, refs: Refs) -> dict[str, Any]:
        result: dict[str, Any] = {
            "operationId": operation.operation_id,
            "summary": operation.summary,
            "tags": [operation.tag],
            "responses": {str(status): _reply(reply, refs) for status, reply in sorted(operation.responses.items())},
        }
        if operation.description:
            result["description"] = operation.description
        if operation.public:
            result["security"] = []
        if operation.params:
            result["parameters"] = [_param(param) for param in operation.params]
        content: dict[str, Any] = {}
        if operation.request_body:
            content[JSON] = {"schema": _one_of([refs[(model, "validation")] for model in operation.request_body])}
        content.update((body.content_type, body.media()) for body in operation.raw_bodies)
        if content:
            result["requestBody"] = {"required": True, "content": content}
            if operation.request_description:
                result["requestBody"]["description"] = operation.request_description
        return result


def _reply(reply: Reply, refs: Refs) -> dict[str, Any]:
    result: dict[str, Any] = {"description": reply.description}
    if reply.models:
        schema = _one_of([refs[(model, "serialization")] for model in reply.models])
        result["content"] = {reply.content_type: {"schema": schema}}
    return result


def _one_of(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    return schemas[0] if len(schemas) == 1 else {"oneOf": schemas}


def _param(param: Param) -> dict[str, Any]:
    result: dict[str, Any] = {"name": param.name, "in": param.location, "schema": param.schema}
    if param.description:
        result["description"] = param.description
    if param.required or param.location == "path":
        result["required"] = True
    return result
