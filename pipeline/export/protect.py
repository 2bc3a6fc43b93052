"""Retention's ``protected`` hook: exported ranges (holds.json) and every open alert's clip range (the bus).

``Retention`` and the janitor ask ``protected(camera, start, end)`` before deleting a segment (or,
for a snapshot, ``(camera, t, t)``); a True keeps it.  Two things veto a deletion here:

* a hold in ``<data_dir>/exports/holds.json`` (an export not yet released, or one being written);
* an alert that is still open: its clip runs from ``clip.start`` to ``clip.end``, or on until it
  ends.  An alert's footage must survive until somebody can export it.

The holds file is re-read whenever it changes (one ``stat`` per call, microseconds); the open
alerts are read from ``P:open`` at most every ``alerts_refresh_s``.  When the bus cannot be reached
the last alerts seen stay protected (a Redis restart must not unprotect them), and the failure is
logged once.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.export import holds
from pipeline.publish import bus

log = logging.getLogger(__name__)

ALERTS_REFRESH_S = 5.0


class ExportProtection:
    """A ``protected(camera, start, end) -> bool`` callable over holds and open alerts; thread-safe."""

    def __init__(self, data_dir: Path, bus_url: str | None = None, prefix: str = "sharpeye",
                 alerts_refresh_s: float = ALERTS_REFRESH_S, use_bus: bool = True):
        self.data_dir = Path(data_dir)
        self.bus_url = bus_url
        self.keys = bus.BusKeys(prefix)
        self.alerts_refresh_s = alerts_refresh_s
        self.use_bus = use_bus
        self._lock = threading.Lock()
        self._holds_sig: tuple[int, int] | None = None
        self._held: dict[str, list[tuple[float, float]]] = {}
        self._alerts: dict[str, list[tuple[float, float]]] = {}
        self._alerts_at = -math.inf
        self._bus_failed = False
        self._client: Any = None
        self._client_url: str | None = None

    def __call__(self, camera: str, start: float, end: float) -> bool:
        with self._lock:
            self._refresh_holds()
            if _overlaps(self._held.get(camera, ()), start, end):
                return True
            if self.use_bus:
                self._refresh_alerts()
                return _overlaps(self._alerts.get(camera, ()), start, end)
        return False

    # ------------------------------------------------------------------ sources
    def _refresh_holds(self) -> None:
        path = holds.holds_path(self.data_dir)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._holds_sig, self._held = None, {}
            return
        sig = (st.st_mtime_ns, st.st_size)
        if sig == self._holds_sig:
            return
        try:
            self._held = holds.ranges_of(holds.all_holds(self.data_dir))
            self._holds_sig = sig
        except (OSError, ValueError, KeyError, TypeError) as e:  # keep the last good holds, never fewer
            log.error("export holds %s unreadable, keeping the last ones read: %s", path, e)

    def _refresh_alerts(self) -> None:
        now = time.monotonic()
        if now - self._alerts_at < self.alerts_refresh_s:
            return
        self._alerts_at = now
        url = self.bus_url or _embedded_url(self.data_dir)
        if url is None:
            return
        try:
            if self._client is None or url != self._client_url:
                self._client, self._client_url = bus.connect(url), url
            open_now = bus.open_alerts(self._client, self.keys)
        except Exception as e:  # redis errors, a bad message: keep protecting what was open
            if not self._bus_failed:
                log.warning("cannot read open alerts from the bus (%s): keeping the %d clip ranges last seen",
                            type(e).__name__, sum(len(v) for v in self._alerts.values()))
            self._bus_failed = True
            return
        self._bus_failed = False
        self._alerts = alert_ranges(open_now.values())


def alert_ranges(messages: Any) -> dict[str, list[tuple[float, float]]]:
    """Camera → clip ranges of open alerts (an open clip without an end runs on)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for msg in messages:
        try:
            cam = str(msg["camera"]["id"])
            clip = msg.get("clip") or {}
            start = float(clip["start"] if clip.get("start") is not None else msg["start_time"])
            end = float(clip["end"]) if clip.get("end") is not None else math.inf
        except (KeyError, TypeError, ValueError):
            continue
        out.setdefault(cam, []).append((start, end))
    return out


def _overlaps(ranges: Any, start: float, end: float) -> bool:
    """Whether [start, end] shares time with a range; segments that only touch one (back to back) do not,
    an instant (a snapshot's time) does when it falls inside or on an edge."""
    if start == end:
        return any(s <= start <= e for s, e in ranges)
    return any(s < end and e > start for s, e in ranges)


def _embedded_url(data_dir: Path) -> str | None:
    """The URL file a running embedded Redis leaves under the data directory (see pipeline.runtime)."""
    try:
        return (data_dir / "redis" / "url").read_text().strip() or None
    except OSError:
        return None


def protection_for(cfg: Config) -> ExportProtection:
    """The hook for a config's data directory and bus, as the supervisor passes it to the janitor."""
    return ExportProtection(cfg.data_path(), cfg.redis_url, cfg.bus.prefix)


def protected(camera: str, start: float, end: float, cfg: Config) -> bool:
    """One-off question (tools, tests); long-lived callers keep a :func:`protection_for` object."""
    return protection_for(cfg)(camera, start, end)
