"""Open alerts nobody owns: still open on the bus, but no worker reports their camera any more.

A worker keeps ``P:open`` (alert id → its last message) for the alerts it has open and refreshes
its cameras' statuses in ``P:cameras`` every few seconds.  A worker that died leaves both behind:
its alerts stay open, and its cameras' statuses stop being refreshed (after ``bus.STALE_S`` they
read as offline).  Until a restarted worker ends those alerts (``end_reason: "worker restarted"``)
the page must not show them as live: once the camera has gone unreported for
``dashboard.orphan_alert_s`` an alert is marked stale, with the time its worker was last heard of.

The verdict is the dashboard's, from what is on the bus; it never changes the alert (only a
worker ends an alert), so a worker that comes back and carries on simply clears it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from pipeline.publish.status import CameraStatus


def parse_open(raw: Mapping[Any, Any]) -> dict[str, dict[str, Any]]:
    """``HGETALL P:open`` → alert id → last message; an entry that is not JSON is skipped, not fatal."""
    out: dict[str, dict[str, Any]] = {}
    for k, v in raw.items():
        try:
            msg = json.loads(v)
        except (ValueError, TypeError):
            continue
        if isinstance(msg, dict):
            out[k.decode() if isinstance(k, bytes) else str(k)] = msg
    return out


def last_heard(camera_id: str, msg: dict[str, Any], statuses: Mapping[str, CameraStatus]) -> float:
    """When a worker last said something about this camera: its status's refresh time, or (no status at
    all) the alert's own last message."""
    st = statuses.get(camera_id)
    if st is not None and st.updated:
        return float(st.updated)
    try:
        return float(msg.get("time") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def orphaned(open_alerts: Mapping[str, dict[str, Any]], statuses: Mapping[str, CameraStatus], after_s: float,
             now: float | None = None) -> dict[str, float]:
    """alert id → when its camera's worker was last heard of, for every open alert whose camera no worker
    has reported for more than ``after_s`` seconds."""
    now = time.time() if now is None else now
    out: dict[str, float] = {}
    for alert_id, msg in open_alerts.items():
        cam = (msg.get("camera") or {}).get("id")
        if not isinstance(cam, str):
            continue
        heard = last_heard(cam, msg, statuses)
        if now - heard > after_s:
            out[alert_id] = round(heard, 3)
    return out
