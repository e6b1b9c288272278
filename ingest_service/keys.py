"""Typed application keys of ingest_service."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from common.storage.blobs import BlobStore
from ingest_service.audit import StopReporter
from ingest_service.registration import Registrar
from ingest_service.settings import IngestSettings

settings_key = web.AppKey("settings", IngestSettings)
blob_store_key = web.AppKey("blob_store", BlobStore)
client_session_key = web.AppKey("client_session", aiohttp.ClientSession)
registrar_key = web.AppKey("registrar", Registrar)
stop_reporter_key = web.AppKey("stop_reporter", StopReporter)
