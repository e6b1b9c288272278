"""The load generator sends every file once, as its own request, and stops at the first answer it does not accept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bench.load_generator import UploadTarget, timed_upload, upload_all

bodies_key = web.AppKey("bodies_key", list[bytes])


def sink(refuse: bytes = b"") -> web.Application:
    """Answers 202 to every body but `refuse`, and keeps what it received."""
    app = web.Application()
    app[bodies_key] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        app[bodies_key].append(body)
        return web.json_response({"ok": body != refuse}, status=202)

    app.router.add_post("/upload", receive)
    return app


def files(tmp_path: Path, count: int) -> list[Path]:
    paths = [tmp_path / f"{n}.dcm" for n in range(count)]
    for n, path in enumerate(paths):
        path.write_bytes(f"file {n}".encode() * 1000)
    return paths


def target(server: Any) -> UploadTarget:
    return UploadTarget(str(server.make_url("/upload")), {}, lambda code, body: code == 202 and body["ok"])


async def test_every_file_is_posted_once_as_its_own_request(aiohttp_server: Any, tmp_path: Path) -> None:
    app = sink()
    server = await aiohttp_server(app)
    paths = files(tmp_path, 20)

    figures = await timed_upload(target(server), paths, lambda: {"load generator": 0.0})

    assert sorted(app[bodies_key]) == sorted(path.read_bytes() for path in paths)
    assert figures["accept"] > 0
    assert figures["cpu:load generator"] == 0.0


async def test_an_answer_the_target_does_not_accept_stops_the_run(aiohttp_server: Any, tmp_path: Path) -> None:
    paths = files(tmp_path, 5)
    server = await aiohttp_server(sink(refuse=paths[2].read_bytes()))

    with pytest.raises(RuntimeError, match=r"2\.dcm: 202"):
        await upload_all(target(server), paths)
