"""Incidents: the alerts of one camera and one zone or line that follow each other, handled as one room item.

A person walking about a lobby floor raises an intrusion, then a loitering alert, ends, comes back a
minute later and raises them again: for the room that is one thing to handle, not six.  So a new
alert of the same camera and the same zone or line (or the same rule, for a rule without one) joins
the open incident when it starts while one of that incident's alerts is still going on, or within the
rule's ``incident_window_s`` after the incident's last end (``alerts.incident_window_s``, default
120 s; 0: never joins), unless the incident began ``incident_max_s`` (default 3600 s) or longer before
the alert started: a camera that raises an alert every minute for hours is then one incident per hour,
not one swallowing the whole shift.  Rules of one zone that fire on the same person (intrusion, loitering,
crowding) land in one incident whose ``reasons`` list every rule that fired.

Nothing is dropped: every alert keeps its own row in ``alerts`` (with ``incident_id``) and all its
bus messages in ``alert_messages``; the incident is the id of its first alert, whose row carries the
workflow (acknowledge, dispatch, close) for all of them.  The workflow columns are copied to every
occurrence (when it joins and after every action), so searches and reports of single alerts see the
state of the incident they belong to.  An incident whose first alert was closed takes no new
occurrences: the next alert opens a new incident.

Entry points: :func:`assign` (the archiver, for an alert's first stored message), :func:`touch` (for
every later message), :func:`occurrences` (the room's list), :func:`mirror_workflow` (the workflow,
after an action) and :func:`head_of` (an action on any occurrence acts on its incident).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text, update

from history.schema import OPEN_STATES, alerts, incidents
from pipeline.config import Config

DEFAULT_WINDOW_S = 120.0
SEVERITIES = ("low", "medium", "high", "critical")
WORKFLOW_COLUMNS = ("state", "owner_id", "owner_name", "acknowledged_at", "acknowledged_by", "dispatch_step",
                    "dispatched_at", "signed_for_at", "on_scene_at", "feedback_at", "closed_at", "closed_by",
                    "classification", "close_comment")


@dataclass(frozen=True)
class Grouping:
    """Which incident key and window an alert message has, from the config's cameras and rules.

    Without a config (``Grouping()``) every alert is its own incident: a caller that cannot know the
    rules must not merge alerts the archiver would keep apart."""

    cfg: Config | None = None

    def of(self, msg: dict[str, Any]) -> tuple[str, float]:
        """(group key, window in seconds) of an alert message: ``zone:<name>``, ``line:<name>`` or ``rule:<id>``."""
        rule_id = str(msg["rule"]["id"])
        if self.cfg is None:
            return f"rule:{rule_id}", 0.0
        cam_id = msg["camera"]["id"]
        cam = self.cfg.cameras.get(cam_id)
        if cam is None:  # a camera removed from the config since: its own rules are unknown
            return f"rule:{rule_id}", self.cfg.alerts.incident_window_s
        window = self.cfg.camera_alerts(cam_id).incident_window_s
        rule = cam.effective_rules().get(rule_id)
        if rule is not None and rule.incident_window_s is not None:
            window = rule.incident_window_s
        zone, line = getattr(rule, "zone", None), getattr(rule, "line", None)
        key = f"zone:{zone}" if zone else f"line:{line}" if line else f"rule:{rule_id}"
        return key, window

    def max_s(self, msg: dict[str, Any]) -> float:
        """Seconds after an incident's first alert started after which this alert opens a new one (0: no cap)."""
        if self.cfg is None:
            return 0.0
        cam_id = msg["camera"]["id"]
        cam = self.cfg.cameras.get(cam_id)
        if cam is None:
            return self.cfg.alerts.incident_max_s
        cap = self.cfg.camera_alerts(cam_id).incident_max_s
        rule = cam.effective_rules().get(str(msg["rule"]["id"]))
        if rule is not None and rule.incident_max_s is not None:
            cap = rule.incident_max_s
        return cap


_configured: weakref.WeakKeyDictionary[Engine, Callable[[], Config]] = weakref.WeakKeyDictionary()


def configure(engine: Engine, config: Callable[[], Config]) -> None:
    """Group the alerts stored through ``engine`` by this config's rules (the archiver and the dashboard
    call it at start), so every path that stores an alert message (the archiver, the dashboard catching
    up with the bus) decides its incident the same way; ``config`` is called at each decision (reloads)."""
    _configured[engine] = config


def grouping_for(conn: Connection) -> Grouping:
    """The grouping configured for the connection's engine; none (every alert its own incident) if none was."""
    source = _configured.get(conn.engine)
    return Grouping(source() if source is not None else None)


def _sev_max(a: str, b: str) -> str:
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return a if rank.get(a, 1) >= rank.get(b, 1) else b


