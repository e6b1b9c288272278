"""The system of record: the only service that talks to PostgreSQL."""
