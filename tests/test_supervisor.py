"""single_host.supervisor's restart policy: the delay doubles with each crash in a row, up to a bound, and a
service that stayed up long enough starts its count over. The crashes are real processes that exit."""

from __future__ import annotations

import sys

from single_host.processes import ChildProcess
from single_host.settings import SupervisorSettings
from single_host.supervisor import RestartPolicy, Supervised

POLICY = RestartPolicy(initial=1.0, maximum=60.0, reset_after=120.0)
CRASH = [sys.executable, "-c", "raise SystemExit(3)"]


def crashed_once(service: Supervised, *, up_for: float) -> bool:
    """Start the service, let its process exit, and tell the supervisor it did `up_for` seconds after the start."""
    service.start()
    assert service.child.process is not None
    service.child.process.wait()
    return service.crashed(POLICY, service.started_at + up_for)


def test_delays_double_from_the_initial_up_to_the_maximum() -> None:
    assert [POLICY.delay(attempt) for attempt in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert POLICY.delay(10_000) == 60


def test_the_defaults_are_one_second_doubling_to_a_minute() -> None:
    policy = RestartPolicy.from_settings(SupervisorSettings())
    assert (policy.delay(1), policy.delay(2), policy.delay(100)) == (1.0, 2.0, 60.0)


def test_each_crash_in_a_row_plans_a_longer_wait_with_its_exit_code() -> None:
    service = Supervised("crasher", ChildProcess("crasher"), CRASH)
    plans = []
    for _ in range(3):
        assert crashed_once(service, up_for=0.5)
        assert service.restart_at is not None
        plans.append((service.exit_code, service.attempt, service.delay, service.restart_at - service.started_at))
    assert plans == [(3, 1, 1.0, 1.5), (3, 2, 2.0, 2.5), (3, 3, 4.0, 4.5)]


def test_a_service_that_stayed_up_starts_its_count_over() -> None:
    service = Supervised("crasher", ChildProcess("crasher"), CRASH)
    for _ in range(3):
        crashed_once(service, up_for=0.5)
    assert crashed_once(service, up_for=POLICY.reset_after)
    assert (service.attempt, service.delay) == (1, 1.0)


def test_a_crash_is_reported_once_until_the_service_is_started_again() -> None:
    service = Supervised("crasher", ChildProcess("crasher"), CRASH)
    assert crashed_once(service, up_for=0.5)
    assert not service.crashed(POLICY, service.started_at + 1)
    assert service.attempt == 1
