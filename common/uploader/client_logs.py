"""`--send-log-on-failure`: a failed run's log file goes to the server (`POST /api/client-logs`), so the
people who run the server can read what happened on a site's machine without access to it."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from common.schemas.client_logs import ClientLogCreated
from common.uploader.client import ServerClient, ServerError, problem_detail

MAX_LOG_BYTES = 1_000_000
"""The end of a longer log is sent (the server takes 1 MiB by default): the last lines say why the run failed."""


def log_tail(path: Path, limit: int = MAX_LOG_BYTES) -> bytes:
    """The last `limit` bytes of the log, starting at a whole line."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - limit))
        data = handle.read()
    if size > limit and b"\n" in data:
        data = data[data.index(b"\n") + 1 :]
    return data


async def send_log(client: ServerClient, path: Path, upload_id: str | None) -> ClientLogCreated:
    """Send the log file (its tail when long); the server's record of it."""
    text = log_tail(path)
    params = {"name": path.name[:255] or "upload.log"}
    if upload_id is not None:
        params["upload_id"] = upload_id
    content_type = "application/x-ndjson" if text.lstrip().startswith(b"{") else "text/plain"
    reply = await client.call(
        "POST",
        "/api/client-logs",
        body=lambda: text,
        headers={"Content-Type": f"{content_type}; charset=utf-8"},
        params=params,
    )
    if reply.status != 201:
        raise ServerError(f"the log was not taken: {problem_detail(reply)}")
    try:
        return ClientLogCreated.model_validate_json(reply.body)
    except ValidationError as exc:
        raise ServerError(f"the log's receipt is not readable: {exc.errors()[0]['msg']}") from None
