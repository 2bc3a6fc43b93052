"""Reading a test's events stream as it fills: every message in order, from the start of the stream."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline.publish import bus


class BusWatch:
    """The events of one bus prefix, read in order; ``poll`` adds what came since the last read."""

    def __init__(self, redis_url: str, prefix: str):
        self.r = bus.connect(redis_url)
        self.keys = bus.BusKeys(prefix)
        self.last_id = "0-0"
        self.events: list[dict[str, Any]] = []

    def poll(self, block_ms: int | None = 500, count: int = 100) -> list[dict[str, Any]]:
        """Wait up to ``block_ms`` (None: not at all) for new messages; return them (also kept in ``events``)."""
        new = []
        for sid, msg in bus.read_events(self.r, self.keys, self.last_id, count=count, block_ms=block_ms):
            self.last_id = sid
            new.append(msg)
        self.events.extend(new)
        return new

    def until(self, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float) -> bool:
        """Read until ``done(events)`` holds (True) or ``timeout_s`` passes (False)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            self.poll()
            if done(self.events):
                return True
        return False

    def drain(self) -> list[dict[str, Any]]:
        """Everything left on the stream now (what a worker's stop flushed), without waiting."""
        new = []
        while batch := self.poll(block_ms=None, count=1000):
            new.extend(batch)
        return new

    def alerts(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The alert messages read so far, of one rule kind or all."""
        return [m for m in self.events if m["type"] == "alert" and (kind is None or m["rule"]["kind"] == kind)]