def _reason(msg: dict[str, Any]) -> dict[str, str]:
    return {"rule_id": str(msg["rule"]["id"]), "kind": str(msg["rule"]["kind"])}


def _end_of(msg: dict[str, Any]) -> float | None:
    if msg.get("phase") != "end":
        return None
    return float(msg.get("end_time") or msg["time"])


def assign(conn: Connection, alert_id: str, msg: dict[str, Any], grouping: Grouping) -> tuple[str, dict[str, Any]]:
    """The incident a new alert belongs to, joined or opened now, and the workflow columns its row starts with.

    Called once per alert, in the transaction that inserts its row (before the row exists)."""
    key, window = grouping.of(msg)
    cam = msg["camera"]["id"]
    start = float(msg.get("start_time") or msg["time"])
    t = float(msg["time"])
    sev = str(msg["rule"]["severity"])
    end = _end_of(msg)
    if window > 0:
        if conn.dialect.name == "postgresql":  # two writers deciding for one zone at once would both open one
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"incident|{cam}|{key}"})
        cand = conn.execute(
            select(incidents, *[alerts.c[c] for c in WORKFLOW_COLUMNS])
            .join(alerts, alerts.c.id == incidents.c.id)
            .where(incidents.c.camera_id == cam, incidents.c.group_key == key, alerts.c.state.in_(OPEN_STATES))
            .order_by(incidents.c.last_seen.desc()).limit(1)).first()
        if cand is not None:
            active = conn.execute(select(func.count()).select_from(alerts).where(
                alerts.c.incident_id == cand.id, alerts.c.phase != "end")).scalar_one()
            cap = grouping.max_s(msg)
            capped = cap > 0 and start >= cand.first_seen + cap  # long enough: a new room item from here on
            if not capped and (active or (cand.last_end is not None and start <= cand.last_end + window)):
                reasons = json.loads(cand.reasons or "[]")
                if _reason(msg) not in reasons:
                    reasons.append(_reason(msg))
                conn.execute(update(incidents).where(incidents.c.id == cand.id).values(
                    occurrences=incidents.c.occurrences + 1, first_seen=min(cand.first_seen, start),
                    last_seen=max(cand.last_seen, t), severity=_sev_max(cand.severity, sev),
                    last_end=max(cand.last_end or 0.0, end) if end is not None else cand.last_end,
                    reasons=json.dumps(reasons, separators=(",", ":"))))
                return cand.id, {c: cand._mapping[c] for c in WORKFLOW_COLUMNS}
    conn.execute(incidents.insert().values(
        id=alert_id, camera_id=cam, grid_cell_id=(msg.get("grid_cell") or {}).get("id") or "", group_key=key,
        first_seen=start, last_seen=t, last_end=end, occurrences=1, severity=sev,
        reasons=json.dumps([_reason(msg)], separators=(",", ":"))))
    return alert_id, {}


def touch(conn: Connection, incident_id: str | None, msg: dict[str, Any]) -> None:
    """A later message of one of the incident's alerts: it was seen now, and maybe ended."""
    if not incident_id:
        return
    t = float(msg["time"])
    values: dict[str, Any] = {"last_seen": func.max(incidents.c.last_seen, t) if conn.dialect.name == "sqlite"
                              else func.greatest(incidents.c.last_seen, t)}
    end = _end_of(msg)
    if end is not None:
        prev = func.coalesce(incidents.c.last_end, 0.0)
        values["last_end"] = func.max(prev, end) if conn.dialect.name == "sqlite" else func.greatest(prev, end)
    conn.execute(update(incidents).where(incidents.c.id == incident_id).values(**values))


def head_of(conn: Connection, alert_id: str) -> str:
    """The id of the alert whose row carries the workflow of ``alert_id``'s incident (itself when it is the first)."""
    inc = conn.execute(select(alerts.c.incident_id).where(alerts.c.id == alert_id)).scalar()
    return inc or alert_id


def mirror_workflow(conn: Connection, head_id: str) -> int:
    """Copy the incident's workflow columns from its first alert to its other occurrences; how many rows."""
    head = conn.execute(select(*[alerts.c[c] for c in WORKFLOW_COLUMNS]).where(alerts.c.id == head_id)).first()
    if head is None:
        return 0
    res = conn.execute(update(alerts).where(alerts.c.incident_id == head_id, alerts.c.id != head_id)
                       .values(**dict(head._mapping)))
    return int(res.rowcount or 0)


def is_head() -> Any:
    """The SQL condition "this alert row is an incident (its first alert), not a later occurrence"."""
    return (alerts.c.incident_id.is_(None)) | (alerts.c.incident_id == alerts.c.id)


