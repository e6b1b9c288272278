"""The route table of results_service; each API adds its lines here."""

from __future__ import annotations

from aiohttp import web

from results_service import elements
from results_service.accounts import setup_accounts
from results_service.instances import setup_pipeline_routes
from results_service.registration_batch import handle_register_files
from results_service.upload_audit import handle_upload_stop


def setup_routes(app: web.Application) -> None:
    """Register every route; collection and item paths answer with and without the trailing slash."""
    setup_accounts(app)
    setup_pipeline_routes(app)
    app.router.add_post("/internal/registrations", handle_register_files)
    app.router.add_post("/internal/uploads/{upload_id}/stop", handle_upload_stop)
    for path in ("/api/elements", "/api/elements/"):
        app.router.add_get(path, elements.handle_list)
        app.router.add_post(path, elements.handle_create)
    for path in ("/api/elements/{element_id}", "/api/elements/{element_id}/"):
        app.router.add_get(path, elements.handle_get)
        app.router.add_put(path, elements.handle_update)
        app.router.add_patch(path, elements.handle_update)
        app.router.add_delete(path, elements.handle_delete)
