"""`python -m results_service.bootstrap_admin`: make sure there is a first admin (run by `make setup`).

If an active admin exists, nothing happens. Otherwise an admin is created from ADMIN_EMAIL and
ADMIN_PASSWORD; when ADMIN_PASSWORD is unset a random one is generated and printed once on
stdout (never logged). Idempotent, so `make up` can run it every time.
"""

from __future__ import annotations

import asyncio
import secrets
import sys

from tortoise import Tortoise

from common.app.logs import configure_logging, get_logger
from common.app.web import load_settings
from common.auth.tokens import Role
from common.schemas.auth import UserCreate
from results_service import account_store
from results_service.db import tortoise_config
from results_service.models.accounts import User
from results_service.passwords import Passwords
from results_service.settings import ResultsSettings

log = get_logger(__name__)

DEFAULT_ADMIN_EMAIL = "admin@dicomflow.example"  # .local is a special-use name, refused as an account email


async def ensure_admin(settings: ResultsSettings) -> tuple[str, str | None] | None:
    """Create the first admin if there is no active one: (email, generated password or None), else None."""
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        if await User.exists(role=Role.ADMIN.value, disabled=False):
            return None
        email = settings.admin_email or DEFAULT_ADMIN_EMAIL
        given = settings.admin_password.get_secret_value()
        password = given or secrets.token_urlsafe(18)
        existing = await account_store.find_by_email(email)
        if existing is not None:
            # The account exists but is not an active admin: promote it, keep its password.
            await User.filter(id=existing.id).update(role=Role.ADMIN.value, disabled=False)
            log.info("admin_promoted", user_id=str(existing.id))
            return email, None
        body = UserCreate.model_validate({"email": email, "password": password, "role": Role.ADMIN})
        user = await account_store.create_user(body, Passwords(settings))
        log.info("admin_created", user_id=str(user.id))
        return user.email, None if given else password
    finally:
        await Tortoise.close_connections()


def main() -> None:
    """Create the first admin if needed and say so."""
    settings = load_settings(ResultsSettings)
    configure_logging("results_service.bootstrap_admin", settings.log_level, settings.log_format)
    outcome = asyncio.run(ensure_admin(settings))
    if outcome is None:
        sys.stdout.write("an active admin exists already; nothing to do\n")
        return
    email, generated = outcome
    if generated is None:
        sys.stdout.write(f"admin account ready: {email}\n")
    else:
        sys.stdout.write(
            f"created the first admin: {email}\npassword (shown once, store it now): {generated}\n"
            "change it by creating another admin and disabling this one (`dicomflow users`).\n"
        )


if __name__ == "__main__":
    main()
