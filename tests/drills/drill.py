"""One fault drill: a batch uploaded through the gateway, a fault injected mid-batch, then the system left alone.

The system runs on a private RabbitMQ node and a private PostgreSQL cluster (`rig`), so the drill
may stop, kill and restart them. Once a third of the batch is answered, the fault (`faults`) is
injected; the clients keep going and retry what it cut off (`clients`). Nobody touches the system
afterwards: the drill polls its database until every accepted file is `done`, nothing is unfinished
and no audit record is missing (`outcome.Outcome.settled`), or until the settle deadline, and
returns the figures. Recovery is measured from the end of the fault (the service ready again, the
server accepting again) to that moment, so it includes the rest of the batch still to upload and
process: the baseline of `make drills` (the same batch, no fault) says how much of it that is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from single_host.processes import SERVICES, RunningSystem
from tests.drills.clients import Ledger, sha256_of, upload_batch
from tests.drills.faults import Fault
from tests.drills.outcome import Outcome, read_outcome
from tests.drills.rig import Rig

SETTLE_TIMEOUT = 180.0  # a deadline for the system to settle by itself, never a wait in itself
POLL = 0.25
EVENT_CHARS = 160
TRAILS = 3  # unfinished instances whose log events the evidence lists
_ADDRESS = re.compile(r"0x[0-9a-f]+")  # object addresses would make one event many


@dataclass
class DrillFigures:
    """What one drill measured."""

    fault: Fault
    files: int
    fault_seconds: float
    settled_seconds: float | None  # fault end -> nothing unfinished; None when not settled by the deadline
    ledger: Ledger
    outcome: Outcome
    unanswered: int = 0  # files no 202 answered by the deadline
    findings: list[str] = field(default_factory=list)  # what the injection itself found wrong (orphans)
    trails: dict[str, list[str]] = field(default_factory=dict)  # a few unfinished instances -> their log events
    log_errors: Counter[str] = field(default_factory=Counter)  # "service: event" of error-level log lines

    @property
    def passed(self) -> bool:
        o = self.outcome
        clean = not (o.lost or o.duplicated or o.stuck or o.failed or o.audit_missing)
        answered = not self.ledger.refused and not self.unanswered
        return self.settled_seconds is not None and clean and answered and not self.findings

    @property
    def recovery_seconds(self) -> float | None:
        """Fault end -> every accepted file `done` with its audit records; None if some never were."""
        o = self.outcome
        all_done = o.done == len(self.ledger.instances) and not (o.failed or o.lost or o.stuck)
        return self.settled_seconds if all_done else None

    def evidence(self, limit: int = 5) -> list[str]:
        """A few lines per kind of failure, and the error-level log events, for a person to start from."""
        o = self.outcome
        lines = list(self.findings)
        lines += [f"refused: {sha[:12]} {why}" for sha, why in list(self.ledger.refused.items())[:limit]]
        lines += [f"lost: {line}" for line in o.lost[:limit]] + [f"duplicated: {d}" for d in o.duplicated[:limit]]
        stuck = Counter(o.stuck.values())
        lines += [f"stuck: {n} {status}" for status, n in stuck.items()]
        named = set(self.ledger.instances.values())
        lines += [
            f"stuck {instance_id} ({o.stuck[instance_id]}, {'' if instance_id in named else 'not '}named by a 202, "
            f"republished {o.reconciled.get(instance_id)}x), its log events: {', '.join(trail)}"
            for instance_id, trail in self.trails.items()
        ]
        lines += [f"failed: {n} with reason {reason!r}" for reason, n in Counter(o.failed.values()).items()]
        lines += [f"audit missing: {line}" for line in o.audit_missing[:limit]]
        if self.unanswered:
            lines.append(f"unanswered: {self.unanswered} files got no 202 by the deadline")
        lines += [f"log error: {event} x{n}" for event, n in self.log_errors.most_common(8)]
        return lines


def _records(system: RunningSystem) -> list[tuple[str, dict[str, Any]]]:
    """Every JSON record of the services' logs, with its service (a restarted service appends to its log)."""
    records = []
    for name in SERVICES:
        for line in system.log_text(name).splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append((name, record))
    return records


def error_events(records: list[tuple[str, dict[str, Any]]]) -> Counter[str]:
    """Error-level events, counted per service and event."""
    events: Counter[str] = Counter()
    for name, record in records:
        if record.get("level") in ("error", "critical"):
            event = _ADDRESS.sub("0x…", str(record.get("event")))
            events[f"{name}: {event[:EVENT_CHARS]}"] += 1
    return events


def trail(records: list[tuple[str, dict[str, Any]]], instance_id: str) -> list[str]:
    """The events that name the instance, in time order: where it went before it stopped."""
    named = [(r.get("timestamp", ""), f"{name}.{r.get('event')}") for name, r in records if instance_id in str(r)]
    return [event for _, event in sorted(named)]


async def run_drill(
    rig: Rig, fault: Fault, files: Sequence[bytes], *, clients: int = 4, settle_timeout: float = SETTLE_TIMEOUT
) -> DrillFigures:
    """Upload `files`, inject `fault` once a third are answered, and wait for the system to settle by itself."""
    user = await rig.system.create_user("drill")
    ledger = Ledger()
    uploads = asyncio.create_task(upload_batch(rig.system.gateway_url, user.headers, files, ledger, clients=clients))
    while ledger.answered < len(files) // 3 and not uploads.done():
        await asyncio.sleep(0.01)
    started = time.monotonic()
    findings = await fault.inject(rig)
    ended = time.monotonic()
    deadline = ended + settle_timeout
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(uploads), max(0.0, deadline - time.monotonic()))
    if not uploads.done():
        uploads.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await uploads
    if not uploads.cancelled():
        uploads.result()  # an error of the clients themselves is raised here
    settled = None
    while True:
        outcome = await read_outcome(rig.database_url, ledger)
        if outcome.settled and uploads.done() and not uploads.cancelled():
            settled = time.monotonic() - ended
            break
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL)
    answered = set(ledger.instances) | set(ledger.refused)
    records = await asyncio.to_thread(_records, rig.system)
    return DrillFigures(
        fault=fault,
        files=len(files),
        fault_seconds=ended - started,
        settled_seconds=settled,
        ledger=ledger,
        outcome=outcome,
        unanswered=sum(1 for data in files if sha256_of(data) not in answered),
        findings=findings,
        log_errors=error_events(records),
        trails={instance_id: trail(records, instance_id) for instance_id in list(outcome.stuck)[:TRAILS]},
    )
