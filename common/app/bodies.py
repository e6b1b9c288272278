"""Read a JSON request body into a pydantic model, with the HTTP errors every API shares.

Malformed JSON is a 400, another content type a 415, a body over the limit a 413 (checked
while reading, so an oversized body is never held whole in memory), and a body that does not
fit the model a 422 naming every offending field.
"""

from __future__ import annotations

from typing import TypeVar

import pydantic_core
from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from common.app.problems import BadRequest, FieldError, PayloadTooLarge, Unprocessable, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)

_CHUNK = 256 * 1024
_MESSAGES = {"extra_forbidden": "unknown field, or one that cannot be set here"}


def is_json_content_type(content_type: str) -> bool:
    """`application/json` or any `application/*+json` media type."""
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_body_bytes(request: web.Request, *, max_bytes: int) -> bytes:
    """The raw body, refusing with 413 as soon as it is known to exceed `max_bytes`."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"The body is {request.content_length} bytes; the limit is {max_bytes}.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The body exceeds the limit of {max_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, *, max_bytes: int) -> object:
    """The body parsed as JSON (any value), after the content-type and size checks."""
    if not is_json_content_type(request.content_type):
        raise UnsupportedMediaType(f"Send the body as application/json, not {request.content_type!r}.")
    raw = await read_body_bytes(request, max_bytes=max_bytes)
    if not raw.strip():
        raise BadRequest("The body is empty; a JSON document is expected.")
    try:
        return pydantic_core.from_json(raw)
    except ValueError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.") from exc


def field_errors(exc: ValidationError, *, prefix: str = "") -> list[FieldError]:
    """Pydantic's errors as `{field, message}` pairs; `field` is the dotted path (`(body)` for the whole)."""
    result: list[FieldError] = []
    for error in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        result.append(FieldError(field=path or "(body)", message=_message(error)))
    return result


def _message(error: ErrorDetails) -> str:
    """Pydantic's message, minus the `Value error, ` prefix it puts before our own validators' words."""
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return _MESSAGES.get(error["type"], error["msg"])


def validate(model: type[M], value: object, *, what: str = "request body") -> M:
    """`value` as `model`, or a 422 problem listing every offending field."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise Unprocessable(f"The {what} is invalid.", errors=field_errors(exc)) from exc


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`, or a 422 naming every offending parameter: one given twice included (which of
    its values would count is a guess a client should not have to make)."""
    repeated = sorted({name for name in request.query if len(request.query.getall(name)) > 1})
    if repeated:
        errors = [FieldError(field=name, message="is given more than once") for name in repeated]
        raise Unprocessable("The query is invalid.", errors=errors)
    return validate(model, dict(request.query), what="query")


async def read_model(request: web.Request, model: type[M], *, max_bytes: int) -> M:
    """The JSON body validated as `model` (400, 413, 415 or 422 otherwise)."""
    return validate(model, await read_json(request, max_bytes=max_bytes))
