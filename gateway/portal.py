"""The web portal: static HTML, CSS and JavaScript modules served from `gateway/static` at `/`.

There is no build step, so files keep their names; they are revalidated on every load
(`no-cache` plus the ETag/Last-Modified that `FileResponse` answers 304 to) instead of being
cached blindly. Only known file types under the static root are served, with an explicit
content type (module scripts must be JavaScript) and a strict Content-Security-Policy: the
portal loads nothing from anywhere but this origin.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from common.app.problems import NotFound

STATIC_ROOT = Path(__file__).resolve().parent / "static"
STATIC_FOLDERS = ("js", "css", "img")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def resolve_static(root: Path, relative: str) -> Path:
    """The file `relative` names under `root`, or NotFound for anything else (traversal, unknown type)."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or candidate.suffix not in CONTENT_TYPES or not candidate.is_file():
        raise NotFound("No such page or file.")
    return candidate


def _file_response(path: Path) -> web.FileResponse:
    headers = {
        "Content-Type": CONTENT_TYPES[path.suffix],
        "Cache-Control": "no-cache",
        **SECURITY_HEADERS,
    }
    return web.FileResponse(path, headers=headers)


async def handle_index(request: web.Request) -> web.FileResponse:
    """The single page of the portal; the hash part of the URL picks the view."""
    return _file_response(resolve_static(STATIC_ROOT, "index.html"))


async def handle_static(request: web.Request) -> web.FileResponse:
    """A module, style sheet or image of the portal."""
    folder = request.match_info["folder"]
    return _file_response(resolve_static(STATIC_ROOT, f"{folder}/{request.match_info['path']}"))


def add_portal_routes(app: web.Application) -> None:
    """Serve the portal at `/` and its assets under `/js`, `/css` and `/img`."""
    app.router.add_get("/", handle_index, name="portal_index")
    app.router.add_get("/index.html", handle_index)
    folders = "|".join(STATIC_FOLDERS)
    app.router.add_get(f"/{{folder:(?:{folders})}}/{{path:[A-Za-z0-9_./-]+}}", handle_static, name="portal_static")
