"""Tortoise ORM models of the system of record, one module (one Tortoise app) per domain."""
