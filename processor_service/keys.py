"""Typed application keys of processor_service."""

from __future__ import annotations

from aiohttp import web

from common.storage.blobs import BlobStore
from processor_service.admission import Admission
from processor_service.pool import WorkerPool
from processor_service.settings import ProcessorSettings
from processor_service.usage import UsageSampler

settings_key = web.AppKey("settings", ProcessorSettings)
pool_key = web.AppKey("pool", WorkerPool)
blob_store_key = web.AppKey("blob_store", BlobStore)
admission_key = web.AppKey("admission", Admission)
usage_sampler_key = web.AppKey("usage_sampler", UsageSampler)
