"""processor_service.pool: worker processes that time out or die are stopped and replaced, alone.

Nothing here depends on how fast the machine is: concurrency is shown with a barrier both workers
must reach, "still running" with an event the test sets, and only the job timeouts under test are short.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from multiprocessing.managers import SyncManager
from typing import Any

import psutil
import pytest

from processor_service.pool import JobTimedOut, WorkerLost, WorkerPool
from tests.process_helpers import alive, spawned_workers

MEET_LIMIT = 60.0  # a liveness bound only: the barrier breaks (and the test fails) if a worker never arrives


@pytest.fixture(scope="module")
def manager() -> Iterator[SyncManager]:
    """Barriers and events that worker processes can be handed as arguments."""
    with multiprocessing.get_context("spawn").Manager() as manager:
        yield manager


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(2)
    await pool.start()
    yield pool
    await pool.close()


def _meet(barrier: Any) -> tuple[int, bool]:
    """Wait until every worker is inside this call; return the pid and whether the worker was warmed up."""
    barrier.wait(MEET_LIMIT)
    return os.getpid(), "processor_service.imaging" in sys.modules


def _wait_then_pid(event: Any) -> int:
    event.wait(MEET_LIMIT)
    return os.getpid()


def _sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _raise() -> None:
    raise ValueError("bad input")


async def _both_workers(pool: WorkerPool, manager: SyncManager) -> set[int]:
    """The pids of the pool's two workers, each shown alive and warmed up by one call held until both run."""
    barrier = manager.Barrier(2)
    answers = await asyncio.gather(*(pool.run(_meet, barrier, timeout=MEET_LIMIT * 2) for _ in range(2)))
    assert all(warm for _, warm in answers)
    return {pid for pid, _ in answers}


async def test_calls_run_at_once_in_other_warmed_up_processes(pool: WorkerPool, manager: SyncManager) -> None:
    pids = await _both_workers(pool, manager)
    assert os.getpid() not in pids
    assert len(pids) == 2


async def test_timed_out_worker_is_stopped_and_replaced_before_the_next_job(
    pool: WorkerPool, manager: SyncManager
) -> None:
    before = await _both_workers(pool, manager)
    with pytest.raises(JobTimedOut):
        await pool.run(_sleep_then_pid, 30, timeout=0.3)
    after = await _both_workers(pool, manager)  # two warm workers again: the replacement took this job
    killed = before - after
    assert len(killed) == 1
    assert not any(alive(pid) for pid in killed)


async def test_a_timeout_does_not_disturb_the_job_beside_it(pool: WorkerPool, manager: SyncManager) -> None:
    release = manager.Event()
    innocent = asyncio.ensure_future(pool.run(_wait_then_pid, release, timeout=MEET_LIMIT * 2))
    with pytest.raises(JobTimedOut):
        await pool.run(_sleep_then_pid, 30, timeout=0.3)
    assert not innocent.done()  # it waits for `release`, which only the test sets
    release.set()
    pid = await innocent
    assert alive(pid)


async def test_dead_worker_is_reported_and_replaced(pool: WorkerPool, manager: SyncManager) -> None:
    with pytest.raises(WorkerLost):
        await pool.run(os._exit, 3, timeout=MEET_LIMIT)
    assert len(await _both_workers(pool, manager)) == 2


async def test_a_worker_killed_while_idle_is_replaced_and_the_pool_goes_on(
    pool: WorkerPool, manager: SyncManager
) -> None:
    """The OOM killer's case; pebble gives up on its whole pool when an idle worker dies, so the pool is replaced."""
    before = await _both_workers(pool, manager)
    victim = psutil.Process(min(before))
    victim.kill()
    while psutil.pid_exists(victim.pid):  # until pebble has reaped it, so has seen it die (never reap it here)
        await asyncio.sleep(0.01)
    after = await _both_workers(pool, manager)
    assert len(after) == 2 and victim.pid not in after


async def test_an_exception_in_the_call_keeps_the_worker(pool: WorkerPool, manager: SyncManager) -> None:
    before = await _both_workers(pool, manager)
    with pytest.raises(ValueError, match="bad input"):
        await pool.run(_raise, timeout=MEET_LIMIT)
    assert await _both_workers(pool, manager) == before


async def test_start_returns_with_every_worker_up_and_close_leaves_no_process() -> None:
    before = spawned_workers()
    pool = WorkerPool(2)
    await pool.start()
    workers = spawned_workers() - before
    assert len(workers) == 2
    assert not pool.closed
    await pool.close()
    assert not any(alive(pid) for pid in workers)
    assert spawned_workers() - before == set()
    assert pool.closed
    with pytest.raises(RuntimeError, match="closed"):
        await pool.run(os.getpid, timeout=10)


async def test_close_ends_an_in_flight_call_with_worker_lost(manager: SyncManager) -> None:
    pool = WorkerPool(1)
    await pool.start()
    release = manager.Event()
    started = manager.Event()
    call = asyncio.ensure_future(pool.run(_signal_then_wait, started, release, timeout=MEET_LIMIT * 2))
    await asyncio.to_thread(started.wait, MEET_LIMIT)
    await pool.close()
    with pytest.raises(WorkerLost):
        await call


def _signal_then_wait(started: Any, release: Any) -> int:
    started.set()
    release.wait(MEET_LIMIT)
    return os.getpid()
