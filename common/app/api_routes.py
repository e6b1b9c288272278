"""Routes registered from their OpenAPI operations: a route cannot exist without its operation.

A service names the handler of each operation of an API (one for all, e.g. a proxy, or one per
operation id); :func:`handled_by` refuses a handler without an operation and an operation without
a handler, and :func:`add_routes` registers every path of each operation for its method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiohttp import web

from common.app.openapi import Operation

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[Operation, Handler]


def handled_by(
    operations: Iterable[Operation], handlers: Mapping[str, Handler] | None = None, default: Handler | None = None
) -> list[Route]:
    """Pair each operation with its handler: `handlers[operation_id]`, else `default`.

    Raises ValueError for an operation left without a handler or a handler naming no operation.
    """
    handlers = handlers or {}
    operations = list(operations)
    unknown = set(handlers) - {operation.operation_id for operation in operations}
    if unknown:
        raise ValueError(f"handlers of no operation: {sorted(unknown)}")
    routes: list[Route] = []
    for operation in operations:
        handler = handlers.get(operation.operation_id, default)
        if handler is None:
            raise ValueError(f"{operation.method} {operation.path} has no handler")
        routes.append((operation, handler))
    return routes


def add_routes(router: web.UrlDispatcher, routes: Iterable[Route]) -> None:
    """Register each operation's paths for its method (a GET also answers HEAD, as aiohttp's `add_get`)."""
    for operation, handler in routes:
        for path in operation.paths:
            if operation.method == "GET":
                router.add_get(path, handler)
            else:
                router.add_route(operation.method, path, handler)
