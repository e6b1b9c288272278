"""Each fault mid-batch leaves, with no manual step, every accepted file done once and the audit trail whole.

A small batch (SUITE_FILES generated instances) per drill keeps `make test` within its budget;
`make drills` runs the same drills on 500 files and writes the figures to docs/reliability.md.
The outages longer than a minute (`Fault.long`) run in `make drills` only: each costs over a
minute of outage plus the recovery, more than the suite's time budget leaves for them.
"""

from __future__ import annotations

import pytest

from samples.make_instances import SAMPLE_01, iter_instances
from tests.drills.drill import SETTLE_TIMEOUT, run_drill
from tests.drills.faults import FAULTS, Fault
from tests.drills.rig import Rig

SUITE_FILES = 30
SUITE_FAULTS = [fault for fault in FAULTS if not fault.long]


@pytest.mark.timeout(SETTLE_TIMEOUT + 120)
@pytest.mark.parametrize("fault", SUITE_FAULTS, ids=[fault.name for fault in SUITE_FAULTS])
async def test_after_the_fault_every_accepted_file_is_done_once_with_nothing_stuck_and_its_audit_records(
    rig: Rig, fault: Fault
) -> None:
    files = [data for _, data in iter_instances(SAMPLE_01, SUITE_FILES)]

    figures = await run_drill(rig, fault, files)

    outcome = figures.outcome
    counts = {
        "refused": len(figures.ledger.refused),
        "unanswered": figures.unanswered,
        "lost": len(outcome.lost),
        "duplicated": len(outcome.duplicated),
        "stuck": len(outcome.stuck),
        "failed": len(outcome.failed),
        "audit missing": len(outcome.audit_missing),
    }
    evidence = "\n".join(figures.evidence())
    assert counts == dict.fromkeys(counts, 0), evidence
    assert outcome.done == SUITE_FILES, evidence
    assert figures.recovery_seconds is not None, evidence
