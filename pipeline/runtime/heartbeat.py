"""A worker's proof of life, from the thread that matters.

The worker's detect loop calls :class:`Heartbeat` on every turn (at least every 0.5 s); at most
once a second it writes the current ``time.monotonic()`` into a small file.  The supervisor
reads the file and restarts a worker whose value has not moved for longer than
``supervisor.heartbeat_timeout_s``.  Because the beat comes from the detect loop itself, a
worker whose detect thread died, deadlocked or was stopped (SIGSTOP) goes silent even though
its process is alive and its other threads still run.

Why these choices: ``CLOCK_MONOTONIC`` is one clock for every process on a Linux machine and
does not jump when the wall clock is set, so the supervisor compares like with like; a
fixed-width ``pwrite`` to an open descriptor costs one syscall, no fsync (the file only has to
outlive the writer by seconds, and a crashed writer is exactly what it reports).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

MIN_INTERVAL_S = 1.0
_WIDTH = 24


class Heartbeat:
    """Callable for ``Worker.on_heartbeat``: cheap on every call, writes at most once per interval."""

    def __init__(self, path: Path, min_interval_s: float = MIN_INTERVAL_S):
        self.path = Path(path)
        self.min_interval_s = min_interval_s
        self._fd: int | None = None
        self._last = float("-inf")

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < self.min_interval_s:
            return
        self._last = now
        if self._fd is None:  # created at the first beat: a missing file means "not started yet"
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.pwrite(self._fd, f"{now:.3f}".rjust(_WIDTH - 1).encode() + b"\n", 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def last_beat(path: Path) -> float | None:
    """The ``time.monotonic()`` of the last beat written to ``path``; None if none (yet) or unreadable."""
    try:
        text = Path(path).read_bytes()[:_WIDTH]
        return float(text)
    except (OSError, ValueError):
        return None


def beat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since the last beat, or None when there has been none."""
    beat = last_beat(path)
    if beat is None:
        return None
    return (time.monotonic() if now is None else now) - beat
