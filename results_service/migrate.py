"""`python -m results_service.migrate`: create the database and apply every pending migration."""

from __future__ import annotations

import asyncio

from common.app.logs import configure_logging
from common.app.web import load_settings
from results_service.db import apply_migrations
from results_service.settings import ResultsSettings


def main() -> None:
    """Apply migrations to the database of DATABASE_URL."""
    settings = load_settings(ResultsSettings)
    configure_logging("results_service.migrate", settings.log_level, settings.log_format)
    asyncio.run(apply_migrations(settings.database_url))


if __name__ == "__main__":
    main()
