"""The elements API as OpenAPI operations (served by the gateway, implemented by results_service).

Every path also answers without its trailing slash (`slash_twin`); only the slash form is documented.
"""

from __future__ import annotations

from common.app.openapi import Operation, Param, Reply, json_reply, query_params
from common.schemas.accounts_api import RATE_LIMITED, UNAUTHORIZED
from common.schemas.elements import (
    ELEMENT_ID_PATTERN,
    ElementDocument,
    ElementDocumentOut,
    ElementIn,
    ElementItemQuery,
    ElementListQuery,
    ElementOut,
    ElementPage,
    ElementUpdate,
)

COLLECTION = "/api/elements/"
ITEM = "/api/elements/{element_id}/"
TAG = "elements"

_ID = Param("element_id", "path", {"type": "string", "pattern": ELEMENT_ID_PATTERN}, "The element's own id.")
_BAD_BODY = {
    400: Reply("The body is not valid JSON."),
    413: Reply("The body is larger than `ELEMENTS_MAX_BODY`."),
    415: Reply("The body is not `application/json`."),
    422: Reply("The body does not fit the schema, or `data` cannot be normalised; `errors` names every field."),
}
_ITEM_PARAMS = (_ID, *query_params(ElementItemQuery))
_NOT_FOUND = {
    404: Reply("You have no element with this id (another user's element answers the same)."),
    409: Reply("Admins: several owners use this id; name one with `owner`."),
}
_BAD_QUERY = {422: Reply("A query parameter is invalid or unknown; `errors` names each.")}
_TOKEN = {**UNAUTHORIZED, **RATE_LIMITED}


def element_operations() -> list[Operation]:
    """The operations of `/api/elements/`."""
    return [
        Operation(
            "POST",
            COLLECTION,
            "Store one element, or the brief's whole document all or nothing",
            TAG,
            {
                201: json_reply(
                    "Stored: the element, or the document's elements under its keys.", ElementOut, ElementDocumentOut
                ),
                **_BAD_BODY,
                409: Reply("You have an element with one of these ids already; nothing was stored."),
                **_TOKEN,
            },
            request_body=(ElementIn, ElementDocument),
            description="A document answers with `ElementDocumentOut`, one element with `ElementOut` and `Location`.",
            slash_twin=True,
        ),
        Operation(
            "GET",
            COLLECTION,
            "List elements in creation order, a page at a time",
            TAG,
            {200: json_reply("One page.", ElementPage), **_BAD_QUERY, **_TOKEN},
            params=query_params(ElementListQuery),
            slash_twin=True,
        ),
        Operation(
            "GET",
            ITEM,
            "Read one element",
            TAG,
            {200: json_reply("The element.", ElementOut), **_NOT_FOUND, **_BAD_QUERY, **_TOKEN},
            params=_ITEM_PARAMS,
            slash_twin=True,
        ),
        *(
            Operation(
                method,
                ITEM,
                f"{verb} the element's `device_name` and/or `id` (a rename)",
                TAG,
                {
                    200: json_reply("The element after the change.", ElementOut),
                    **_BAD_BODY,
                    **_NOT_FOUND,
                    409: Reply("Another of the owner's elements has the new id, or the id is ambiguous (admins)."),
                    422: Reply(
                        "The body does not fit the schema, or a query parameter is invalid or unknown; `errors` names "
                        "every field."
                    ),
                    **_TOKEN,
                },
                request_body=(ElementUpdate,),
                params=_ITEM_PARAMS,
                description="Any other field is a 422 naming it; the stored figures never change.",
                slash_twin=True,
            )
            for method, verb in (("PUT", "Replace"), ("PATCH", "Change"))
        ),
        Operation(
            "DELETE",
            ITEM,
            "Delete one element",
            TAG,
            {204: json_reply("Deleted."), **_NOT_FOUND, **_BAD_QUERY, **_TOKEN},
            params=_ITEM_PARAMS,
            slash_twin=True,
        ),
    ]
