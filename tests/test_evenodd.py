"""Even/odd printer: 1..N strictly in order, odd numbers from the odd thread, even from the even one, paced."""

from __future__ import annotations

import threading
import time

import pytest

from common.brief.evenodd import EVEN_THREAD, ODD_THREAD, EvenOdd


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


def test_one_number_every_interval_without_drift() -> None:
    interval = 0.02

    started = time.monotonic()
    printed = EvenOdd(upto=8, interval=interval, emit=Recorder()).run()
    elapsed = time.monotonic() - started

    for item in printed:
        assert item.at >= (item.number - 1) * interval - 0.001, item
    assert elapsed >= 7 * interval - 0.001
    assert printed[-1].at < 7 * interval + 0.25  # paced against the start, not against the previous number


def test_upto_one_prints_only_one_from_the_odd_thread() -> None:
    recorder = Recorder()

    EvenOdd(upto=1, interval=0, emit=recorder).run()

    assert recorder.lines == [(1, ODD_THREAD, ODD_THREAD)]


def test_stop_ends_both_threads_early() -> None:
    recorder = Recorder()
    printer = EvenOdd(upto=200, interval=0.05, emit=recorder)
    threading.Timer(0.12, printer.stop).start()

    started = time.monotonic()
    printer.run()

    assert time.monotonic() - started < 1.0
    assert 1 <= len(recorder.lines) < 10
    assert [number for number, _, _ in recorder.lines] == list(range(1, len(recorder.lines) + 1))
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
