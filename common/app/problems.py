"""RFC 7807 problem details: the one error shape every HTTP API of the system answers with."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

PROBLEM_CONTENT_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One offending field of a request body or query."""

    field: str = Field(description="Dotted path of the field, e.g. `2.data.0`.")
    message: str


class Problem(BaseModel):
    """An `application/problem+json` document."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """A domain error that the HTTP edge turns into a problem response with `status`."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.errors = errors
        self.headers = headers


class BadRequest(ProblemError):
    status = HTTPStatus.BAD_REQUEST


class Unauthorized(ProblemError):
    """No valid credentials: answered with `WWW-Authenticate: Bearer` (RFC 6750)."""

    status = HTTPStatus.UNAUTHORIZED

    def __init__(self, detail: str, *, error: str | None = "invalid_token") -> None:
        challenge = 'Bearer realm="dicomflow"' + (f', error="{error}"' if error else "")
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(ProblemError):
    status = HTTPStatus.FORBIDDEN


class TooManyRequests(ProblemError):
    """A rate limit was hit; `Retry-After` says when to try again."""

    status = HTTPStatus.TOO_MANY_REQUESTS

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class NotFound(ProblemError):
    status = HTTPStatus.NOT_FOUND


class Conflict(ProblemError):
    status = HTTPStatus.CONFLICT


class PayloadTooLarge(ProblemError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaType(ProblemError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class Unprocessable(ProblemError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class ServiceUnavailable(ProblemError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    errors: list[FieldError] | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """Build a problem+json response; `title` is the standard reason phrase of `status`."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    problem = Problem(title=title, status=status, detail=detail, instance=instance, errors=errors, **extra)
    return web.Response(
        status=status,
        body=problem.model_dump_json(exclude_none=True).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
