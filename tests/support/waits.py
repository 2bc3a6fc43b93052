"""One way to wait for something to happen in a test, and what tests often wait on."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

import pytest


def wait_for(predicate: Callable[[], object], timeout: float, what: str | Callable[[], str],
             interval: float = 0.05) -> float:
    """Poll ``predicate`` until it is true; return the seconds it took.

    Tests wait on what they can observe (a counter, a state, a port) instead of sleeping a fixed
    time, so a slow shared machine makes them slower, not wrong.  On timeout the test fails with
    ``what`` (a callable is evaluated then, to show the state at that moment).
    """
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 >= timeout:
            detail = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout:g} s waiting for {detail}")
        time.sleep(interval)


def http_up(url: str) -> bool:
    """``url`` answers (2xx or 3xx) within a second: for ``wait_for(lambda: http_up(...), ...)``."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False
