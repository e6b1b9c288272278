"""One `upload.stop` audit record per upload.

An upload stops once, and its record may arrive twice: ingest's direct report committed but its answer
was lost, so the same record was also published to `P.audit`; or the broker redelivered it. This partial
unique index is what `results_service.upload_audit.write_stop`'s `ON CONFLICT DO NOTHING` relies on to
write it once. (The table is append-only: the index only refuses a second row, it changes none.)
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    """
    CREATE UNIQUE INDEX IF NOT EXISTS audit_events_upload_stop_once
        ON audit_events (resource_id) WHERE action = 'upload.stop'
    """,
]

REVERSE = ["DROP INDEX IF EXISTS audit_events_upload_stop_once"]


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_append_only_audit")]

    initial = False

    operations = [
        ops.RunSQL(FORWARD, reverse_sql=REVERSE),
    ]
