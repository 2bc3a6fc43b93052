"""``sharpeye export --alert ID``: an alert's camera and clip range, from the bus.

An open alert is in ``P:open`` (its last message); an ended one only in the events stream, which
is read newest first in pages so the latest message of the alert is found without reading the
whole stream.  The clip range is the message's ``clip`` (pre-roll before the alert, post-roll after
it ended); an alert still open has no end yet, so its export runs to now.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pipeline.config import Config
from pipeline.publish import bus

PAGE = 1000


class AlertNotFound(LookupError):
    pass


@dataclass(frozen=True)
class AlertClip:
    alert_id: str
    camera: str
    start: float
    end: float
    open: bool  # still open: ``end`` is "now"
    message: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """What the manifest keeps of the alert."""
        m = self.message
        return {"alert_id": self.alert_id, "camera": self.camera, "phase": m.get("phase"),
                "rule": (m.get("rule") or {}).get("kind"), "severity": (m.get("rule") or {}).get("severity"),
                "labels": m.get("labels"), "start_time": m.get("start_time"), "end_time": m.get("end_time"),
                "clip": m.get("clip"), "open": self.open}


def find_alert_message(r: Any, keys: bus.BusKeys, alert_id: str) -> tuple[dict[str, Any], bool] | None:
    """(latest message, still open) of ``alert_id``, or None when the bus has never heard of it (or trimmed it)."""
    raw = r.hget(keys.open_alerts, alert_id)
    if raw is not None:
        return json.loads(raw), True
    want = alert_id.encode()
    last = "+"
    while True:
        page = r.xrevrange(keys.events, max=last, count=PAGE)
        if not page:
            return None
        for sid, fields in page:
            if fields.get(b"alert_id") == want:
                (_, msg), = bus.decode_entries([(sid, fields)])
                return msg, msg.get("phase") != "end"
        oldest = page[-1][0].decode() if isinstance(page[-1][0], bytes) else page[-1][0]
        last = "(" + oldest  # exclusive: the next page starts before it
        if len(page) < PAGE:
            return None


def alert_clip(cfg: Config, r: Any, alert_id: str, now: float | None = None) -> AlertClip:
    """The camera and [start, end] to export for ``alert_id``; AlertNotFound with a sentence otherwise."""
    found = find_alert_message(r, bus.BusKeys(cfg.bus.prefix), alert_id)
    if found is None:
        raise AlertNotFound(f"alert {alert_id!r} is neither open nor in the events stream of the bus "
                            f"(prefix {cfg.bus.prefix!r}): check the id, or export its camera and time with "
                            "--camera/--start/--end")
    msg, is_open = found
    cam = str(msg["camera"]["id"])
    clip = msg.get("clip") or {}
    alerts_cfg = cfg.camera_alerts(cam) if cam in cfg.cameras else cfg.alerts
    start = clip.get("start")
    if start is None:
        start = float(msg["start_time"]) - alerts_cfg.pre_roll_s
    end = clip.get("end")
    if end is None:
        if msg.get("end_time") is not None:
            end = float(msg["end_time"]) + alerts_cfg.post_roll_s
        else:
            end = time.time() if now is None else now  # still open: what has been recorded so far
    return AlertClip(alert_id, cam, float(start), float(end), is_open, msg)
