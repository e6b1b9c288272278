"""What the system recorded after a drill, read from its database and held against what the clients were told.

The drill's database belongs to its system alone, so every row in it comes from the drill's batch.
An accepted file is *lost* when its instance is missing or `done` without a result; a file is
*duplicated* when it has more than one result row, more than one `accepted` registration, or an
audit record written twice; an instance is *stuck* while `received`, `queued` or `processing`, and
*failed* when the system gave up on it (its reason says why). The audit trail is complete when
every upload has its `upload.create`, every registered file its `upload.file`, and every upload
answered with a problem that named it its `upload.stop` (see results_service/upload_audit.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from tests.drills.clients import Ledger

UNFINISHED = ("received", "queued", "processing")

_INSTANCES = """SELECT i.id, i.status, i.reason, i.reconcile_attempts, count(r.id) AS results,
    count(r.id) FILTER (WHERE r.status = 'done') AS done_results
FROM instances i LEFT JOIN results r ON r.instance_id = i.id GROUP BY i.id"""
_ACCEPTED_TWICE = """SELECT sha256, count(*) AS n FROM upload_files WHERE status = 'accepted'
GROUP BY sha256 HAVING count(*) > 1"""
_FILES_WITHOUT_RECORD = """SELECT f.upload_id, f.index FROM upload_files f WHERE NOT EXISTS (
    SELECT 1 FROM audit_events a WHERE a.action = 'upload.file' AND a.resource_id = f.upload_id
    AND (a.detail->>'index')::int = f.index)"""
_UPLOADS_WITHOUT_CREATE = """SELECT u.id FROM uploads u WHERE NOT EXISTS (
    SELECT 1 FROM audit_events a WHERE a.action = 'upload.create' AND a.resource_id = u.id)"""
_RECORDS_TWICE = """SELECT action, resource_id, detail->>'index' AS index, count(*) AS n FROM audit_events
WHERE action IN ('upload.create', 'upload.file') GROUP BY 1, 2, 3 HAVING count(*) > 1"""
_STOPS = "SELECT DISTINCT resource_id FROM audit_events WHERE action = 'upload.stop' AND resource_id = ANY($1)"


@dataclass
class Outcome:
    """The counts a drill is judged by, each with the evidence behind it."""

    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: dict[str, str] = field(default_factory=dict)  # instance id -> status
    reconciled: dict[str, int] = field(default_factory=dict)  # stuck instance id -> jobs the reconciler republished
    failed: dict[str, str] = field(default_factory=dict)  # instance id -> reason
    audit_missing: list[str] = field(default_factory=list)
    done: int = 0

    @property
    def settled(self) -> bool:
        """Nothing left to wait for: no instance unfinished, no audit record missing, nothing accepted missing."""
        return not self.stuck and not self.audit_missing and not self.lost


async def read_outcome(database_url: str, ledger: Ledger) -> Outcome:
    """Hold the database of the drill's system against the clients' ledger."""
    outcome = Outcome()
    conn = await asyncpg.connect(database_url)
    try:
        rows = {row["id"]: row for row in await conn.fetch(_INSTANCES)}
        for sha, instance_id in sorted(ledger.instances.items()):
            row = rows.get(instance_id)
            if row is None:
                outcome.lost.append(f"file {sha[:12]}: its 202 named instance {instance_id}, which is not recorded")
            elif row["status"] in UNFINISHED:
                outcome.stuck[instance_id] = row["status"]
                outcome.reconciled[instance_id] = row["reconcile_attempts"]
            elif row["status"] == "failed":
                outcome.failed[instance_id] = str(row["reason"])
            elif row["done_results"] == 0:
                outcome.lost.append(f"instance {instance_id} is done without a result")
            else:
                outcome.done += 1
        for instance_id, row in rows.items():
            if row["results"] > 1:
                outcome.duplicated.append(f"instance {instance_id} has {row['results']} results")
            if instance_id not in ledger.instances.values() and row["status"] in UNFINISHED:
                outcome.stuck[instance_id] = row["status"]  # registered by a cut-off request no retry named
                outcome.reconciled[instance_id] = row["reconcile_attempts"]
        for row in await conn.fetch(_ACCEPTED_TWICE):
            outcome.duplicated.append(f"bytes {row['sha256'][:12]} accepted {row['n']} times")
        for row in await conn.fetch(_RECORDS_TWICE):
            outcome.duplicated.append(f"audit {row['action']} of {row['resource_id']} #{row['index']} x{row['n']}")
        for row in await conn.fetch(_FILES_WITHOUT_RECORD):
            outcome.audit_missing.append(f"upload.file of {row['upload_id']} #{row['index']}")
        for row in await conn.fetch(_UPLOADS_WITHOUT_CREATE):
            outcome.audit_missing.append(f"upload.create of {row['id']}")
        stopped = {row["resource_id"] for row in await conn.fetch(_STOPS, sorted(ledger.stopped_uploads))}
        outcome.audit_missing += [f"upload.stop of {upload}" for upload in sorted(ledger.stopped_uploads - stopped)]
    finally:
        await conn.close()
    return outcome
