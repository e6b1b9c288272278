"""Database-enforced rules of the accounts app.

- audit_events is append-only: a trigger rejects every UPDATE and DELETE (row level) and
  TRUNCATE (statement level), whoever runs them; only INSERT and SELECT work.
- users: emails are stored lower-case (so the unique index is case-insensitive) and the role
  is one of the two known ones.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    """
    CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_events_no_update_delete
        BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
    """,
    """
    CREATE TRIGGER audit_events_no_truncate
        BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()
    """,
    "ALTER TABLE users ADD CONSTRAINT users_email_lower CHECK (email = lower(email))",
    "ALTER TABLE users ADD CONSTRAINT users_role_known CHECK (role IN ('user', 'admin'))",
]

REVERSE = [
    "ALTER TABLE users DROP CONSTRAINT IF EXISTS users_role_known",
    "ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_lower",
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events",
    "DROP FUNCTION IF EXISTS audit_events_append_only()",
]


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_create_accounts")]

    initial = False

    operations = [
        ops.RunSQL(FORWARD, reverse_sql=REVERSE),
    ]
