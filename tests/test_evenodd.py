"""Even/odd printer: 1..N strictly in order, odd numbers from the odd thread, even from the even one, paced.

Pacing is checked on a clock the test moves by hand (the wait until a due time moves it), and stopping
with an event that says the printer is waiting: nothing depends on how fast the machine is.
"""

from __future__ import annotations

import threading
import time

import pytest

from common.brief.evenodd import EVEN_THREAD, ODD_THREAD, EvenOdd
from tests.fake_clock import FakeClock


class Recorder:
    """An emit function that notes what was printed, by which thread, and that no two prints overlap."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str, str]] = []
        self.overlaps = 0
        self._busy = threading.Lock()

    def __call__(self, number: int, thread: str) -> None:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            return
        try:
            time.sleep(0)  # give the other thread every chance to barge in
            self.lines.append((number, thread, threading.current_thread().name))
        finally:
            self._busy.release()


def test_numbers_come_strictly_in_order_each_from_its_own_thread() -> None:
    recorder = Recorder()

    printed = EvenOdd(upto=200, interval=0.0005, emit=recorder).run()

    assert [number for number, _, _ in recorder.lines] == list(range(1, 201))
    for number, name, actual_thread in recorder.lines:
        expected = EVEN_THREAD if number % 2 == 0 else ODD_THREAD
        assert name == actual_thread == expected, number
    assert recorder.overlaps == 0
    assert [(p.number, p.thread) for p in printed] == [(n, t) for n, t, _ in recorder.lines]


class HandMovedTime(FakeClock):
    """A clock that moves only when the printer waits (by exactly the wait asked for) or a print costs time."""

    def __init__(self, print_cost: float) -> None:
        super().__init__()
        self.print_cost = print_cost
        self.waits: list[float] = []

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        self.advance(seconds)
        return stop.is_set()

    def emit(self, number: int, thread: str) -> None:
        self.advance(self.print_cost)

    def run(self, upto: int, interval: float) -> list[float]:
        """When each number was printed, in seconds after the start."""
        printer = EvenOdd(upto=upto, interval=interval, emit=self.emit, clock=self, wait=self.wait)
        return [item.at for item in printer.run()]


def test_one_number_every_interval_without_drift() -> None:
    time_ = HandMovedTime(print_cost=0.007)  # pacing against the previous number would drift by it

    printed_at = time_.run(upto=8, interval=0.02)

    assert printed_at == pytest.approx([(n - 1) * 0.02 for n in range(1, 9)], abs=1e-6)
    assert time_.waits == pytest.approx([0.013] * 7, abs=1e-6)  # the interval less the time printing took


def test_no_wait_when_a_number_is_already_due() -> None:
    time_ = HandMovedTime(print_cost=0.05)  # slower than the interval

    printed_at = time_.run(upto=4, interval=0.02)

    assert time_.waits == []  # behind schedule: print at once, never wait
    assert printed_at == pytest.approx([0.0, 0.05, 0.10, 0.15], abs=1e-6)


def test_upto_one_prints_only_one_from_the_odd_thread() -> None:
    recorder = Recorder()

    EvenOdd(upto=1, interval=0, emit=recorder).run()

    assert recorder.lines == [(1, ODD_THREAD, ODD_THREAD)]


def test_stop_ends_both_threads_early_even_mid_wait() -> None:
    recorder = Recorder()
    waiting = threading.Event()

    def wait(stop: threading.Event, seconds: float) -> bool:
        waiting.set()
        return stop.wait(seconds)  # a real wait, for number 2's due time an hour away

    printer = EvenOdd(upto=200, interval=3600, emit=recorder, wait=wait)
    runner = threading.Thread(target=printer.run)
    runner.start()
    assert waiting.wait(60), "the printer never waited for a due time"
    printer.stop()
    runner.join(60)  # a liveness bound: stop must wake the wait long before the hour

    assert not runner.is_alive()
    assert [number for number, _, _ in recorder.lines] == [1]
    assert not [t for t in threading.enumerate() if t.name in (EVEN_THREAD, ODD_THREAD)]


def test_a_failing_print_stops_both_threads_and_is_raised_by_run() -> None:
    def emit(number: int, thread: str) -> None:
        if number == 4:
            raise BrokenPipeError("stdout closed")

    with pytest.raises(BrokenPipeError, match="stdout closed"):
        EvenOdd(upto=100, interval=0, emit=emit).run()
    assert not [t for t in threading.enumerate() if t.name in (EVEN_THREAD, ODD_THREAD)]


@pytest.mark.parametrize(("upto", "interval", "reason"), [(0, 0.5, "upto"), (10, -1.0, "interval")])
def test_bad_arguments_are_refused(upto: int, interval: float, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        EvenOdd(upto=upto, interval=interval)
