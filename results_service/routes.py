"""The route table of results_service: every public `/api` route is declared by its OpenAPI operation.

The gateway routes the same operations to this service, so a path is written once, in
`common.schemas.*_api`; the `/internal` routes are this service's own.
"""

from __future__ import annotations

from aiohttp import web

from common.app.api_routes import add_routes, handled_by
from common.schemas.accounts_api import account_operations
from common.schemas.client_logs_api import client_log_operations
from common.schemas.elements_api import element_operations
from common.schemas.instances_api import instance_operations
from common.schemas.lookup_api import lookup_operations
from common.schemas.workers_api import worker_operations
from results_service import accounts, client_logs, elements, instances
from results_service.atomic_registration import handle_register_upload
from results_service.audit import handle_list_audit
from results_service.instance_files import handle_file
from results_service.instance_lookup import handle_lookup
from results_service.registration_batch import handle_register_files
from results_service.upload_audit import handle_upload_stop
from results_service.workers import handle_list_workers


def setup_routes(app: web.Application) -> None:
    """Register every route: the public API's from its operations, then the internal ones."""
    accounts.setup_accounts(app)
    public = [
        *handled_by(
            account_operations(),
            {
                "post_users": accounts.handle_create_user,
                "get_users": accounts.handle_list_users,
                "patch_users_user_id": accounts.handle_patch_user,
                "post_users_user_id_password-reset": accounts.handle_reset_password,
                "get_audit": handle_list_audit,
            },
        ),
        *handled_by(
            element_operations(),
            {
                "post_elements": elements.handle_create,
                "get_elements": elements.handle_list,
                "get_elements_element_id": elements.handle_get,
                "put_elements_element_id": elements.handle_update,
                "patch_elements_element_id": elements.handle_update,
                "delete_elements_element_id": elements.handle_delete,
            },
        ),
        *handled_by(
            instance_operations(),
            {
                "get_uploads_upload_id": instances.handle_get_upload,
                "get_instances": instances.handle_list_instances,
                "get_instances_instance_id": instances.handle_get_instance,
                "get_instances_instance_id_preview.png": instances.handle_preview,
                "get_instances_instance_id_file": handle_file,
                "get_studies": instances.handle_list_studies,
            },
        ),
        *handled_by(lookup_operations(), {"post_instances_lookup": handle_lookup}),
        *handled_by(
            client_log_operations(),
            {
                "post_client-logs": client_logs.handle_create,
                "get_client-logs": client_logs.handle_list,
                "get_client-logs_log_id": client_logs.handle_get,
            },
        ),
        *handled_by(worker_operations(), {"get_workers": handle_list_workers}),
    ]
    add_routes(app.router, public)
    app.router.add_post("/internal/registrations", handle_register_files)
    app.router.add_post("/internal/registrations/atomic", handle_register_upload)
    app.router.add_post("/internal/uploads/{upload_id}/stop", handle_upload_stop)
