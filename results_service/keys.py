"""Typed application keys of results_service."""

from __future__ import annotations

from aiohttp import web

from common.storage.blobs import BlobStore
from results_service.deid import Deidentifier
from results_service.passwords import Passwords
from results_service.settings import ResultsSettings

settings_key = web.AppKey("settings", ResultsSettings)
passwords_key = web.AppKey("passwords", Passwords)
blob_store_key = web.AppKey("blob_store", BlobStore)
deidentifier_key = web.AppKey("deidentifier", Deidentifier)