def occurrences(conn: Connection, head_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each incident's occurrences as the room shows them: count, first and last seen, ids, reasons.

    An alert stored before incidents existed (no ``incidents`` row) is an incident of one."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(head_ids), 500):
        chunk = head_ids[i:i + 500]
        for r in conn.execute(select(incidents).where(incidents.c.id.in_(chunk))):
            out[r.id] = {"count": 0, "first_seen": r.first_seen, "last_seen": r.last_seen, "last_end": r.last_end,
                         "severity": r.severity, "group_key": r.group_key, "reasons": json.loads(r.reasons or "[]"),
                         "alert_ids": [], "active": 0, "active_ids": []}
        for a in conn.execute(select(alerts.c.id, alerts.c.incident_id, alerts.c.phase, alerts.c.start_time,
                                     alerts.c.updated_at, alerts.c.severity, alerts.c.rule_id, alerts.c.kind)
                              .where(alerts.c.incident_id.in_(chunk) | alerts.c.id.in_(chunk))
                              .order_by(alerts.c.start_time, alerts.c.id)):
            inc = a.incident_id or a.id
            o = out.setdefault(inc, {"count": 0, "first_seen": a.start_time, "last_seen": a.updated_at,
                                     "last_end": None, "severity": a.severity, "group_key": f"rule:{a.rule_id}",
                                     "reasons": [{"rule_id": a.rule_id, "kind": a.kind}], "alert_ids": [],
                                     "active": 0, "active_ids": []})
            if a.id in o["alert_ids"]:
                continue
            o["alert_ids"].append(a.id)
            o["count"] += 1
            if a.phase != "end":
                o["active"] += 1
                o["active_ids"].append(a.id)
    return out


def incident_of(conn: Connection, alert_id: str) -> str | None:
    """The incident id of a stored alert (its own id when first or stored before incidents); None if unknown."""
    row = conn.execute(select(alerts.c.id, alerts.c.incident_id).where(alerts.c.id == alert_id)).first()
    if row is None:
        return None
    return row.incident_id or row.id


def room_items(conn: Connection, views: list[dict[str, Any]],
               view: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """The room's list: the given alert views folded into one item per incident, in their order.

    An occurrence is replaced by its incident (its first alert, fetched with ``view`` when not among
    ``views``); each item gets ``camera_id``, ``incident_id`` and ``occurrences`` (count, first and last
    seen, the alert ids, the reasons, the highest severity, which are still going on).  A view of an
    alert not stored yet (straight from the bus) stays an item of its own."""
    ids = [v["alert_id"] for v in views]
    incident: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        for r in conn.execute(select(alerts.c.id, alerts.c.incident_id).where(alerts.c.id.in_(ids[i:i + 500]))):
            incident[r.id] = r.incident_id or r.id
    by_id = {v["alert_id"]: v for v in views}
    lacking = list({h for h in incident.values() if h not in by_id})
    for i in range(0, len(lacking), 500):
        for r in conn.execute(select(alerts).where(alerts.c.id.in_(lacking[i:i + 500]))):
            by_id[r.id] = view(r)
    occ = occurrences(conn, list(set(incident.values())))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for v in views:
        head = incident.get(v["alert_id"], v["alert_id"])
        if head in seen or head not in by_id:
            continue
        seen.add(head)
        item = lone_item(by_id[head])
        if head in occ:
            item["occurrences"] = occ[head]
        out.append(item)
    return out


def lone_item(view: dict[str, Any]) -> dict[str, Any]:
    """A room item of one alert (not stored yet, or stored before incidents): the fields every item has."""
    item = dict(view)
    rule = item.get("rule") or {}
    item["camera_id"] = (item.get("camera") or {}).get("id")
    item["incident_id"] = item["alert_id"]
    item["occurrences"] = {
        "count": 1, "first_seen": item.get("start_time"), "last_seen": item.get("time", item.get("start_time")),
        "last_end": item.get("end_time"), "severity": rule.get("severity"),
        "reasons": [{"rule_id": rule.get("id"), "kind": rule.get("kind")}], "alert_ids": [item["alert_id"]],
        "active": int(item.get("phase") != "end"),
        "active_ids": [item["alert_id"]] if item.get("phase") != "end" else []}
    return item


def incident_for_message(conn: Connection, sid: str | None, msg: dict[str, Any]) -> str:
    """The incident of a bus alert message, storing the message first when its alert is not stored yet
    (the live stream tells each page which room item a message belongs to, before the archiver may have
    stored it; storing is idempotent, so the archiver storing it too changes nothing)."""
    from history.archiver import store  # the archiver imports this module

    found = incident_of(conn, msg["alert_id"])
    if found is not None:
        return found
    store(conn, sid, msg)
    return incident_of(conn, msg["alert_id"]) or msg["alert_id"]
