"""The alert workflow: who does what to an alert, in which state, and what it becomes.

States (DOMAIN.md): 待处理 ``new`` → 已确认 ``acknowledged`` → 已派警 ``dispatched`` → 已处置
``resolved``, or 误报 ``false_alarm``.  Dispatch follows the 110 practice, one step at a time:
``sent`` → 已签收 ``signed_for`` → 已到场 ``on_scene`` → 已反馈 ``feedback``.

Ownership: whoever acknowledges owns the alert and every page shows "handled by X".  Only the
owner moves it on; anyone else must take it over explicitly (``take_over``), or the owner
forwards it to a named colleague with a message (``forward``).  Closing needs a classification
(genuine, false_alarm, duplicate, test) and a comment; a false alarm may be closed straight
from ``new`` (the operator who closes it becomes its owner).

Every action is one database transaction: the alert row (guarded by its ``version``, so two
operators clicking at once cannot both win) and one audit row, then it is pushed to every page.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from dashboard.users import User, from_row, get_user
from history.audit import record
from history.handling import close_blocked
from history.incidents import head_of, mirror_workflow
from history.refusal import Refused
from history.schema import CLASSIFICATIONS, DISPATCH_STEPS, OPEN_STATES, alerts

ACTIONS = ("acknowledge", "take_over", "forward", "dispatch", "signed_for", "on_scene", "feedback", "close",
           "note")
STEP_COLUMN = {"sent": "dispatched_at", "signed_for": "signed_for_at", "on_scene": "on_scene_at",
               "feedback": "feedback_at"}
MAX_NOTE = 2000
AT_SKEW_S = 30.0  # a dispatch step's reported time may run this far ahead of the server's clock
MAX_VERSION = 2**53  # versions are counters: anything larger is not one the page saw


class WorkflowError(Refused):
    """An action that is not allowed now; ``code`` is translated by the page."""

    default_status = 409


@dataclass
class Request:
    action: str
    note: str | None = None
    classification: str | None = None
    to: str | None = None  # forward: the colleague's user name
    at: float | None = None  # a dispatch step's time as the officer reported it (defaults to now)
    version: int | None = None  # the version the operator saw; a stale one is refused


def alert_view(row: Any) -> dict[str, Any]:
    """An alert as the page shows it (one shape for the list, the stream and the handling view)."""
    m = row._mapping if hasattr(row, "_mapping") else row
    return {
        "alert_id": m["id"], "type": "alert",
        "camera": {"id": m["camera_id"], "name": m["camera_name"]},
        "grid_cell": {"id": m["grid_cell_id"], "name": m["grid_cell_name"],
                      "officer": {"name": m["officer_name"], "phone": m["officer_phone"]}
                      if m["officer_name"] else None},
        "rule": {"id": m["rule_id"], "kind": m["kind"], "severity": m["severity"], "name": _rule_name(m)},
        "labels": [x for x in m["labels"].split(",") if x], "score": m["score"],
        "start_time": m["start_time"], "end_time": m["end_time"], "phase": m["phase"],
        "snapshot": {"path": m["snapshot_path"]} if m["snapshot_path"] else None,
        "state": m["state"], "version": m["version"],
        "owner": {"id": m["owner_id"], "name": m["owner_name"]} if m["owner_id"] else None,
        "acknowledged_at": m["acknowledged_at"], "acknowledged_by": m["acknowledged_by"],
        "dispatch": {"step": m["dispatch_step"], "sent_at": m["dispatched_at"], "signed_for_at": m["signed_for_at"],
                     "on_scene_at": m["on_scene_at"], "feedback_at": m["feedback_at"]},
        "closed_at": m["closed_at"], "closed_by": m["closed_by"], "classification": m["classification"],
        "close_comment": m["close_comment"], "escalation_level": m["escalation_level"],
        "escalated_at": m["escalated_at"], "end_reason": _end_reason(m),
        "escalation_step": m.get("escalation_step"), "overdue": overdue_step(m),
        "incident_id": m.get("incident_id") or m["id"],
    }


# the step an open alert waits for, by what was done last: each has its own deadline and escalation level
WAITING_FOR = {None: "signed_for", "sent": "signed_for", "signed_for": "on_scene", "on_scene": "feedback"}


def waiting_step(m: Any) -> str | None:
    """acknowledge (new), signed_for / on_scene / feedback (dispatched), else None: no deadline runs."""
    if m["state"] == "new":
        return "acknowledge"
    if m["state"] == "dispatched":
        return WAITING_FOR.get(m["dispatch_step"])
    return None


def overdue_step(m: Any) -> str | None:
    """The step that is late: escalated for the step the alert still waits for (a level of a step done is spent)."""
    step = waiting_step(m)
    if step is None or not m["escalation_level"]:
        return None
    counted = m.get("escalation_step")
    return step if counted in (None, step) else None


def _rule_name(m: Any) -> str | None:
    """The rule's name for operators, as its last bus message carried it (config rules.<id>.name); None: its kind."""
    try:
        name = (json.loads(m["message"]).get("rule") or {}).get("name") if m.get("message") else None
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def _end_reason(m: Any) -> str | None:
    """Why nobody saw the alert end (``worker restarted``), from its last bus message; None for a normal end."""
    if m["phase"] != "end" or "message" not in m or not m["message"]:
        return None
    try:
        reason = json.loads(m["message"]).get("end_reason")
    except (ValueError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


def _note(text: str | None, required: bool = False) -> str | None:
    text = (text or "").strip()
    if required and not text:
        raise WorkflowError("comment_required", 400)
    if len(text) > MAX_NOTE:
        raise WorkflowError("note_too_long", 400, max=MAX_NOTE)
    return text or None


def apply(conn: Connection, alert_id: str, user: User, req: Request, remote: str | None = None,
          now: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Do one action; returns (the alert as now, the audit row).  Raises WorkflowError when not allowed."""
    now = time.time() if now is None else now
    row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    if row is not None and row.incident_id and row.incident_id != row.id:  # an occurrence: its incident is handled
        alert_id = row.incident_id
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None or not user.sees_cell(row.grid_cell_id):
        raise WorkflowError("not_found", 404)
    if req.action not in ACTIONS:
        raise WorkflowError("unknown_action", 400)
    if req.version is not None and (not 0 <= req.version <= MAX_VERSION or req.version != row.version):
        raise WorkflowError("stale", 409, version=row.version)
    state = row.state
    is_open = state in OPEN_STATES
    owner_is_me = row.owner_id == user.id
    values: dict[str, Any] = {}
    data: dict[str, Any] = {}
    note = _note(req.note)
    new_state = state

    def must_own() -> None:
        if row.owner_id is not None and not owner_is_me:
            raise WorkflowError("owned_by_other", 409, owner=row.owner_name)

    if req.action == "acknowledge":
        if state != "new":
            raise WorkflowError("not_new", 409, state=state)
        new_state = "acknowledged"
        values.update(owner_id=user.id, owner_name=user.display_name, acknowledged_at=now,
                      acknowledged_by=user.display_name)
    elif req.action == "take_over":
        if not is_open:
            raise WorkflowError("closed", 409)
        if owner_is_me:
            raise WorkflowError("already_owner", 409)
        data.update({"from": row.owner_name, "from_id": row.owner_id})  # from_id: whom the page notifies
        values.update(owner_id=user.id, owner_name=user.display_name)
        if state == "new":
            new_state = "acknowledged"
            values.update(acknowledged_at=now, acknowledged_by=user.display_name)
    elif req.action == "forward":
        if not is_open:
            raise WorkflowError("closed", 409)
        must_own()
        target_row = get_user(conn, req.to or "")
        target = from_row(target_row) if target_row is not None else None
        if target is None or target.disabled or not target.sees_cell(row.grid_cell_id):
            raise WorkflowError("bad_forward_target", 400)
        note = _note(req.note, required=True)
        data.update(to=target.username, to_name=target.display_name, from_name=row.owner_name)
        values.update(owner_id=target.id, owner_name=target.display_name)
        if state == "new":
            new_state = "acknowledged"
            values.update(acknowledged_at=now, acknowledged_by=user.display_name)
    elif req.action in ("dispatch", "signed_for", "on_scene", "feedback"):
        step = "sent" if req.action == "dispatch" else req.action
        if not is_open:
            raise WorkflowError("closed", 409)
        if state == "new":
            raise WorkflowError("acknowledge_first", 409)
        must_own()
        expected = DISPATCH_STEPS.index(row.dispatch_step) + 1 if row.dispatch_step else 0
        if DISPATCH_STEPS.index(step) != expected:
            raise WorkflowError("wrong_step", 409, step=row.dispatch_step)
        at = now if req.at is None else float(req.at)
        # a reported time: finite, not before the alert started, not after now (a few seconds of clock skew)
        if not math.isfinite(at) or at < row.start_time or at > now + AT_SKEW_S:
            raise WorkflowError("bad_time", 400, field="at")
        at = min(at, now)
        values.update({"dispatch_step": step, STEP_COLUMN[step]: at})
        if step == "sent":
            new_state = "dispatched"
            data.update(officer=row.officer_name, phone=row.officer_phone)
        data["step"] = step
        data["at"] = at
    elif req.action == "close":
        if not is_open:
            raise WorkflowError("closed", 409)
        must_own()
        if req.classification not in CLASSIFICATIONS:
            raise WorkflowError("classification_required", 400)
        if (blocked := close_blocked(conn, row)) is not None:  # the rule's policy: not while the condition lasts
            raise WorkflowError("condition_active", 409, **blocked)
        note = _note(req.note, required=True)
        new_state = "false_alarm" if req.classification == "false_alarm" else "resolved"
        values.update(closed_at=now, closed_by=user.display_name, classification=req.classification,
                      close_comment=note)
        if row.owner_id is None:
            values.update(owner_id=user.id, owner_name=user.display_name)
        data["classification"] = req.classification
    elif req.action == "note":
        note = _note(req.note, required=True)
    values["state"] = new_state
    values["version"] = row.version + 1
    if new_state != state or "dispatch_step" in values:  # the next step has its own deadline: the level starts over
        values.update(escalation_level=0, escalation_step=None)
    res = conn.execute(update(alerts).where(alerts.c.id == alert_id, alerts.c.version == row.version)
                       .values(**values))
    if res.rowcount != 1:
        raise WorkflowError("stale", 409)
    mirror_workflow(conn, alert_id)  # the incident's other occurrences show its state
    act = record(conn, req.action, user_id=user.id, username=user.username, alert_id=alert_id,
                 grid_cell_id=row.grid_cell_id, from_state=state, to_state=new_state, note=note,
                 data=dict(data, by=user.display_name), remote=remote, at=now)
    fresh = conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()
    return alert_view(fresh), act


def action_message(alert: dict[str, Any], act: dict[str, Any]) -> str:
    """What goes on the actions stream for the pages: the alert as now and the step just done."""
    return json.dumps({"type": "action", "alert": alert, "action": act}, separators=(",", ":"), ensure_ascii=False)



# ------------------------------------------------------------------ the officer's phone link

LINK_TTL_S = 24 * 3600.0
OFFICER_STEPS = ("signed_for", "on_scene", "feedback")


def create_link(conn: Connection, alert_id: str, user: User, now: float | None = None) -> str:
    """A new one-time link for the dispatched officer (older ones of the alert stop working); the token.

    Only the token's hash is stored, and the token is never written to the audit log: it is shown
    once to the operator, who sends it to the officer's phone.
    """
    import secrets

    from dashboard.security import token_hash
    from history.schema import dispatch_links

    now = time.time() if now is None else now
    alert_id = head_of(conn, alert_id)  # the link reports the steps of the incident, whichever occurrence was picked
    row = conn.execute(select(alerts.c.officer_name, alerts.c.state, alerts.c.owner_id, alerts.c.grid_cell_id)
                       .where(alerts.c.id == alert_id)).first()
    if row is None or not user.sees_cell(row.grid_cell_id):
        raise WorkflowError("not_found", 404)
    if row.state != "dispatched":
        raise WorkflowError("not_dispatched", 409)
    if row.owner_id is not None and row.owner_id != user.id:
        raise WorkflowError("owned_by_other", 409)
    conn.execute(update(dispatch_links).where(dispatch_links.c.alert_id == alert_id,
                                              dispatch_links.c.revoked_at.is_(None)).values(revoked_at=now))
    token = secrets.token_urlsafe(24)
    conn.execute(dispatch_links.insert().values(id=token_hash(token), alert_id=alert_id, officer_name=row.officer_name,
                                                created_at=now, created_by=user.username, expires_at=now + LINK_TTL_S))
    return token


def link_alert(conn: Connection, token: str, now: float | None = None) -> Any:
    """The alert row a live link points to, or None (unknown, replaced, expired, dispatch finished)."""
    from dashboard.security import token_hash
    from history.schema import dispatch_links

    now = time.time() if now is None else now
    if not token or len(token) > 100:
        return None
    return conn.execute(select(alerts).join(dispatch_links, dispatch_links.c.alert_id == alerts.c.id).where(
        dispatch_links.c.id == token_hash(token), dispatch_links.c.revoked_at.is_(None),
        dispatch_links.c.expires_at > now)).first()


def officer_step(conn: Connection, token: str, step: str, note: str | None = None, remote: str | None = None,
                 now: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The officer reports a dispatch step from the phone page; the last step (feedback) ends the link."""
    from dashboard.security import token_hash
    from history.schema import dispatch_links

    now = time.time() if now is None else now
    row = link_alert(conn, token, now)
    if row is None:
        raise WorkflowError("link_invalid", 404)
    if step not in OFFICER_STEPS:
        raise WorkflowError("unknown_action", 400)
    if row.state != "dispatched":
        raise WorkflowError("closed", 409)
    expected = DISPATCH_STEPS.index(row.dispatch_step) + 1 if row.dispatch_step else 0
    if DISPATCH_STEPS.index(step) != expected:
        raise WorkflowError("wrong_step", 409, step=row.dispatch_step)
    note = _note(note)
    res = conn.execute(update(alerts).where(alerts.c.id == row.id, alerts.c.version == row.version)
                       .values({"dispatch_step": step, STEP_COLUMN[step]: now, "version": row.version + 1,
                                "escalation_level": 0, "escalation_step": None}))
    if res.rowcount != 1:
        raise WorkflowError("stale", 409)
    mirror_workflow(conn, row.id)
    if step == "feedback":
        conn.execute(update(dispatch_links).where(dispatch_links.c.id == token_hash(token)).values(revoked_at=now))
    act = record(conn, step, alert_id=row.id, grid_cell_id=row.grid_cell_id, from_state=row.state,
                 to_state=row.state, note=note, remote=remote, at=now,
                 data={"step": step, "at": now, "by": row.officer_name or "officer", "via": "link"})
    fresh = conn.execute(select(alerts).where(alerts.c.id == row.id)).one()
    return alert_view(fresh), act
