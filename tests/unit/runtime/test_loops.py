"""The worker's loops (pipeline/runtime/loops.py): each runs on its own thread with its own stop event,
stops promptly when asked even while it waits, and a loop whose turns fail is logged once and goes on,
never stopping the others."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from pipeline.runtime.loops import Loop
from tests.support.waits import wait_for


class Counting(Loop):
    """Counts its turns; each turn waits on its own event (as the status loop waits for a state change)."""

    name = "counting"

    def __init__(self, period_s: float = 0.01):
        super().__init__()
        self.period_s = period_s
        self.due = threading.Event()
        self.count = 0

    def wake(self) -> None:
        self.due.set()

    def turn(self) -> None:
        self.due.wait(self.period_s)
        self.due.clear()
        self.count += 1


class Failing(Loop):
    """Raises on every turn until ``heal`` is set."""

    name = "failing"
    retry_s = 0.01

    def __init__(self) -> None:
        super().__init__()
        self.heal = threading.Event()
        self.tried = 0

    def turn(self) -> None:
        self.tried += 1
        if not self.heal.is_set():
            raise RuntimeError(f"turn {self.tried} broke")
        time.sleep(0.005)


def test_a_loop_runs_on_its_own_named_thread_until_stopped() -> None:
    loop = Counting()
    loop.start()
    wait_for(lambda: loop.count >= 5, 10, lambda: f"{loop.count} turns")
    assert loop.alive() and loop.thread is not None and loop.thread.name == "counting"
    assert loop.thread is not threading.current_thread()
    loop.stop()
    loop.join(5)
    assert not loop.alive()
    after = loop.count
    time.sleep(0.05)
    assert loop.count == after  # no turn after stop


def test_stop_interrupts_a_long_wait() -> None:
    loop = Counting(period_s=60)  # a turn would wait a minute
    loop.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    loop.stop()
    loop.join(5)
    assert not loop.alive()
    assert time.monotonic() - t0 < 1.0


def test_each_loop_has_its_own_stop_event() -> None:
    a, b = Counting(), Counting()
    a.start()
    b.start()
    try:
        a.stop()
        a.join(5)
        assert not a.alive() and not b.stop_event.is_set()
        before = b.count
        wait_for(lambda: b.count >= before + 5, 10, "the other loop goes on")
    finally:
        b.stop()
        b.join(5)


def test_a_failing_loop_neither_dies_nor_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.runtime.loops")
    ok, bad = Counting(), Failing()
    ok.start()
    bad.start()
    try:
        wait_for(lambda: bad.failures >= 20, 10, lambda: f"{bad.failures} failed turns")
        assert bad.alive(), "a failed turn ended the loop's thread"
        before = ok.count
        wait_for(lambda: ok.count >= before + 5, 10, "the healthy loop goes on while the other fails")
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1, "the traceback of a failing loop is logged once, not on every turn"
        assert "failing loop" in tracebacks[0].getMessage()
        assert "turn 1 broke" in caplog.text
        bad.heal.set()  # what broke it is fixed: the loop works again, without a restart
        wait_for(lambda: bad.failures == 0 and bad.turns >= 3, 10, lambda: f"{bad.failures} failures, {bad.turns}")
        assert any("working again" in r.getMessage() for r in caplog.records)
    finally:
        for loop in (ok, bad):
            loop.stop()
        for loop in (ok, bad):
            loop.join(5)
    assert not ok.alive() and not bad.alive()
