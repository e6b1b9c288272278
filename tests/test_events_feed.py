"""The live status feed against the real RabbitMQ: replicas, per-owner delivery, admins, refusals, shutdown.

Gateways here are the feed alone (`setup_feed` on the shared app factory) with a token check
that verifies the signature and expiry of real tokens (`common.auth.tokens`); the full gateway with
the API's own token check is covered by the browser test and `test_feed_uses_the_api_token_check`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from structlog.testing import capture_logs

from common.app.problems import ServiceUnavailable, Unauthorized
from common.auth.identity import Caller
from common.auth.tokens import Role, issue_token
from common.messaging.broker import publish
from common.messaging.messages import InstanceStatus, StatusChanges
from gateway.feed.hub import Subscriber
from gateway.feed.protocol import CLOSE_UNAUTHORIZED
from gateway.feed.session import FeedSession, TokenCheck
from gateway.keys import event_hub_key
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from tests.account_helpers import PASSWORD, create_user, unique_email
from tests.fake_clock import FakeClock
from tests.feed_helpers import (
    SETTINGS_SECRET,
    GatewayFactory,
    announce,
    assert_closed_with,
    check_token,
    event,
    next_status,
    open_feed,
    token_for,
)
from tests.pipeline_helpers import eventually
from tests.queue_helpers import LIVENESS


class CountedCheck:
    """A token check that counts its calls, so a test waits for the feed's re-checks instead of for time.

    Re-checks run one after another: the start of call n+1 proves call n's answer was acted on.
    """

    def __init__(self, check: TokenCheck) -> None:
        self.check = check
        self.calls = 0
        self._called = asyncio.Condition()

    async def __call__(self, app: web.Application, token: str) -> FeedSession:
        self.calls += 1
        async with self._called:
            self._called.notify_all()
        return await self.check(app, token)

    async def wait_for(self, calls: int) -> None:
        """Until the check has been called `calls` times in all."""
        async with self._called:
            await asyncio.wait_for(self._called.wait_for(lambda: self.calls >= calls), timeout=LIVENESS)


async def test_every_replica_gets_every_event(make_gateway: GatewayFactory, events_exchange: Any) -> None:
    first, second = await make_gateway(), await make_gateway()
    on_first = await open_feed(first, token_for("alice"))
    on_second = await open_feed(second, token_for("alice"))
    sent = event("alice", InstanceStatus.DONE)
    await announce(events_exchange, sent)
    for ws in (on_first, on_second):
        got = await next_status(ws)
        assert got == {
            "instance_id": "alice-i1",
            "upload_id": "alice-u",
            "owner": "alice",
            "status": "done",
            "reason": None,
            "at": sent.created_at.isoformat(),
        }


async def test_a_user_receives_only_their_own_events(make_gateway: GatewayFactory, events_exchange: Any) -> None:
    gateway = await make_gateway()
    alice = await open_feed(gateway, token_for("alice"))
    bob = await open_feed(gateway, token_for("bob"))
    # Events arrive in order: if Bob's first event reached Alice, it would be the first thing she got.
    await announce(events_exchange, event("bob", instance="b1"))
    await announce(events_exchange, event("alice", instance="a1"))
    await announce(events_exchange, event("bob", InstanceStatus.FAILED, instance="b2"))
    assert (await next_status(alice))["instance_id"] == "alice-a1"
    assert [(await next_status(bob))["instance_id"] for _ in range(2)] == ["bob-b1", "bob-b2"]
    await announce(events_exchange, event("alice", InstanceStatus.DONE, instance="a1"))
    assert (await next_status(alice))["status"] == "done"


async def test_one_batch_of_changes_reaches_each_owner_in_order(
    make_gateway: GatewayFactory, events_exchange: Any
) -> None:
    """results_service announces a committed batch as one StatusChanges message; each event goes to its owner."""
    gateway = await make_gateway()
    alice = await open_feed(gateway, token_for("alice"))
    bob = await open_feed(gateway, token_for("bob"))
    changes = StatusChanges(
        events=[
            event("alice", instance="a1"),
            event("bob", instance="b1"),
            event("alice", InstanceStatus.PROCESSING, instance="a1"),
        ]
    )
    await publish(events_exchange, changes, "")
    assert [((f := await next_status(alice))["instance_id"], f["status"]) for _ in range(2)] == [
        ("alice-a1", "queued"),
        ("alice-a1", "processing"),
    ]
    assert (await next_status(bob))["instance_id"] == "bob-b1"
    await announce(events_exchange, event("bob", InstanceStatus.DONE, instance="b1"))
    assert (await next_status(bob))["status"] == "done"  # nothing else of the batch reached Bob


async def test_an_admin_receives_everyones_events(make_gateway: GatewayFactory, events_exchange: Any) -> None:
    gateway = await make_gateway()
    admin = await open_feed(gateway, token_for("root", Role.ADMIN))
    for owner in ("alice", "bob", "carol"):
        await announce(events_exchange, event(owner))
    assert [(await next_status(admin))["owner"] for _ in range(3)] == ["alice", "bob", "carol"]


async def test_a_bearer_header_on_the_upgrade_also_authenticates(
    make_gateway: GatewayFactory, events_exchange: Any
) -> None:
    gateway = await make_gateway()
    ws = await gateway.ws_connect("/api/events", headers={"Authorization": f"Bearer {token_for('alice')}"})
    assert (await ws.receive_json(timeout=LIVENESS)) == {"type": "ready", "user": "alice", "role": "user"}
    await announce(events_exchange, event("alice"))
    assert (await next_status(ws))["owner"] == "alice"


@pytest.mark.parametrize(
    "first_frame",
    [
        json.dumps({"type": "auth", "token": "not-a-token"}),
        json.dumps(
            {
                "type": "auth",
                "token": issue_token(
                    "another-secret-" + "y" * 40,
                    user_id="alice",
                    email="a@example.org",
                    role=Role.ADMIN,
                    ttl_seconds=600,
                )[0],
            }
        ),
        json.dumps({"type": "auth", "token": token_for("alice", ttl=-60)}),
        json.dumps({"type": "hello"}),
        "not json",
    ],
    ids=["garbage", "forged", "expired", "no-token", "not-json"],
)
async def test_a_socket_without_a_good_token_is_closed_unheard(
    make_gateway: GatewayFactory, events_exchange: Any, first_frame: str
) -> None:
    gateway = await make_gateway()
    ws = await gateway.ws_connect("/api/events")
    await ws.send_str(first_frame)
    await assert_closed_with(ws, CLOSE_UNAUTHORIZED)


async def test_a_silent_socket_is_closed_after_the_auth_timeout(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(events_auth_timeout=0.3)
    ws = await gateway.ws_connect("/api/events")
    await assert_closed_with(ws, CLOSE_UNAUTHORIZED)


async def test_a_bad_bearer_header_is_refused_before_the_upgrade(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    response = await gateway.get(
        "/api/events",
        headers={
            "Authorization": "Bearer forged",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert response.status == 401
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_plain_get_is_told_to_use_a_websocket(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    response = await gateway.get("/api/events")
    assert response.status == 426
    assert "WebSocket" in (await response.json())["detail"]


async def test_the_socket_closes_once_its_token_expires(make_gateway: GatewayFactory, events_exchange: Any) -> None:
    clock = FakeClock()
    checks = CountedCheck(check_token)
    gateway = await make_gateway(checks, clock=clock, events_token_recheck=0.05)
    ws = await open_feed(gateway, token_for("alice", ttl=600))
    clock.advance(599)
    await checks.wait_for(checks.calls + 2)  # a re-check at 599 s found the token good, and the next one began
    await announce(events_exchange, event("alice"))
    assert (await next_status(ws))["owner"] == "alice"
    clock.advance(2)
    await assert_closed_with(ws, CLOSE_UNAUTHORIZED)


async def test_a_revoked_token_closes_the_socket_at_the_next_check(make_gateway: GatewayFactory) -> None:
    revoked: set[str] = set()

    async def check_revocable(app: web.Application, token: str) -> FeedSession:
        if token in revoked:
            raise Unauthorized("the token has been revoked")
        return await check_token(app, token)

    gateway = await make_gateway(check_revocable, events_token_recheck=0.3)
    token = token_for("alice")
    ws = await open_feed(gateway, token)
    revoked.add(token)
    await assert_closed_with(ws, CLOSE_UNAUTHORIZED)


async def test_shutdown_closes_every_socket_cleanly(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    sockets = [await open_feed(gateway, token_for(user)) for user in ("alice", "bob")]
    # Clients are listening (as a browser always is) when the server goes away.
    listening = [asyncio.create_task(ws.receive(timeout=LIVENESS)) for ws in sockets]
    await asyncio.wait_for(gateway.server.close(), timeout=LIVENESS)
    for ws, received in zip(sockets, listening, strict=True):
        message = await received
        assert message.type is WSMsgType.CLOSE
        assert (message.data, message.extra) == (1001, "server shutdown")
        assert ws.close_code == 1001


async def test_no_token_appears_in_the_logs(make_gateway: GatewayFactory, events_exchange: Any) -> None:
    gateway = await make_gateway()
    good, bad = token_for("alice"), "forged." + "z" * 30
    with capture_logs() as logs:
        ws = await open_feed(gateway, good)
        await announce(events_exchange, event("alice"))
        await next_status(ws)
        refused = await gateway.ws_connect(f"/api/events?token={bad}")
        await refused.send_str(json.dumps({"type": "auth", "token": bad}))
        await assert_closed_with(refused, CLOSE_UNAUTHORIZED)
    text = json.dumps(logs, default=str)
    assert "events_connected" in text and "events_auth_refused" in text
    assert good not in text and bad not in text


def test_a_client_that_cannot_keep_up_is_marked_for_closing() -> None:
    subscriber = Subscriber(FeedSession(Caller("alice")), "token", web.WebSocketResponse())
    for _ in range(subscriber.outbox.maxsize):
        subscriber.offer("{}")
    assert not subscriber.overflowed
    subscriber.offer("{}")
    assert subscriber.overflowed


async def test_an_unavailable_token_check_asks_the_client_to_retry(make_gateway: GatewayFactory) -> None:
    async def check_down(_: web.Application, __: str) -> FeedSession:
        raise ServiceUnavailable("Cannot check the access token right now; try again shortly.")

    gateway = await make_gateway(check_down)
    ws = await gateway.ws_connect("/api/events")
    await ws.send_str(json.dumps({"type": "auth", "token": token_for("alice")}))
    await assert_closed_with(ws, 1013)


async def test_an_outage_during_a_recheck_keeps_the_socket_open(
    make_gateway: GatewayFactory, events_exchange: Any
) -> None:
    down = False

    async def check_flaky(app: web.Application, token: str) -> FeedSession:
        if down:
            raise ServiceUnavailable("Cannot check the access token right now; try again shortly.")
        return await check_token(app, token)

    checks = CountedCheck(check_flaky)
    gateway = await make_gateway(checks, events_token_recheck=0.05)
    ws = await open_feed(gateway, token_for("alice"))
    down = True
    await checks.wait_for(checks.calls + 3)  # two failed re-checks left the socket open, a third one began
    await announce(events_exchange, event("alice"))
    assert (await next_status(ws))["owner"] == "alice"


@pytest.fixture
async def full_gateway(aiohttp_client: Any, aiohttp_server: Any, database_url: str, amqp_prefix: str) -> Any:
    """The production gateway (auth middleware, API token check) in front of a real results_service."""
    results = await aiohttp_server(init_results(ResultsSettings(database_url=database_url, **SETTINGS_SECRET)))
    settings = GatewaySettings(
        amqp_prefix=amqp_prefix,
        results_url=str(results.make_url("")).rstrip("/"),
        events_token_recheck=0.3,
        auth_cache_seconds=0,
        **SETTINGS_SECRET,
    )
    gateway = await aiohttp_client(init_gateway(settings))
    return gateway, results


async def test_feed_uses_the_api_token_check(full_gateway: Any, events_exchange: Any) -> None:
    gateway, results = full_gateway
    async with aiohttp.ClientSession(base_url=str(results.make_url(""))) as internal:
        user = await create_user(internal, unique_email("feed"))
    login = await gateway.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert login.status == 200, await login.text()
    token = (await login.json())["access_token"]
    ws = await open_feed(gateway, token)
    await announce(events_exchange, event(user["id"]))
    assert (await next_status(ws))["owner"] == user["id"]
    # Logging out revokes the token: the open socket is closed at its next re-check.
    logout = await gateway.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert logout.status == 204
    await assert_closed_with(ws, CLOSE_UNAUTHORIZED)
    # The portal's static files need no token; the API does.
    assert (await gateway.get("/")).status == 200
    assert (await gateway.get("/api/instances")).status == 401


async def test_shutdown_also_closes_sockets_still_waiting_for_their_token(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(events_auth_timeout=30)
    ws = await gateway.ws_connect("/api/events")
    listening = asyncio.create_task(ws.receive(timeout=LIVENESS))

    async def waiting_for_its_token() -> bool:
        return len(gateway.app[event_hub_key].unauthenticated) == 1

    await eventually(waiting_for_its_token)  # the server has the socket (not just the 101) before it stops
    await asyncio.wait_for(gateway.server.close(), timeout=LIVENESS)
    message = await listening
    assert (message.type, message.data) == (WSMsgType.CLOSE, 1001)
