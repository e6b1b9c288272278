"""`GET /api/openapi.json`, `GET /api/docs` and `GET /api/asyncapi.json`: the API's documents.

The OpenAPI document describes the HTTP API, the page renders it for people (no JavaScript, no
CDN: it must work on a machine without internet access), and the AsyncAPI document describes the
messages between the services (`common.messaging.asyncapi`).
"""

from __future__ import annotations

import functools
import json
from html import escape
from typing import Any

from aiohttp import web

from common.messaging.asyncapi import asyncapi_document
from gateway.keys import api_spec_key

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; color: #222; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
.op { border: 1px solid #ddd; border-radius: 6px; margin: 1rem 0; padding: .5rem 1rem; }
.method { display: inline-block; min-width: 4.5rem; font-weight: bold; font-family: monospace; }
.path { font-family: monospace; font-size: 1.05em; }
table { border-collapse: collapse; margin: .3rem 0; }
td, th { border: 1px solid #ddd; padding: .2rem .6rem; text-align: left; vertical-align: top; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: 13px; }
"""


async def handle_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of every public API of the gateway."""
    return web.json_response(_document(request.app))


async def handle_docs(request: web.Request) -> web.Response:
    """A self-contained HTML page rendering the OpenAPI document."""
    return web.Response(text=render_html(_document(request.app)), content_type="text/html")


async def handle_asyncapi(_: web.Request) -> web.Response:
    """The AsyncAPI 3.0 document of the messages the services exchange over RabbitMQ."""
    return web.json_response(_asyncapi())


@functools.cache
def _asyncapi() -> dict[str, Any]:
    return asyncapi_document()


def _document(app: web.Application) -> dict[str, Any]:
    return app[api_spec_key].document()


def render_html(document: dict[str, Any]) -> str:
    """The document as one HTML page: every operation, then every schema."""
    info = document["info"]
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(info['title'])} API</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} API <small>{escape(info['version'])}</small></h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        '<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1); the messages between '
        'the services: <a href="/api/asyncapi.json">/api/asyncapi.json</a> (AsyncAPI 3.0).</p>',
        "<h2>Operations</h2>",
    ]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            parts.append(_render_operation(path, method, operation))
    parts.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        parts.append(f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>')
        parts.append(f"<pre>{escape(json.dumps(schema, indent=2))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _render_operation(path: str, method: str, operation: dict[str, Any]) -> str:
    parts = [
        f'<div class=op id="{escape(operation["operationId"])}">',
        f"<p><span class=method>{escape(method.upper())}</span> <span class=path>{escape(path)}</span>"
        f" — {escape(operation['summary'])}</p>",
    ]
    if "description" in operation:
        parts.append(f"<p>{escape(operation['description'])}</p>")
    if operation.get("parameters"):
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td><code>{escape(json.dumps(p['schema']))}</code></td><td>{escape(p.get('description', ''))}</td></tr>"
            for p in operation["parameters"]
        )
        parts.append(f"<table><tr><th>parameter</th><th>in</th><th>schema</th><th></th></tr>{rows}</table>")
    if "requestBody" in operation:
        content = operation["requestBody"]["content"]
        parts.append(
            "<p>Body: " + ", ".join(f"{escape(t)} {_schema_links(c['schema'])}" for t, c in content.items()) + "</p>"
        )
    rows = "".join(
        f"<tr><td>{escape(status)}</td><td>{escape(reply['description'])}</td><td>"
        + ", ".join(f"{escape(t)} {_schema_links(c['schema'])}" for t, c in reply.get("content", {}).items())
        + "</td></tr>"
        for status, reply in operation["responses"].items()
    )
    parts.append(f"<table><tr><th>status</th><th>meaning</th><th>body</th></tr>{rows}</table></div>")
    return "\n".join(parts)


def _schema_links(schema: dict[str, Any]) -> str:
    refs = [option["$ref"] for option in schema.get("oneOf", [schema]) if "$ref" in option]
    names = [ref.rsplit("/", 1)[-1] for ref in refs]
    return " or ".join(f'<a href="#schema-{escape(n)}">{escape(n)}</a>' for n in names)
