"""Events: alert lifecycle updates turned into bus messages with a JPEG snapshot.

The message format is ``sharpeye.event/1`` (docs/events.md, docs/schemas/event.schema.json).
Snapshots are written under ``<data_dir>/snapshots/<camera>/<date>/`` and the message
carries their path relative to the data directory: the dashboard serves them from there.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.analyse.rules import TrackedObject
from pipeline.config import CameraConfig, Config
from pipeline.publish.bus import SCHEMA_VERSION

SEVERITY_COLOURS = {"low": (80, 200, 80), "medium": (0, 200, 255), "high": (0, 80, 255), "critical": (0, 0, 255)}


def draw_snapshot(image: np.ndarray, objects: Sequence[TrackedObject], severity: str = "medium") -> np.ndarray:
    """A copy of the frame with the alert's boxes and labels drawn on it."""
    out = image.copy()
    colour = SEVERITY_COLOURS.get(severity, (0, 200, 255))
    thick = max(2, out.shape[0] // 240)
    for o in objects:
        x1, y1, x2, y2 = (int(round(v)) for v in o.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        text = f"{o.label} #{o.track_id} {o.score:.2f}" if o.track_id >= 0 else f"{o.label} {o.score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(th + 4, y1)
        cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty), colour, -1)
        cv2.putText(out, text, (x1 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def write_snapshot(data_dir: Path, camera_id: str, name: str, image: np.ndarray, quality: int = 85) -> str:
    """Encode to JPEG atomically; return the path relative to ``data_dir`` (forward slashes)."""
    day = dt.datetime.now().strftime("%Y-%m-%d")
    rel = Path("snapshots") / camera_id / day / f"{name}.jpg"
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    tmp = path.with_suffix(".jpg.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)
    return rel.as_posix()


def message_id() -> str:
    """Unique per message, roughly time-ordered: ms since the epoch (12 hex digits) + 8 random hex digits.

    Consumers de-duplicate on it: after an outage a message may reach the bus twice."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def grid_cell_ref(cfg: Config, cam: CameraConfig) -> dict[str, Any]:
    """The camera's grid cell and its duty officer, as every message carries them."""
    cell = cfg.grid_cells.get(cam.grid_cell)
    return {"id": cam.grid_cell, "name": cell.name if cell else cam.grid_cell,
            "officer": {"name": cell.officer.name, "phone": cell.officer.phone} if cell else None}


def _alert_head(cfg: Config, cam: CameraConfig, camera_id: str, alert_id: str, phase: str, t: float,
                frame_time: float | None) -> dict[str, Any]:
    """The fields every alert message starts with: the envelope, the alert's step, its camera and grid cell."""
    return {
        "schema": SCHEMA_VERSION,
        "type": "alert",
        "id": message_id(),
        "alert_id": alert_id,
        "phase": phase,
        "time": round(t, 3),
        "frame_time": round(frame_time, 3) if frame_time is not None else None,
        "camera": {"id": camera_id, "name": cam.name},
        "grid_cell": grid_cell_ref(cfg, cam),
    }


def alert_message(update: Any, cfg: Config, camera_id: str, snapshot: dict[str, Any] | None,
                  frame_time: float | None) -> dict[str, Any]:
    """The bus message for one lifecycle step of an alert (see docs/schemas/event.schema.json)."""
    cam: CameraConfig = cfg.cameras[camera_id]
    rule = {"id": update.rule_id, "kind": update.kind, "severity": update.severity}
    name = getattr(cam.effective_rules().get(update.rule_id), "name", None)
    if name:  # the rule's name for operators, when the config gives one
        rule["name"] = name
    return {
        **_alert_head(cfg, cam, camera_id, update.alert_id, update.phase, update.time, frame_time),
        "rule": rule,
        "labels": list(update.labels),
        "track_ids": list(update.track_ids),
        "objects": [{"track_id": o.track_id, "label": o.label, "score": round(float(o.score), 4),
                     "box": [round(float(v), 1) for v in o.box]} for o in update.objects],
        "score": round(float(update.best_score), 4),
        "start_time": round(update.start_time, 3),
        "end_time": round(update.end_time, 3) if update.end_time is not None else None,
        "snapshot": snapshot,
        "clip": {"start": round(update.clip_start, 3),
                 "end": round(update.clip_end, 3) if update.clip_end is not None else None},
    }


def tamper_message(event: Any, cfg: Config, camera_id: str, snapshot: dict[str, Any] | None,
                   frame_time: float | None) -> dict[str, Any]:
    """A tamper alert (camera dark, covered, blurred or moved) as an ``alert`` with rule kind ``tamper``.

    An alert rather than a message type of its own, so the room handles it like any other (taken,
    dispatched, resolved, reported per cell); ``tamper`` says which check fired and what it measured,
    ``rule.id`` is ``tamper:<kind>``.  No objects: the whole picture is the evidence (the snapshot),
    and the clip covers the tampering itself (``start_time`` is when the condition began)."""
    cam: CameraConfig = cfg.cameras[camera_id]
    alerts = cfg.camera_alerts(camera_id)
    return {
        **_alert_head(cfg, cam, camera_id, event.alert_id, event.phase, event.time, frame_time),
        "rule": {"id": f"tamper:{event.kind}", "kind": "tamper", "severity": cam.tamper.severity},
        "labels": [],
        "track_ids": [],
        "objects": [],
        "score": round(float(event.score), 4),
        "start_time": round(event.start_time, 3),
        "end_time": round(event.end_time, 3) if event.end_time is not None else None,
        "snapshot": snapshot,
        "clip": {"start": round(event.start_time - alerts.pre_roll_s, 3),
                 "end": round(event.end_time + alerts.post_roll_s, 3) if event.end_time is not None else None},
        "tamper": {"kind": event.kind, "detail": event.detail},
    }


def watchlist_message(hit: Any, cfg: Config, phase: str, snapshot: dict[str, Any] | None) -> dict[str, Any]:
    """A watchlist hit (布控命中): a plate read matched an active entry covering the camera's cell.

    An ordinary ``alert`` of rule kind ``watchlist`` (``rule.id`` ``watchlist:<entry id>``, severity
    high), so the cell's room takes, dispatches and closes it like any other; ``watchlist`` says which
    entry and what was read (never the entry's reason or owner: those stay in the history database).
    Sent as ``new`` with the vehicle's view and at once ``end``: the hit is one moment, its clip the
    track so far (pre- and post-roll from ``alerts``)."""
    cam: CameraConfig = cfg.cameras[hit.camera_id]
    alerts = cfg.camera_alerts(hit.camera_id)
    box = [round(float(v), 1) for v in hit.box]
    return {
        **_alert_head(cfg, cam, hit.camera_id, hit.alert_id, phase, hit.seen_t, hit.seen_t),
        "rule": {"id": f"watchlist:{hit.entry_id}", "kind": "watchlist", "severity": "high"},
        "labels": [hit.label],
        "track_ids": [hit.track_id],
        "objects": [{"track_id": hit.track_id, "label": hit.label, "score": round(float(hit.confidence), 4),
                     "box": box}],
        "score": round(float(hit.confidence), 4),
        "start_time": round(hit.first_t, 3),
        "end_time": round(hit.seen_t, 3) if phase == "end" else None,
        "snapshot": snapshot,
        "clip": {"start": round(hit.first_t - alerts.pre_roll_s, 3),
                 "end": round(hit.seen_t + alerts.post_roll_s, 3) if phase == "end" else None},
        "watchlist": {"entry_id": hit.entry_id, "pattern": hit.pattern, "plate": hit.plate,
                      "confidence": round(float(hit.confidence), 4)},
    }


def orphan_end_message(last: dict[str, Any], reason: str) -> dict[str, Any]:
    """The ``end`` of an alert whose worker died with it open, from the last message published for it.

    It ends where it was last seen; ``end_reason`` says why nobody saw it end."""
    end_time = float(last.get("time") or time.time())
    msg = dict(last, id=message_id(), phase="end", time=round(time.time(), 3), frame_time=None,
               end_time=round(end_time, 3), snapshot=None, end_reason=reason)
    msg.pop("stream_id", None)
    msg.pop("snapshot_error", None)
    if last.get("clip"):
        msg["clip"] = dict(last["clip"], end=round(end_time, 3))  # no post-roll: nobody watched after it
    return msg


def camera_message(cfg: Config, camera_id: str, state: str, detail: str, online: bool) -> dict[str, Any]:
    """A camera going offline or coming back: the room must see it (it can be tampering)."""
    cam = cfg.cameras[camera_id]
    return {
        "schema": SCHEMA_VERSION,
        "type": "camera",
        "id": message_id(),
        "phase": "online" if online else "offline",
        "time": round(time.time(), 3),
        "camera": {"id": camera_id, "name": cam.name},
        "grid_cell": grid_cell_ref(cfg, cam),
        "state": state,
        "detail": detail,
    }
