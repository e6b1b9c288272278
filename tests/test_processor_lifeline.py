"""processor_service.lifeline: a worker ends with the process that started it, whichever way it learns of the death.

Each case starts a "parent" process that starts a worker tied to it, kills the parent with SIGKILL (no
chance to stop its worker) and waits for the worker to be gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess

import pytest

from processor_service.lifeline import EXIT_ORPHANED, tie_to_parent
from tests.lifeline_helpers import SPAWN, parent_of_a_tied_worker
from tests.pipeline_helpers import eventually
from tests.process_helpers import alive
from tests.queue_helpers import LIVENESS


@pytest.fixture
def parents() -> Iterator[list[SpawnProcess]]:
    """Parents started by the test; any still running at the end (a failed test) are killed."""
    started: list[SpawnProcess] = []
    yield started
    for process in started:
        process.kill()
        process.join()


LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


@pytest.mark.parametrize(
    "tie", [pytest.param("kernel", marks=LINUX_ONLY), "watchdog", pytest.param("tie_to_parent", marks=LINUX_ONLY)]
)
async def test_a_worker_ends_when_its_parent_is_killed(tie: str, parents: list[SpawnProcess]) -> None:
    pids = SPAWN.Queue()
    parent = SPAWN.Process(target=parent_of_a_tied_worker, args=(tie, pids))
    parent.start()
    parents.append(parent)
    worker = await asyncio.to_thread(pids.get, True, LIVENESS)
    assert alive(worker)
    os.kill(parent.pid, signal.SIGKILL)  # type: ignore[arg-type]
    parent.join()

    async def worker_gone() -> bool:
        return not alive(worker)

    try:
        await eventually(worker_gone)
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_worker_whose_parent_died_before_it_was_tied_ends_at_once() -> None:
    """The race: the parent that started it is already gone, so the kernel would never tell it."""
    process = SPAWN.Process(target=tie_to_parent, args=(-1,))  # -1 is nobody's pid: "my parent is not the one"
    process.start()
    process.join(LIVENESS)
    assert process.exitcode == EXIT_ORPHANED
