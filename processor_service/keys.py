"""Typed application keys of processor_service."""

from __future__ import annotations

from aiohttp import web

from common.storage.blobs import BlobStore
from processor_service.pool import WorkerPool
from processor_service.settings import ProcessorSettings

settings_key = web.AppKey("settings", ProcessorSettings)
pool_key = web.AppKey("pool", WorkerPool)
blob_store_key = web.AppKey("blob_store", BlobStore)
