"""HTTP handlers of the elements API (`/api/elements/`), thin over `element_store`.

Every handler works in the caller's scope (`element_store.Scope`): users their own elements,
admins everyone's (or one owner's with `?owner=`); every call is audited, success or failure.
"""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import BaseModel

from common.app.bodies import read_json, read_model, read_query, validate
from common.app.pagination import next_page
from common.auth.identity import request_caller
from common.schemas.elements import (
    ELEMENT_ID_PATTERN,
    ElementDocument,
    ElementDocumentOut,
    ElementIn,
    ElementItemQuery,
    ElementListQuery,
    ElementPage,
    ElementUpdate,
    is_single_element,
    summarise_elements,
)
from results_service import element_store
from results_service.audit import audited
from results_service.keys import settings_key

_ELEMENT_ID = re.compile(ELEMENT_ID_PATTERN)


def _json(model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=model.model_dump_json().encode(), content_type="application/json", headers=headers
    )


def _element_id(request: web.Request) -> str:
    """The id in the path; one that cannot exist is simply not found."""
    element_id = request.match_info["element_id"]
    if not _ELEMENT_ID.match(element_id):
        raise element_store.ElementNotFound(element_id)
    return element_id


def _scope(request: web.Request) -> element_store.Scope:
    """The caller's elements; `?owner=` picks one owner's (for admins: the way to name an id several owners use)."""
    query = read_query(request, ElementItemQuery)
    return element_store.Scope.of(request_caller(request), query.owner)


def _location(request: web.Request, element_id: str) -> str:
    base = request.path if request.path.endswith("/") else request.path + "/"
    return f"{base}{element_id}/"


async def handle_create(request: web.Request) -> web.Response:
    """POST: one element, or the brief's whole document stored all or nothing, owned by the caller; 201."""
    owner = request_caller(request).user_id
    async with audited(request, "element.create", resource_type="element") as record:
        body = await read_json(request, max_bytes=request.app[settings_key].elements_max_body)
        if is_single_element(body):
            element = validate(ElementIn, body)
            record["resource_id"] = element.id
            created = await element_store.create_elements(owner, {"": element}, summarise_elements({"": element}))
            stored = created[""]
            return _json(stored, status=201, headers={"Location": _location(request, stored.id)})
        document = validate(ElementDocument, body, what="document")
        record["count"] = len(document.root)
        figures = summarise_elements(document.root)
        stored_all = await element_store.create_elements(owner, document.root, figures)
        return _json(ElementDocumentOut(stored_all), status=201)


async def handle_list(request: web.Request) -> web.Response:
    """GET: a page of the caller's elements in creation order, with the total and the path of the next page."""
    async with audited(request, "element.list", resource_type="element") as record:
        query = read_query(request, ElementListQuery)
        scope = element_store.Scope.of(request_caller(request), query.owner)
        page = await element_store.list_elements(
            scope, limit=query.limit, offset=query.offset, device_name=query.device_name
        )
        record["count"] = len(page.items)
    link = next_page(request.rel_url, limit=query.limit, offset=query.offset, shown=len(page.items), total=page.total)
    result = ElementPage(items=page.items, total=page.total, limit=query.limit, offset=query.offset, next=link)
    return _json(result)


async def handle_get(request: web.Request) -> web.Response:
    """GET one element by its id."""
    element_id = request.match_info["element_id"]
    async with audited(request, "element.read", resource_type="element", resource_id=element_id):
        return _json(await element_store.get_element(_scope(request), _element_id(request)))


async def handle_update(request: web.Request) -> web.Response:
    """PUT/PATCH: change `device_name` and/or `id` (a rename); any other field is a 422 naming it."""
    element_id = request.match_info["element_id"]
    async with audited(request, "element.update", resource_type="element", resource_id=element_id) as record:
        _element_id(request)
        change = await read_model(request, ElementUpdate, max_bytes=request.app[settings_key].elements_max_body)
        if change.id is not None and change.id != element_id:
            record["renamed_to"] = change.id
        return _json(await element_store.update_element(_scope(request), element_id, change))


async def handle_delete(request: web.Request) -> web.Response:
    """DELETE one element: 204, then 404."""
    element_id = request.match_info["element_id"]
    async with audited(request, "element.delete", resource_type="element", resource_id=element_id):
        await element_store.delete_element(_scope(request), _element_id(request))
    return web.Response(status=204)
