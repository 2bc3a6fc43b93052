"""Video patrol (视频巡查): plans, patrols and their marks, camera faults, alarms raised by hand, reports.

A **plan** is a named, ordered list of cameras, each with its dwell (seconds on screen), and an
optional schedule (every N minutes between two times of day, in the config's zone).  Running a plan
opens a **patrol**: the wall tours the cameras and reports, per camera, how long it was actually on
screen and whether it had a picture; the operator marks each one 正常 ``normal``, 发现情况 ``finding``
(a note and a snapshot from the live frame) or 故障 ``fault`` (no picture, blurred, moved, dark, wrong
time).  A camera shown for less than its dwell, or without a picture, is *not patrolled*.

A finding raises a **manual alarm**: an ``alerts`` row and a bus message of type ``alert`` (rule kind
``patrol_finding``), so it reaches every command room and goes through the same workflow as a detected
alert (acknowledge, dispatch, 签收/到场/反馈, close with a classification).  A citizen's phone call (报警)
raises one with no camera (kind ``phone_report``): a grid cell, the caller, the phone, what was reported;
cameras and a time range are attached later.  ``manual_alarms`` keeps what only a manual alarm has.

**Faults** go on a list per cell: marked by an operator, found by the tour (a camera with no picture),
or by a check (a camera the pipeline has reported offline, or a tamper alert has held, for longer than
``dashboard.fault_after_s``); each has its start time and who or which check found it, and a repair that
is requested and then done.

Scopes are the command room's: a user sees a plan, a patrol, a fault or a manual alarm only when every
one of its grid cells is theirs; anything else answers as unknown (``not_found``).  Every change is in
the audit log (``history.audit.record``).  Users are passed as anything shaped like the dashboard's
``User`` (this layer does not import the dashboard).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, or_, select, update

from history.archiver import store
from history.audit import record
from history.refusal import Refused
from history.schema import (
    FAULT_KINDS,
    PATROL_MARKS,
    alerts,
    camera_events,
    camera_faults,
    manual_alarms,
    patrol_marks,
    patrol_plans,
    patrols,
)
from pipeline.config import Config
from pipeline.publish import bus
from pipeline.publish.bus import SCHEMA_VERSION

log = logging.getLogger("sharpeye.patrol")
MARK_FAULT_KINDS = ("no_picture", "blurred", "moved", "dark", "wrong_time")  # what an operator can mark
DWELL_TOLERANCE_S = 0.5  # a camera shown this much less than its dwell still counts (timer granularity)
OFFLINE_CHECK, TAMPER_CHECK = "offline_check", "tamper_check"  # the checks that list faults (``reported_by``)
TAMPER_KIND = "tamper"  # the rule kind of the workers' tamper alerts (rule id ``tamper:<dark|covered|blur|moved>``)
MAX_SNAPSHOT_BYTES = 2_000_000
FINDING_KIND = "patrol_finding"
PHONE_KIND = "phone_report"


class Actor(Protocol):
    """The user doing something (the dashboard's ``User`` has this shape)."""

    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    def sees_cell(self, cell: str | None) -> bool: ...

    def all_cells(self) -> bool: ...


class PatrolError(Refused):
    """A request that cannot be done; ``code`` is translated by the page, ``status`` is the HTTP answer."""


def _sees_all(actor: Actor, cells: list[str]) -> bool:
    return actor.all_cells() or all(actor.sees_cell(c) for c in cells)


def _loads(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


def _camera(cfg: Config, actor: Actor, camera: str) -> Any:
    """The camera's config, or not_found (unknown, or of a cell the user does not have)."""
    cam = cfg.cameras.get(camera)
    if cam is None or not actor.sees_cell(cam.grid_cell):
        raise PatrolError("not_found", 404, camera=camera)
    return cam


# ------------------------------------------------------------------------------------------------ plans

@dataclass
class PlanCamera:
    camera: str
    dwell_s: float


@dataclass
class Schedule:
    """Every ``every_min`` minutes from ``start`` to ``end`` (HH:MM, may cross midnight), late after ``grace_min``."""

    every_min: int
    start: str = "00:00"
    end: str = "00:00"
    grace_min: int = 15


def _hhmm(text: str, field: str) -> dt.time:
    try:
        h, m = text.split(":")
        return dt.time(int(h), int(m))
    except (ValueError, TypeError):
        raise PatrolError("bad_time", 400, field=field, value=text) from None


def plan_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "description": row.description,
            "cameras": _loads(row.cameras, []), "grid_cells": _loads(row.grid_cells, []),
            "schedule": _loads(row.schedule, None), "updated_at": row.updated_at, "updated_by": row.updated_by,
            "created_by": row.created_by, "version": row.version}


def list_plans(conn: Connection, actor: Actor) -> list[dict[str, Any]]:
    rows = conn.execute(select(patrol_plans).where(patrol_plans.c.deleted_at.is_(None))
                        .order_by(patrol_plans.c.name))
    return [plan_view(r) for r in rows if _sees_all(actor, _loads(r.grid_cells, []))]


def _plan_row(conn: Connection, actor: Actor, plan_id: int) -> Any:
    row = conn.execute(select(patrol_plans).where(patrol_plans.c.id == plan_id,
                                                  patrol_plans.c.deleted_at.is_(None))).first()
    if row is None or not _sees_all(actor, _loads(row.grid_cells, [])):
        raise PatrolError("not_found", 404)
    return row


def get_plan(conn: Connection, actor: Actor, plan_id: int) -> dict[str, Any]:
    return plan_view(_plan_row(conn, actor, plan_id))


def save_plan(conn: Connection, cfg: Config, actor: Actor, plan_id: int | None, name: str, description: str,
              cameras: list[PlanCamera], schedule: Schedule | None, version: int | None = None,
              remote: str | None = None) -> dict[str, Any]:
    """Create (``plan_id`` None) or replace a plan; every camera must be known and in the user's cells."""
    name = name.strip()
    if not name:
        raise PatrolError("name_required", 400)
    if not cameras:
        raise PatrolError("cameras_required", 400)
    seen: set[str] = set()
    cells: list[str] = []
    for c in cameras:
        if c.camera in seen:
            raise PatrolError("duplicate_camera", 400, camera=c.camera)
        seen.add(c.camera)
        cam = _camera(cfg, actor, c.camera)
        if cam.grid_cell not in cells:
            cells.append(cam.grid_cell)
    sched = None
    if schedule is not None:
        _hhmm(schedule.start, "schedule.start")
        _hhmm(schedule.end, "schedule.end")
        sched = json.dumps({"every_min": schedule.every_min, "start": schedule.start, "end": schedule.end,
                            "grace_min": schedule.grace_min})
    now = time.time()
    values = {"name": name, "description": description.strip(),
              "cameras": json.dumps([{"camera": c.camera, "dwell_s": c.dwell_s} for c in cameras]),
              "grid_cells": json.dumps(sorted(cells)), "schedule": sched, "updated_at": now,
              "updated_by": actor.username}
    clash = conn.execute(select(patrol_plans.c.id).where(patrol_plans.c.name == name)).first()
    if clash is not None and clash.id != plan_id:
        raise PatrolError("name_taken", 409, name=name)
    if plan_id is None:
        res = conn.execute(patrol_plans.insert().values(created_at=now, created_by=actor.username, **values))
        plan_id = int(res.inserted_primary_key[0]) if res.inserted_primary_key else None
        action = "patrol_plan_create"
    else:
        row = _plan_row(conn, actor, plan_id)
        if version is not None and version != row.version:
            raise PatrolError("stale", 409, version=row.version)
        conn.execute(update(patrol_plans).where(patrol_plans.c.id == plan_id)
                     .values(version=row.version + 1, **values))
        action = "patrol_plan_update"
    assert plan_id is not None
    plan = get_plan(conn, actor, plan_id)
    record(conn, action, user_id=actor.id, username=actor.username, grid_cell_id=cells[0] if len(cells) == 1 else None,
           data={"plan": plan_id, "name": name, "cameras": [c.camera for c in cameras],
                 "schedule": plan["schedule"]}, remote=remote)
    return plan


def delete_plan(conn: Connection, actor: Actor, plan_id: int, remote: str | None = None) -> None:
    row = _plan_row(conn, actor, plan_id)
    conn.execute(update(patrol_plans).where(patrol_plans.c.id == plan_id)
                 .values(deleted_at=time.time(), name=f"{row.name[:100]}~{plan_id}", version=row.version + 1))
    record(conn, "patrol_plan_delete", user_id=actor.id, username=actor.username,
           data={"plan": plan_id, "name": row.name}, remote=remote)


# ---------------------------------------------------------------------------------------------- patrols

def _patrol_row(conn: Connection, actor: Actor, patrol_id: str, mine: bool = False) -> Any:
    """The patrol, when the user sees all its cells; ``mine``: it must also be the user's own and running."""
    row = conn.execute(select(patrols).where(patrols.c.id == patrol_id)).first()
    if row is None or not _sees_all(actor, _loads(row.grid_cells, [])):
        raise PatrolError("not_found", 404)
    if mine:
        if row.user_id != actor.id:
            raise PatrolError("not_your_patrol", 403, by=row.display_name)
        if row.state != "running":
            raise PatrolError("patrol_finished", 409)
    return row


def start_patrol(conn: Connection, cfg: Config, actor: Actor, plan_id: int, layout: int = 1,
                 remote: str | None = None) -> dict[str, Any]:
    """Open a patrol of the plan, with the plan's cameras as they are now (later edits do not change it)."""
    plan = _plan_row(conn, actor, plan_id)
    planned = [c for c in _loads(plan.cameras, []) if c["camera"] in cfg.cameras]
    pid = secrets.token_hex(8)
    now = time.time()
    conn.execute(patrols.insert().values(id=pid, plan_id=plan_id, plan_name=plan.name, planned=json.dumps(planned),
                                         grid_cells=plan.grid_cells, user_id=actor.id, username=actor.username,
                                         display_name=actor.display_name, layout=layout, state="running",
                                         started_at=now))
    record(conn, "patrol_start", user_id=actor.id, username=actor.username,
           data={"patrol": pid, "plan": plan_id, "name": plan.name, "cameras": len(planned)}, remote=remote, at=now)
    return patrol_log(conn, cfg, actor, pid)


def _mark_row(conn: Connection, row: Any, cfg: Config, camera: str, now: float) -> Any:
    """The patrol's row for ``camera``, made on first use; the camera must be in the patrol's plan."""
    if camera not in {c["camera"] for c in _loads(row.planned, [])}:
        raise PatrolError("not_in_plan", 400, camera=camera)
    m = conn.execute(select(patrol_marks).where(patrol_marks.c.patrol_id == row.id,
                                                patrol_marks.c.camera_id == camera)).first()
    if m is None:
        cam = cfg.cameras.get(camera)
        conn.execute(patrol_marks.insert().values(patrol_id=row.id, camera_id=camera, first_shown_at=now,
                                                  grid_cell_id=cam.grid_cell if cam else "", on_screen_s=0.0))
        m = conn.execute(select(patrol_marks).where(patrol_marks.c.patrol_id == row.id,
                                                    patrol_marks.c.camera_id == camera)).one()
    return m


def record_view(conn: Connection, cfg: Config, actor: Actor, patrol_id: str, camera: str, on_screen_s: float,
                offline: bool, offline_since: float | None = None) -> dict[str, Any]:
    """The tour showed ``camera`` for ``on_screen_s`` seconds (added up over showings); ``offline``: it had
    no picture, so it was skipped and goes on the fault list (since the camera's last frame, when known)."""
    now = time.time()
    row = _patrol_row(conn, actor, patrol_id, mine=True)
    m = _mark_row(conn, row, cfg, camera, now)
    values: dict[str, Any] = {"on_screen_s": m.on_screen_s + on_screen_s}
    if offline:
        values["offline"] = True
    conn.execute(update(patrol_marks).where(patrol_marks.c.id == m.id).values(**values))
    if offline:
        add_fault(conn, cfg, camera, "no_picture", offline_since or now, "tour", actor.username, patrol_id)
    return patrol_log(conn, cfg, actor, patrol_id)


def mark_camera(conn: Connection, cfg: Config, actor: Actor, patrol_id: str, camera: str, mark: str,
                fault_kind: str | None = None, note: str | None = None, alert_id: str | None = None,
                snapshot_path: str | None = None, remote: str | None = None) -> dict[str, Any]:
    """Set the camera's mark in the patrol (a later mark replaces an earlier one; a finding keeps its alarm)."""
    if mark not in PATROL_MARKS:
        raise PatrolError("bad_mark", 400, mark=mark)
    if mark == "fault" and fault_kind not in MARK_FAULT_KINDS:
        raise PatrolError("fault_kind_required", 400)
    note = (note or "").strip() or None
    if mark == "finding" and not note:
        raise PatrolError("note_required", 400)
    now = time.time()
    row = _patrol_row(conn, actor, patrol_id, mine=True)
    m = _mark_row(conn, row, cfg, camera, now)
    conn.execute(update(patrol_marks).where(patrol_marks.c.id == m.id).values(
        mark=mark, fault_kind=fault_kind if mark == "fault" else None, note=note, marked_at=now,
        alert_id=alert_id or m.alert_id, snapshot_path=snapshot_path or m.snapshot_path))
    if mark == "fault":
        assert fault_kind is not None
        add_fault(conn, cfg, camera, fault_kind, now, "patrol", actor.username, patrol_id, note)
    record(conn, "patrol_mark", user_id=actor.id, username=actor.username, alert_id=alert_id,
           grid_cell_id=m.grid_cell_id, note=note,
           data={"patrol": patrol_id, "camera": camera, "mark": mark, "fault_kind": fault_kind}, remote=remote, at=now)
    return patrol_log(conn, cfg, actor, patrol_id)


def finish_patrol(conn: Connection, cfg: Config, actor: Actor, patrol_id: str,
                  remote: str | None = None) -> dict[str, Any]:
    row = _patrol_row(conn, actor, patrol_id, mine=True)
    now = time.time()
    conn.execute(update(patrols).where(patrols.c.id == patrol_id).values(state="finished", ended_at=now))
    out = patrol_log(conn, cfg, actor, patrol_id)
    record(conn, "patrol_finish", user_id=actor.id, username=actor.username,
           data={"patrol": patrol_id, "plan": row.plan_id, "planned": out["planned_count"],
                 "patrolled": out["patrolled_count"], "not_patrolled": out["not_patrolled"]}, remote=remote, at=now)
    return out


def patrol_log(conn: Connection, cfg: Config, actor: Actor, patrol_id: str) -> dict[str, Any]:
    """The patrol record: every planned camera in order with its mark, time on screen and whether it was patrolled."""
    row = _patrol_row(conn, actor, patrol_id)
    marks = {m.camera_id: m for m in conn.execute(select(patrol_marks).where(patrol_marks.c.patrol_id == patrol_id))}
    cams = []
    for i, p in enumerate(_loads(row.planned, [])):
        m = marks.get(p["camera"])
        cam = cfg.cameras.get(p["camera"])
        shown = m.on_screen_s if m else 0.0
        offline = bool(m.offline) if m else False
        cams.append({
            "position": i, "camera": p["camera"], "name": cam.name if cam else p["camera"],
            "grid_cell": cam.grid_cell if cam else None, "dwell_s": p["dwell_s"], "on_screen_s": round(shown, 2),
            "offline": offline, "patrolled": (not offline) and shown >= p["dwell_s"] - DWELL_TOLERANCE_S,
            "mark": m.mark if m else None, "fault_kind": m.fault_kind if m else None, "note": m.note if m else None,
            "alert_id": m.alert_id if m else None, "snapshot": m.snapshot_path if m else None,
            "first_shown_at": m.first_shown_at if m else None})
    patrolled = [c for c in cams if c["patrolled"]]
    return {"id": row.id, "plan_id": row.plan_id, "plan_name": row.plan_name, "state": row.state,
            "user": {"id": row.user_id, "username": row.username, "name": row.display_name},
            "layout": row.layout, "started_at": row.started_at, "ended_at": row.ended_at, "cameras": cams,
            "planned_count": len(cams), "patrolled_count": len(patrolled),
            "coverage": round(100.0 * len(patrolled) / len(cams), 1) if cams else None,
            "not_patrolled": [c["camera"] for c in cams if not c["patrolled"]]}


def list_patrols(conn: Connection, cfg: Config, actor: Actor, since: float, until: float,
                 limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(select(patrols.c.id, patrols.c.grid_cells).where(patrols.c.started_at >= since,
                                                                         patrols.c.started_at < until)
                        .order_by(patrols.c.started_at.desc()).limit(limit))
    return [patrol_log(conn, cfg, actor, r.id) for r in rows if _sees_all(actor, _loads(r.grid_cells, []))]


# ----------------------------------------------------------------------------------------------- faults

def fault_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "camera": row.camera_id, "camera_name": row.camera_name, "grid_cell": row.grid_cell_id,
            "kind": row.kind, "since": row.since, "source": row.source, "reported_by": row.reported_by,
            "patrol_id": row.patrol_id, "note": row.note, "state": row.state,
            "check": row.reported_by if row.source == "check" else None,
            "repair_requested_at": row.repair_requested_at, "repair_requested_by": row.repair_requested_by,
            "repaired_at": row.repaired_at, "repaired_by": row.repaired_by}


def add_fault(conn: Connection, cfg: Config, camera: str, kind: str, since: float, source: str, reported_by: str,
              patrol_id: str | None = None, note: str | None = None) -> dict[str, Any]:
    """List a fault; a camera with an unrepaired fault of the same kind keeps that one (the earliest start)."""
    if kind not in FAULT_KINDS:
        raise PatrolError("bad_fault_kind", 400, kind=kind)
    open_row = conn.execute(select(camera_faults).where(camera_faults.c.camera_id == camera,
                                                        camera_faults.c.kind == kind,
                                                        camera_faults.c.state != "repaired")).first()
    if open_row is not None:
        return fault_view(open_row)
    cam = cfg.cameras.get(camera)
    cell = cam.grid_cell if cam else ""
    now = time.time()
    res = conn.execute(camera_faults.insert().values(
        camera_id=camera, camera_name=cam.name if cam else camera, grid_cell_id=cell, kind=kind,
        since=min(since, now), source=source, reported_by=reported_by, patrol_id=patrol_id, note=note,
        state="open", created_at=now))
    fid = res.inserted_primary_key[0] if res.inserted_primary_key else None
    record(conn, "camera_fault", username=None if source == "check" else reported_by, grid_cell_id=cell,
           data={"fault": fid, "camera": camera, "kind": kind, "since": since, "source": source,
                 "by": reported_by}, at=now)
    return fault_view(conn.execute(select(camera_faults).where(camera_faults.c.id == fid)).one())


def check_faults(conn: Connection, cfg: Config, offline_since: dict[str, float], now: float | None = None) -> int:
    """Put on the fault list the cameras a check has flagged for ``dashboard.fault_after_s`` or longer: the
    offline check (the pipeline reports the camera offline) and the tamper check (a tamper alert, dark,
    covered, blurred or moved, still holds); each fault names its check and starts when the condition did.

    ``offline_since``: camera → when it went offline (its last frame), for the cameras not online now.
    Returns how many faults were added (a camera with an open fault of the same kind keeps that one)."""
    now = time.time() if now is None else now
    threshold = cfg.dashboard.fault_after_s
    found: list[tuple[str, str, float, str, str | None]] = []  # camera, kind, since, check, note
    for camera, since in offline_since.items():
        if now - since >= threshold:
            found.append((camera, "offline", since, OFFLINE_CHECK, None))
    tampered: dict[str, tuple[float, list[str]]] = {}
    for r in conn.execute(select(alerts.c.camera_id, alerts.c.rule_id, alerts.c.start_time)
                          .where(alerts.c.kind == TAMPER_KIND, alerts.c.end_time.is_(None),
                                 alerts.c.start_time <= now - threshold).order_by(alerts.c.start_time)):
        since, kinds = tampered.get(r.camera_id, (r.start_time, []))
        kinds.append(r.rule_id.partition(":")[2] or r.rule_id)
        tampered[r.camera_id] = (min(since, r.start_time), kinds)
    for camera, (since, kinds) in tampered.items():
        found.append((camera, "tampered", since, TAMPER_CHECK, ", ".join(sorted(set(kinds)))))
    n = 0
    for camera, kind, since, check, note in found:
        if camera not in cfg.cameras or not cfg.cameras[camera].enabled:
            continue
        before = conn.execute(select(camera_faults.c.id).where(camera_faults.c.camera_id == camera,
                                                               camera_faults.c.kind == kind,
                                                               camera_faults.c.state != "repaired")).first()
        if before is None:
            add_fault(conn, cfg, camera, kind, since, "check", check, note=note)
            n += 1
    return n


def list_faults(conn: Connection, actor: Actor, include_repaired: bool = False,
                since: float | None = None) -> list[dict[str, Any]]:
    q = select(camera_faults).order_by(camera_faults.c.since.desc())
    if not include_repaired:
        q = q.where(camera_faults.c.state != "repaired")
    if since is not None:
        q = q.where(or_(camera_faults.c.repaired_at.is_(None), camera_faults.c.repaired_at >= since))
    if not actor.all_cells():
        q = q.where(camera_faults.c.grid_cell_id.in_([c for c in getattr(actor, "cells", ())]))
    return [fault_view(r) for r in conn.execute(q) if actor.sees_cell(r.grid_cell_id)]


def repair_step(conn: Connection, actor: Actor, fault_id: int, step: str, can_close: bool,
                note: str | None = None, remote: str | None = None) -> dict[str, Any]:
    """``requested`` (anyone of the cell) then ``done`` (an engineer: the one who sends the technician)."""
    row = conn.execute(select(camera_faults).where(camera_faults.c.id == fault_id)).first()
    if row is None or not actor.sees_cell(row.grid_cell_id):
        raise PatrolError("not_found", 404)
    now = time.time()
    if step == "requested":
        if row.state != "open":
            raise PatrolError("wrong_step", 409, state=row.state)
        values: dict[str, Any] = {"state": "repair_requested", "repair_requested_at": now,
                                  "repair_requested_by": actor.username}
    elif step == "done":
        if not can_close:
            raise PatrolError("forbidden_role", 403, role="engineer")
        if row.state == "repaired":
            raise PatrolError("wrong_step", 409, state=row.state)
        values = {"state": "repaired", "repaired_at": now, "repaired_by": actor.username}
    else:
        raise PatrolError("bad_step", 400, step=step)
    conn.execute(update(camera_faults).where(camera_faults.c.id == fault_id).values(**values))
    record(conn, "camera_fault_" + step, user_id=actor.id, username=actor.username, grid_cell_id=row.grid_cell_id,
           note=(note or "").strip() or None, data={"fault": fault_id, "camera": row.camera_id, "kind": row.kind},
           remote=remote, at=now)
    return fault_view(conn.execute(select(camera_faults).where(camera_faults.c.id == fault_id)).one())


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(x for x in spans if x[1] > x[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _overlap(spans: list[tuple[float, float]], a: float, b: float) -> float:
    return sum(max(0.0, min(e, b) - max(s, a)) for s, e in spans)


def down_spans(conn: Connection, cfg: Config, actor: Actor, start: float,
               stop: float) -> dict[str, list[tuple[float, float]]]:
    """Per camera of the user's cells, the merged spans of [start, stop) it was down: on the fault list (from its
    start until it is marked repaired) or offline (the workers' camera events: from going offline to coming back)."""
    cams = [c for c, cam in cfg.cameras.items() if actor.sees_cell(cam.grid_cell)]
    down: dict[str, list[tuple[float, float]]] = {c: [] for c in cams}
    for r in conn.execute(select(camera_faults.c.camera_id, camera_faults.c.since, camera_faults.c.repaired_at)
                          .where(camera_faults.c.since < stop,
                                 or_(camera_faults.c.repaired_at.is_(None), camera_faults.c.repaired_at > start))):
        if r.camera_id in down:
            down[r.camera_id].append((max(r.since, start), min(r.repaired_at or stop, stop)))
    for c in cams:
        before = conn.execute(select(camera_events.c.phase).where(camera_events.c.camera_id == c,
                                                                  camera_events.c.time < start)
                              .order_by(camera_events.c.time.desc(), camera_events.c.id.desc()).limit(1)).first()
        off_since = start if before is not None and before.phase == "offline" else None
        for e in conn.execute(select(camera_events.c.phase, camera_events.c.time)
                              .where(camera_events.c.camera_id == c, camera_events.c.time >= start,
                                     camera_events.c.time < stop).order_by(camera_events.c.time, camera_events.c.id)):
            if e.phase == "offline" and off_since is None:
                off_since = e.time
            elif e.phase == "online" and off_since is not None:
                down[c].append((off_since, e.time))
                off_since = None
        if off_since is not None:
            down[c].append((off_since, stop))
    return {c: _merged(spans) for c, spans in down.items()}


def availability(conn: Connection, cfg: Config, actor: Actor, start: float, end: float,
                 now: float | None = None) -> dict[str, float]:
    """Per camera of the user's cells, the share (0..100) of [start, end) up to now it was not down."""
    stop = min(end, time.time() if now is None else now)
    span = stop - start
    if span <= 0:
        return {}
    return {c: round(100.0 * (1 - _overlap(spans, start, stop) / span), 1)
            for c, spans in down_spans(conn, cfg, actor, start, stop).items()}


def availability_by_day(conn: Connection, cfg: Config, actor: Actor, start: float, end: float,
                        now: float | None = None) -> dict[str, Any]:
    """Per camera of the user's cells and per local day (the config's zone) of [start, end): the fraction
    (0..1) of the day, up to now, it was neither on the fault list nor offline, and the seconds it was down.

    A day only partly inside the range (or today, until now) counts the part inside."""
    stop = min(end, time.time() if now is None else now)
    tz = cfg.tzinfo()
    days: list[tuple[str, float, float]] = []
    if stop > start:
        day = dt.datetime.fromtimestamp(start, tz).date()
        while True:
            d0 = dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp()
            if d0 >= stop:
                break
            nxt = day + dt.timedelta(days=1)
            d1 = dt.datetime.combine(nxt, dt.time(), tzinfo=tz).timestamp()
            a, b = max(d0, start), min(d1, stop)
            if b > a:
                days.append((day.isoformat(), a, b))
            day = nxt
    rows = []
    for c, spans in down_spans(conn, cfg, actor, start, stop).items():
        cam = cfg.cameras[c]
        per = []
        for name, a, b in days:
            lost = _overlap(spans, a, b)
            per.append({"day": name, "seconds": round(b - a, 1), "down_s": round(lost, 1),
                        "available": round(1 - lost / (b - a), 4)})
        rows.append({"camera": c, "name": cam.name, "grid_cell": cam.grid_cell, "days": per})
    return {"days": [d[0] for d in days], "cameras": rows}


# ----------------------------------------------------------------------------------------- manual alarms

def new_alarm_id() -> str:
    return f"manual-{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def _cell_ref(cfg: Config, cell_id: str) -> dict[str, Any]:
    cell = cfg.grid_cells.get(cell_id)
    return {"id": cell_id, "name": cell.name if cell else cell_id,
            "officer": {"name": cell.officer.name, "phone": cell.officer.phone} if cell else None}


def alarm_message(cfg: Config, alert_id: str, kind: str, cell_id: str, camera: str | None, report: str,
                  snapshot: dict[str, Any] | None, now: float, by: str, caller: dict[str, Any] | None = None,
                  severity: str = "high") -> dict[str, Any]:
    """The bus message of a manual alarm: an ``alert`` as a worker publishes one (sharpeye.event/1), so every
    consumer (the rooms, the archiver, ``sharpeye events``) handles it without knowing it was raised by hand."""
    cam = cfg.cameras.get(camera) if camera else None
    msg: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "type": "alert", "id": bus_message_id(), "alert_id": alert_id, "phase": "new",
        "time": round(now, 3), "frame_time": None,
        "camera": {"id": camera or "", "name": cam.name if cam else ""},
        "grid_cell": _cell_ref(cfg, cell_id),
        "rule": {"id": kind, "kind": kind, "severity": severity},
        "labels": [], "track_ids": [], "objects": [], "score": 1.0,
        "start_time": round(now, 3), "end_time": None, "snapshot": snapshot,
        "clip": {"start": round(now - cfg.alerts.pre_roll_s, 3), "end": None} if camera else None,
        "manual": {"kind": kind, "report": report, "by": by, **({"caller": caller} if caller else {})},
    }
    return msg


def bus_message_id() -> str:
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def write_snapshot(data_dir: Path, camera: str, name: str, jpeg: bytes) -> dict[str, Any]:
    """Keep a JPEG grabbed from the live frame where the room serves snapshots from (by camera, by day)."""
    if len(jpeg) > MAX_SNAPSHOT_BYTES or not jpeg.startswith(b"\xff\xd8"):
        raise PatrolError("bad_snapshot", 400, max_bytes=MAX_SNAPSHOT_BYTES)
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise PatrolError("bad_snapshot", 400, max_bytes=MAX_SNAPSHOT_BYTES)
    rel = Path("snapshots") / camera / dt.datetime.now().strftime("%Y-%m-%d") / f"{name}.jpg"
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jpg.tmp")
    tmp.write_bytes(jpeg)
    os.replace(tmp, path)
    return {"path": rel.as_posix(), "width": int(img.shape[1]), "height": int(img.shape[0]), "score": 1.0}


class Alarms:
    """Raises manual alarms: stored (alert row, manual_alarms row, audit) in one transaction, then put on the bus
    so every room shows it at once (a bus that is down loses nothing: the rooms read the database too)."""

    def __init__(self, engine: Engine, redis_url: str):
        self.engine = engine
        self.redis_url = redis_url
        self._r: Any = None

    def _publish(self, cfg: Config, msg: dict[str, Any]) -> bool:
        try:
            if self._r is None:
                self._r = bus.connect(self.redis_url)
            pipe = self._r.pipeline(transaction=True)
            bus.add_event(pipe, bus.BusKeys(cfg.bus.prefix), msg, cfg.bus.events_maxlen, index_open=False)
            pipe.execute()
            return True
        except Exception as e:  # Redis down: the alarm is stored; pages see it when they reload their list
            log.warning("manual alarm %s stored but not put on the bus: %s", msg["alert_id"], e)
            self._r = None
            return False

    def _store(self, conn: Connection, cfg: Config, actor: Actor, msg: dict[str, Any], source: str,
               report: str, patrol_id: str | None = None, caller: str | None = None, phone: str | None = None,
               point: list[float] | None = None, remote: str | None = None) -> None:
        store(conn, None, msg)
        camera = msg["camera"]["id"] or None
        conn.execute(manual_alarms.insert().values(
            alert_id=msg["alert_id"], source=source, patrol_id=patrol_id, camera_id=camera,
            grid_cell_id=msg["grid_cell"]["id"], caller=caller, phone=phone, report=report,
            point=json.dumps(point) if point else None, created_at=msg["time"], created_by=actor.username))
        record(conn, "manual_alarm", user_id=actor.id, username=actor.username, alert_id=msg["alert_id"],
               grid_cell_id=msg["grid_cell"]["id"], to_state="new", note=report,
               data={"source": source, "camera": camera, "patrol": patrol_id, "by": actor.display_name,
                     **({"caller": caller, "phone": phone} if source == "phone" else {})},
               remote=remote, at=msg["time"])

    def finding(self, cfg: Config, actor: Actor, patrol_id: str, camera: str, note: str, jpeg: bytes | None,
                remote: str | None = None) -> dict[str, Any]:
        """发现情况: mark the camera and raise a manual alarm with the note and the snapshot; the patrol log."""
        note = note.strip()
        if not note:
            raise PatrolError("note_required", 400)
        alert_id = new_alarm_id()
        with self.engine.begin() as conn:
            row = _patrol_row(conn, actor, patrol_id, mine=True)
            if camera not in {c["camera"] for c in _loads(row.planned, [])}:
                raise PatrolError("not_in_plan", 400, camera=camera)
            cam = _camera(cfg, actor, camera)
            snap = write_snapshot(cfg.data_path(), camera, alert_id, jpeg) if jpeg else None
            now = time.time()
            msg = alarm_message(cfg, alert_id, FINDING_KIND, cam.grid_cell, camera, note, snap, now,
                                actor.display_name)
            self._store(conn, cfg, actor, msg, "patrol", note, patrol_id=patrol_id, remote=remote)
            log_ = mark_camera(conn, cfg, actor, patrol_id, camera, "finding", note=note, alert_id=alert_id,
                               snapshot_path=snap["path"] if snap else None, remote=remote)
        pushed = self._publish(cfg, msg)
        return {"alert_id": alert_id, "pushed": pushed, "patrol": log_}

    def phone(self, cfg: Config, actor: Actor, cell: str, caller: str, phone: str, report: str,
              point: list[float] | None = None, severity: str = "high", remote: str | None = None) -> dict[str, Any]:
        """报警: a citizen's call about a place in a grid cell, with no camera yet; the alarm's id."""
        report = report.strip()
        if not report:
            raise PatrolError("report_required", 400)
        if cell not in cfg.grid_cells or not actor.sees_cell(cell):
            raise PatrolError("not_found", 404, grid_cell=cell)
        alert_id = new_alarm_id()
        now = time.time()
        msg = alarm_message(cfg, alert_id, PHONE_KIND, cell, None, report, None, now, actor.display_name,
                            caller={"name": caller.strip(), "phone": phone.strip()}, severity=severity)
        with self.engine.begin() as conn:
            self._store(conn, cfg, actor, msg, "phone", report, caller=caller.strip() or None,
                        phone=phone.strip() or None, point=point, remote=remote)
        pushed = self._publish(cfg, msg)
        return {"alert_id": alert_id, "pushed": pushed}


def alarm_view(row: Any, alert: Any | None) -> dict[str, Any]:
    return {"alert_id": row.alert_id, "source": row.source, "patrol_id": row.patrol_id, "camera": row.camera_id,
            "grid_cell": row.grid_cell_id, "caller": row.caller, "phone": row.phone, "report": row.report,
            "point": _loads(row.point, None), "cameras": _loads(row.cameras, []), "range_start": row.range_start,
            "range_end": row.range_end, "created_at": row.created_at, "created_by": row.created_by,
            "state": alert.state if alert is not None else None,
            "classification": alert.classification if alert is not None else None,
            "dispatch_step": alert.dispatch_step if alert is not None else None}


def get_alarm(conn: Connection, actor: Actor, alert_id: str) -> dict[str, Any]:
    row = conn.execute(select(manual_alarms).where(manual_alarms.c.alert_id == alert_id)).first()
    if row is None or not actor.sees_cell(row.grid_cell_id):
        raise PatrolError("not_found", 404)
    a = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    return alarm_view(row, a)


def attach(conn: Connection, cfg: Config, actor: Actor, alert_id: str, cameras: list[str], start: float,
           end: float, remote: str | None = None) -> dict[str, Any]:
    """Attach cameras and a time range to a manual alarm (evidence to export); replaces an earlier attachment."""
    row = conn.execute(select(manual_alarms).where(manual_alarms.c.alert_id == alert_id)).first()
    if row is None or not actor.sees_cell(row.grid_cell_id):
        raise PatrolError("not_found", 404)
    if not cameras:
        raise PatrolError("cameras_required", 400)
    if not end > start:
        raise PatrolError("bad_range", 400)
    for c in cameras:
        _camera(cfg, actor, c)
    conn.execute(update(manual_alarms).where(manual_alarms.c.alert_id == alert_id)
                 .values(cameras=json.dumps(list(dict.fromkeys(cameras))), range_start=start, range_end=end))
    record(conn, "manual_alarm_attach", user_id=actor.id, username=actor.username, alert_id=alert_id,
           grid_cell_id=row.grid_cell_id, data={"cameras": cameras, "start": start, "end": end}, remote=remote)
    return get_alarm(conn, actor, alert_id)


def evidence(conn: Connection, alert_id: str) -> tuple[list[str], float, float] | None:
    """The cameras and time range attached to a manual alarm (what its export holds), or None when none is."""
    row = conn.execute(select(manual_alarms.c.cameras, manual_alarms.c.range_start, manual_alarms.c.range_end)
                       .where(manual_alarms.c.alert_id == alert_id)).first()
    cams = _loads(row.cameras, []) if row is not None else []
    if not cams or row is None or row.range_start is None or row.range_end is None:
        return None
    return cams, float(row.range_start), float(row.range_end)


# ---------------------------------------------------------------------------------------------- reports

def shift_report(conn: Connection, cfg: Config, actor: Actor, start: float, end: float) -> dict[str, Any]:
    """Per operator over [start, end): plans run, cameras patrolled vs planned (coverage %), findings, manual
    alarms and what became of them, faults found; plus the cells' availability per camera, over the range
    (``availability``, %) and per day (``availability_by_day``, fractions)."""
    ops: dict[str, dict[str, Any]] = {}

    def op(username: str, name: str | None = None) -> dict[str, Any]:
        return ops.setdefault(username, {
            "username": username, "name": name or username, "patrols": 0, "plans": set(), "planned": 0,
            "patrolled": 0, "findings": 0, "faults": 0, "alarms": [], "outcomes": defaultdict(int)})

    for p in list_patrols(conn, cfg, actor, start, end, limit=5000):
        o = op(p["user"]["username"], p["user"]["name"])
        o["patrols"] += 1
        o["plans"].add(p["plan_name"])
        o["planned"] += p["planned_count"]
        o["patrolled"] += p["patrolled_count"]
        o["findings"] += sum(1 for c in p["cameras"] if c["mark"] == "finding")
    for f in conn.execute(select(camera_faults).where(camera_faults.c.created_at >= start,
                                                      camera_faults.c.created_at < end,
                                                      camera_faults.c.source != "check")):
        if actor.sees_cell(f.grid_cell_id):
            op(f.reported_by)["faults"] += 1
    q = (select(manual_alarms, alerts.c.state, alerts.c.classification, alerts.c.dispatch_step)
         .join(alerts, alerts.c.id == manual_alarms.c.alert_id, isouter=True)
         .where(manual_alarms.c.created_at >= start, manual_alarms.c.created_at < end))
    for r in conn.execute(q):
        if not actor.sees_cell(r.grid_cell_id):
            continue
        o = op(r.created_by)
        o["alarms"].append({"alert_id": r.alert_id, "source": r.source, "state": r.state,
                            "classification": r.classification, "dispatch_step": r.dispatch_step})
        o["outcomes"][r.classification or r.state or "unknown"] += 1
    rows = []
    for o in sorted(ops.values(), key=lambda o: o["username"]):
        o["plans"] = sorted(o["plans"])
        o["outcomes"] = dict(o["outcomes"])
        o["coverage"] = round(100.0 * o["patrolled"] / o["planned"], 1) if o["planned"] else None
        rows.append(o)
    planned = sum(o["planned"] for o in rows)
    patrolled = sum(o["patrolled"] for o in rows)
    return {"start": start, "end": end, "operators": rows,
            "total": {"patrols": sum(o["patrols"] for o in rows), "planned": planned, "patrolled": patrolled,
                      "coverage": round(100.0 * patrolled / planned, 1) if planned else None,
                      "findings": sum(o["findings"] for o in rows),
                      "alarms": sum(len(o["alarms"]) for o in rows), "faults": sum(o["faults"] for o in rows)},
            "availability": availability(conn, cfg, actor, start, end),
            "availability_by_day": availability_by_day(conn, cfg, actor, start, end)}


def last_slot(schedule: dict[str, Any], now: float, tz: dt.tzinfo | None) -> float | None:
    """The latest scheduled start at or before ``now`` (epoch), or None when none fell in the last two days."""
    every = max(1, int(schedule.get("every_min") or 0)) * 60
    t_from = _hhmm(schedule.get("start", "00:00"), "schedule.start")
    t_to = _hhmm(schedule.get("end", "00:00"), "schedule.end")
    local_now = dt.datetime.fromtimestamp(now, tz)
    best = None
    for back in (1, 0):
        day = (local_now - dt.timedelta(days=back)).date()
        w0 = dt.datetime.combine(day, t_from, tzinfo=local_now.tzinfo)
        w1 = dt.datetime.combine(day, t_to, tzinfo=local_now.tzinfo)
        if w1 <= w0:
            w1 += dt.timedelta(days=1)  # crosses midnight (a night shift), or all day when from == to
        a, b = w0.timestamp(), w1.timestamp()
        if a > now:
            continue
        k = int((min(now, b - 1e-6) - a) // every)
        slot = a + k * every
        if best is None or slot > best:
            best = slot
    return best


def supervisor_view(conn: Connection, cfg: Config, actor: Actor, now: float | None = None) -> dict[str, Any]:
    """Scheduled plans due (the last slot not run yet), overdue (not run within its grace), and patrols running."""
    now = time.time() if now is None else now
    due: list[dict[str, Any]] = []
    overdue: list[dict[str, Any]] = []
    for plan in list_plans(conn, actor):
        sched = plan["schedule"]
        if not sched:
            continue
        slot = last_slot(sched, now, cfg.tzinfo())
        if slot is None:
            continue
        ran = conn.execute(select(patrols.c.id).where(patrols.c.plan_id == plan["id"],
                                                      patrols.c.started_at >= slot)).first()
        if ran is not None:
            continue
        item = {"plan": plan["id"], "name": plan["name"], "slot": slot, "late_s": round(now - slot, 1)}
        (overdue if now - slot > 60 * int(sched.get("grace_min", 15)) else due).append(item)
    running = [patrol_log(conn, cfg, actor, r.id) for r in conn.execute(
        select(patrols.c.id, patrols.c.grid_cells).where(patrols.c.state == "running")
        .order_by(patrols.c.started_at)) if _sees_all(actor, _loads(r.grid_cells, []))]
    return {"now": now, "due": due, "overdue": overdue, "running": running}
