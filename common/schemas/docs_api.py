"""The API's own documents as OpenAPI operations (served by the gateway, public): the OpenAPI document,
its page for people, and the AsyncAPI document of the messages between the services."""

from __future__ import annotations

from common.app.openapi import JSON, Operation, Reply

TAG = "docs"


def document_operations() -> list[Operation]:
    """`/api/openapi.json`, `/api/docs` and `/api/asyncapi.json`."""
    return [
        Operation(
            "GET",
            "/api/openapi.json",
            "This document: the OpenAPI 3.1 description of the public HTTP API",
            TAG,
            {200: Reply("The OpenAPI document.", (), JSON)},
            public=True,
        ),
        Operation(
            "GET",
            "/api/docs",
            "The OpenAPI document as one self-contained HTML page",
            TAG,
            {200: Reply("The page.", (), "text/html")},
            public=True,
        ),
        Operation(
            "GET",
            "/api/asyncapi.json",
            "The AsyncAPI 3.0 document of every message the services exchange over RabbitMQ",
            TAG,
            {200: Reply("The AsyncAPI document: channels, operations and the JSON Schema of each message.", (), JSON)},
            description="Generated from the message models and the broker topology.",
            public=True,
        ),
    ]
