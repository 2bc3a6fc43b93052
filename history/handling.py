"""Per-rule handling policy: when an incident may be closed, and what the system does by itself.

Each rule has ``handling`` (pipeline/config/schema.py ``HandlingPolicy``), tamper alerts have
``cameras.<id>.tamper.handling``:

- ``close_while_active`` false: an operator cannot close the incident while one of its alerts is still
  going on (a camera still dark, covered, blurred or moved): :func:`close_blocked` names the condition and
  the workflow answers 409 ``condition_active``.  Tamper alerts default to false.
- ``close_on_clear`` true: once none of the incident's alerts is going on any more (each has its ``end``
  message stored), the system closes it (outcome genuine), audited as the system.  A dispatched incident
  is left to its officer's steps.  Tamper alerts default to true.
- ``auto_acknowledge`` (rules of severity low only): the system acknowledges a new incident at once,
  audited as the system, so it neither waits as new nor escalates for acknowledgement.

The automatic steps (:func:`auto_step`) run in the dashboard's once-a-second check beside escalation, from
the stored rows, so it does not matter which process stored the ``end``.  Camera offline is not an alert
(a camera message and a patrol fault), so it has no incident to hold open.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from history.audit import record
from history.incidents import grouping_for, is_head, mirror_workflow
from history.schema import alerts
from pipeline.config import Config
from pipeline.config.schema import HandlingPolicy

CONDITION_KINDS = ("tamper",)  # rule kinds whose alert is a lasting condition of the camera
SYSTEM = "system"


def policy(cfg: Config | None, camera_id: str, rule_id: str, kind: str) -> tuple[bool, bool, bool]:
    """(close_while_active, close_on_clear, auto_acknowledge) of an alert's rule, defaults filled in."""
    condition = kind in CONDITION_KINDS
    cam = cfg.cameras.get(camera_id) if cfg is not None else None
    if cam is None:  # no config, or a camera removed since: the kind's defaults
        return HandlingPolicy().effective(condition)
    if kind == "tamper":
        return cam.tamper.handling.effective(True)
    rule = cam.effective_rules().get(rule_id)
    return (rule.handling if rule is not None else HandlingPolicy()).effective(condition)


def active_occurrences(conn: Connection, head_id: str) -> list[Any]:
    """The incident's alerts still going on (no ``end`` stored): id, rule and kind."""
    return list(conn.execute(select(alerts.c.id, alerts.c.rule_id, alerts.c.kind).where(
        or_(alerts.c.id == head_id, alerts.c.incident_id == head_id), alerts.c.phase != "end")).all())


def close_blocked(conn: Connection, row: Any) -> dict[str, Any] | None:
    """Why the incident whose first alert is ``row`` cannot be closed now: {condition, camera}, or None.

    The config is the one the engine was configured with (``history.incidents.configure``)."""
    cfg = grouping_for(conn).cfg
    if policy(cfg, row.camera_id, row.rule_id, row.kind)[0]:
        return None
    going = active_occurrences(conn, row.id)
    if not going:
        return None
    return {"condition": ", ".join(sorted({a.rule_id for a in going})), "camera": row.camera_id}


def candidates(conn: Connection) -> list[Any]:
    """Incidents an automatic step may apply to: new ones, and acknowledged ones whose first alert ended."""
    return list(conn.execute(select(alerts).where(is_head(), or_(
        alerts.c.state == "new", and_(alerts.c.state == "acknowledged", alerts.c.phase == "end")))).all())


def auto_step(conn: Connection, cfg: Config | None, row: Any, now: float) -> dict[str, Any] | None:
    """Close (condition cleared) or acknowledge (automatic) one incident if its rule's policy says so; the
    audit row, or None when nothing is due.  Guarded by the row's version: an operator acting at the same
    moment wins and the step is tried again next time."""
    _, on_clear, auto_ack = policy(cfg, row.camera_id, row.rule_id, row.kind)
    values: dict[str, Any]
    if on_clear and row.phase == "end" and not active_occurrences(conn, row.id):
        n = conn.execute(select(func.count()).select_from(alerts).where(
            or_(alerts.c.id == row.id, alerts.c.incident_id == row.id))).scalar_one()
        values = {"state": "resolved", "closed_at": now, "closed_by": SYSTEM, "classification": "genuine"}
        action, data = "close", {"classification": "genuine", "auto": "condition_cleared", "rule": row.rule_id,
                                 "occurrences": n}
    elif auto_ack and row.state == "new":
        values = {"state": "acknowledged", "acknowledged_at": now, "acknowledged_by": SYSTEM}
        action, data = "acknowledge", {"auto": "auto_acknowledge", "rule": row.rule_id, "severity": row.severity}
    else:
        return None
    res = conn.execute(update(alerts).where(alerts.c.id == row.id, alerts.c.version == row.version)
                       .values(version=row.version + 1, escalation_level=0, escalation_step=None, **values))
    if res.rowcount != 1:
        return None
    mirror_workflow(conn, row.id)
    return record(conn, action, alert_id=row.id, grid_cell_id=row.grid_cell_id, from_state=row.state,
                  to_state=values["state"], data=data, at=now)
