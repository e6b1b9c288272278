"""Versioned migrations, one package per Tortoise app (see results_service.db.MODEL_APPS)."""
