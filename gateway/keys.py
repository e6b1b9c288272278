"""Typed application and request keys of the gateway."""

from __future__ import annotations

import aiohttp
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from common.app.openapi import ApiSpec
from common.auth.tokens import TokenClaims
from gateway.authenticator import Authenticator, Clock
from gateway.feed.binding import FeedBinding
from gateway.feed.hub import EventHub
from gateway.feed.session import TokenCheck
from gateway.settings import GatewaySettings

settings_key = web.AppKey("settings", GatewaySettings)
client_session_key = web.AppKey("client_session", aiohttp.ClientSession)
authenticator_key = web.AppKey("authenticator", Authenticator)
api_spec_key = web.AppKey("api_spec", ApiSpec)
# The live feed.
event_hub_key = web.AppKey("event_hub", EventHub)
feed_token_check_key: web.AppKey[TokenCheck] = web.AppKey("feed_token_check")
feed_clock_key: web.AppKey[Clock] = web.AppKey("feed_clock")
feed_connection_key = web.AppKey("feed_connection", AbstractRobustConnection)
feed_binding_key = web.AppKey("feed_binding", FeedBinding)

claims_key = web.RequestKey("token_claims", TokenClaims)
