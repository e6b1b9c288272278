"""The server as the uploader talks to it: one connection pool, the bearer token, the retry policy.

Every call goes through `ServerClient.call`, so each is retried the same way and a refused token stops the
run the same way (`NotAuthorized`), wherever it happens. `login` turns an e-mail and password into a token
(`POST /api/auth/login`); the password is sent once and kept nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import ValidationError

from common.schemas.auth import TokenResponse
from common.uploader.retrying import BodyFactory, Reply, RetryEvent, RetryPolicy, send

SERVICE = "the dicomflow server"
_SNIPPET = 300


class NotAuthorized(ValueError):
    """The server refused the credentials or the token (401/403): nothing more can be sent with them."""


class ServerError(ValueError):
    """The server answered something the uploader cannot use; the message says what."""


def problem_detail(reply: Reply) -> str:
    """The `detail` of a problem+json answer, or the start of whatever else it is."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return f"HTTP {reply.status}: {reply.body[:_SNIPPET].decode('utf-8', 'replace')}".rstrip(": ")


@dataclass
class ServerClient:
    """Calls to one dicomflow server on behalf of one user."""

    session: aiohttp.ClientSession
    server: str
    policy: RetryPolicy
    token: str | None = None
    on_retry: Callable[[RetryEvent], None] | None = None

    def url(self, path: str) -> str:
        """The server's URL of an API path."""
        return self.server.rstrip("/") + path

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: BodyFactory | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """One API call with the token and the retries; NotAuthorized for 401/403, any other answer returned."""
        sent_headers = dict(headers or {})
        if self.token is not None:
            sent_headers["Authorization"] = f"Bearer {self.token}"
        reply = await send(
            self.session,
            method,
            self.url(path),
            service=SERVICE,
            policy=self.policy,
            body=body,
            json_body=json_body,
            headers=sent_headers,
            params=params,
            on_retry=self.on_retry,
        )
        if reply.status in (401, 403):
            raise NotAuthorized(f"{method} {path}: the server refused the token: {problem_detail(reply)}")
        return reply

    async def login(self, email: str, password: str) -> str:
        """Log in; the token is kept for the calls that follow and returned."""
        reply = await self.call("POST", "/api/auth/login", json_body={"email": email, "password": password})
        if reply.status != 200:
            raise NotAuthorized(f"login as {email} failed: {problem_detail(reply)}")
        try:
            answer = TokenResponse.model_validate_json(reply.body)
        except ValidationError as exc:
            raise ServerError(f"the login answer is not a token: {exc.errors()[0]['msg']}") from None
        if answer.must_change_password:
            raise NotAuthorized(f"{email} must change its password first (dicomflow's portal, Change password)")
        self.token = answer.access_token
        return answer.access_token
