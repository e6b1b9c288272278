"""Even/odd printer (the brief's exercise 5): two threads print 1..N strictly in order.

A `Condition` guards whose turn it is; each number also has a due time (`start + (n - 1) *
interval`), so the pace is one number per interval without drift. The print function, the clock
and the wait until a due time are injectable, so tests see which thread printed what and move time by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

EVEN_THREAD = "even"
ODD_THREAD = "odd"

Emit = Callable[[int, str], None]
Clock = Callable[[], float]
Wait = Callable[[threading.Event, float], bool]
"""Wait up to `seconds` for the stop event; True when it is set (default: `threading.Event.wait`)."""


@dataclass(frozen=True, slots=True)
class Printed:
    """One number, the name of the thread that printed it and when (seconds after the start)."""

    number: int
    thread: str
    at: float


class EvenOdd:
    """Two threads, one for the odd and one for the even numbers, taking turns through a Condition."""

    def __init__(
        self,
        upto: int,
        interval: float,
        emit: Emit | None = None,
        clock: Clock = time.monotonic,
        wait: Wait = threading.Event.wait,
    ) -> None:
        """`emit(number, thread_name)` prints one number (default: :func:`print_number`)."""
        if upto < 1:
            raise ValueError(f"upto must be >= 1, got {upto}")
        if not interval >= 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}")
        self.upto = upto
        self.interval = interval
        self._emit = emit if emit is not None else print_number
        self._clock = clock
        self._wait = wait
        self._turn = threading.Condition()
        self._next = 1
        self._stop = threading.Event()
        self._start = 0.0
        self._printed: list[Printed] = []
        self._error: BaseException | None = None

    def run(self) -> list[Printed]:
        """Start both threads, wait for them, and return what was printed in order.

        Ctrl-C (KeyboardInterrupt in the calling thread) stops both threads before it propagates;
        an error of the print function in either thread stops both and is raised here.
        """
        self._start = self._clock()
        threads = [
            threading.Thread(target=self._work, args=(first,), name=name, daemon=True)
            for first, name in ((1, ODD_THREAD), (2, EVEN_THREAD))
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        finally:
            self.stop()
            for thread in threads:
                thread.join()
        if self._error is not None:
            raise self._error
        return list(self._printed)

    def stop(self) -> None:
        """Ask both threads to finish without printing more."""
        self._stop.set()
        with self._turn:
            self._turn.notify_all()

    def _work(self, first: int) -> None:
        name = threading.current_thread().name
        for number in range(first, self.upto + 1, 2):
            with self._turn:
                while self._next != number and not self._stop.is_set():
                    self._turn.wait()
            if self._stop.is_set():
                return
            delay = self._start + (number - 1) * self.interval - self._clock()
            if delay > 0 and self._wait(self._stop, delay):
                return
            self._printed.append(Printed(number, name, self._clock() - self._start))
            try:
                self._emit(number, name)
            except BaseException as e:  # printing failed (a closed pipe): stop both, report it from run()
                self._error = e
                self.stop()
                return
            with self._turn:
                self._next = number + 1
                self._turn.notify_all()


def print_number(number: int, thread: str) -> None:
    """The default printer: the number and the thread that printed it, flushed at once."""
    print(f"{number:>4}  {thread}", flush=True)
