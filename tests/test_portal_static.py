"""The portal's static files: served by the gateway with the right types and headers, self-contained.

No file may load anything from another origin (the machine has no internet, and a hospital
portal should not either), and no module may build HTML from strings (everything is escaped
by construction: text nodes only).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from common.messaging.broker import TopologyNames
from gateway.main import init_app
from gateway.portal import CONTENT_TYPES, STATIC_ROOT
from gateway.settings import GatewaySettings

SECRET = {"auth_secret": "test-secret-" + "x" * 40}
STATIC_FILES = sorted(p for p in STATIC_ROOT.rglob("*") if p.is_file())

EXTERNAL_URL = re.compile(
    r"""(?ix)
    \b(?:https?|wss?|ftp):// |            # absolute URLs
    (?:src|href|action)\s*=\s*["']?// |   # protocol-relative attributes
    url\(\s*["']?(?:[a-z]+:)?// |         # CSS url() of another origin
    @import                               # CSS imports
    """
)
HTML_SINKS = re.compile(r"\.(?:innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(")
IMPORT = re.compile(r"""(?:import|from)\s*\(?\s*["'`](\.{1,2}/[^"'`$]+)["'`]""")


@pytest.fixture
async def client(aiohttp_client: Any, amqp_prefix: str) -> AsyncIterator[Any]:
    """The production gateway (its live feed binds to this test's own events exchange, removed afterwards)."""
    yield await aiohttp_client(init_app(GatewaySettings(amqp_prefix=amqp_prefix, **SECRET)))
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(TopologyNames(amqp_prefix).events)


def url_of(path: Path) -> str:
    relative = path.relative_to(STATIC_ROOT).as_posix()
    return "/" if relative == "index.html" else f"/{relative}"


def test_the_portal_has_its_pages_and_modules() -> None:
    names = {p.relative_to(STATIC_ROOT).as_posix() for p in STATIC_FILES}
    assert {"index.html", "css/portal.css", "js/app.js", "js/api.js", "js/feed.js"} <= names
    pages = {"login", "upload", "uploads", "upload-detail", "instances", "instance", "studies", "elements", "audit"}
    assert {f"js/pages/{page}.js" for page in pages} <= names
    app_js = (STATIC_ROOT / "js/app.js").read_text()
    for page in re.findall(r'page: "([a-z-]+)"', app_js):
        assert f"js/pages/{page}.js" in names, f"app.js routes to a page module that does not exist: {page}"


async def test_every_static_file_is_served_with_its_content_type_and_security_headers(client: Any) -> None:
    for path in STATIC_FILES:
        response = await client.get(url_of(path))
        assert response.status == 200, path
        assert response.headers["Content-Type"] == CONTENT_TYPES[path.suffix], path
        assert await response.read() == path.read_bytes()
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp


async def test_module_scripts_are_javascript(client: Any) -> None:
    response = await client.get("/js/app.js")
    assert response.headers["Content-Type"].startswith("text/javascript")
    index = await (await client.get("/")).text()
    assert '<script type="module" src="/js/app.js"></script>' in index
    assert '<meta name="viewport"' in index
    assert '<html lang="en">' in index


async def test_an_unchanged_file_is_revalidated_with_304(client: Any) -> None:
    first = await client.get("/css/portal.css")
    assert first.status == 200
    etag = first.headers["ETag"]
    again = await client.get("/css/portal.css", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""


@pytest.mark.parametrize(
    "path",
    [
        "/js/missing.js",
        "/js/../portal.py",
        "/js/%2e%2e/%2e%2e/portal.py",
        "/js/..%2f..%2fportal.py",
        "/css/portal.py",
        "/img/nothing.png",
        "/static/js/app.js",
        "/settings.py",
    ],
)
async def test_anything_else_is_not_found_as_problem_json(client: Any, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = await response.read()
    assert b"GatewaySettings" not in body
    assert b"import" not in body


def test_no_static_file_refers_to_another_origin() -> None:
    offenders = [
        f"{p.relative_to(STATIC_ROOT)}: {m.group(0)!r}"
        for p in STATIC_FILES
        for m in EXTERNAL_URL.finditer(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_no_module_turns_data_into_html() -> None:
    offenders = [
        f"{p.relative_to(STATIC_ROOT)}: {m.group(0)}"
        for p in STATIC_FILES
        if p.suffix == ".js"
        for m in HTML_SINKS.finditer(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_every_relative_import_resolves_to_a_served_module() -> None:
    for path in (p for p in STATIC_FILES if p.suffix == ".js"):
        for target in IMPORT.findall(path.read_text(encoding="utf-8")):
            resolved = (path.parent / target).resolve()
            assert resolved.is_file(), f"{path.relative_to(STATIC_ROOT)} imports missing {target}"
            assert resolved.suffix == ".js"


def test_the_token_never_goes_into_a_url() -> None:
    """The WebSocket authenticates with its first message; URLs end up in logs and histories."""
    for path in (p for p in STATIC_FILES if p.suffix == ".js"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"[?&]token=", text), path
        assert not re.search(r"[?&]access_token=", text), path
