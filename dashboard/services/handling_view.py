"""The handling view's look-ups: the alarm camera and its related cameras, the colleagues an alert can go to,
and the notices a forward or a takeover sends to the operator it concerns.

- **Related cameras**: the other cameras of the alarm camera's grid cell, plus the neighbours the config
  names (``cameras.<id>.neighbours``, read both ways: a camera that names the alarm camera is its
  neighbour too), each only when the user may see its cell.
- **Recipients**: the enabled users who may see the alert's cell (its operators, engineers and admins),
  the asking user left out; ``on_duty`` when they have a live session (logged in now), the on-duty ones
  first.  The page offers only those on duty.
- **Notices**: drawn from the actions stream every page already follows, so a page that reconnects with
  its cursor misses none: ``forwarded`` to the user an alert was forwarded to, ``taken_over`` to the
  owner an alert was taken from.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from dashboard.security import SESSION_IDLE_S
from dashboard.services.cameras import camera_statuses, status_dict
from dashboard.users import User, from_row
from history.incidents import head_of
from history.schema import alerts, sessions, users
from pipeline.config import Config

log = logging.getLogger(__name__)

MAX_RELATED = 12  # tiles in the handling view: more would cost the worker and the browser for little
NOTICES_BACK_S = 3600.0  # a page opening asks for the notices of the last hour it may have missed
NOTICES_READ = 1000  # actions read per notice request


def _geometry(cam: Any) -> dict[str, Any]:
    """Zones and lines in relative coordinates, for the overlay the live player draws."""
    return {"zones": {name: z.polygon for name, z in cam.zones.items()},
            "lines": {name: {"a": ln.a, "b": ln.b, "direction": ln.direction} for name, ln in cam.lines.items()}}


def _camera(cfg: Config, statuses: dict[str, Any], cid: str, relation: str) -> dict[str, Any]:
    cam = cfg.cameras[cid]
    cell = cfg.grid_cells.get(cam.grid_cell)
    st = status_dict(statuses[cid]) if cid in statuses else {}
    return {"id": cid, "name": cam.name, "relation": relation, "enabled": cam.enabled,
            "grid_cell": {"id": cam.grid_cell, "name": cell.name if cell else cam.grid_cell},
            "online": bool(st.get("online")), "state": st.get("state", "unknown" if cam.enabled else "disabled"),
            **_geometry(cam)}


def related_cameras(cfg: Config, statuses: dict[str, Any], user: User, camera_id: str) -> dict[str, Any]:
    """The alarm camera (``camera``, None when unknown or not the user's) and its related cameras
    (``related``: same cell first, then the named neighbours), all within the user's cells."""
    cam = cfg.cameras.get(camera_id)
    if cam is None or not user.sees_cell(cam.grid_cell):
        return {"camera": None, "related": []}
    picked: dict[str, str] = {}
    for cid, other in cfg.cameras.items():
        if cid != camera_id and other.grid_cell == cam.grid_cell:
            picked[cid] = "cell"
    named = list(cam.neighbours) + [cid for cid, other in cfg.cameras.items() if camera_id in other.neighbours]
    for cid in named:
        if cid != camera_id and cid in cfg.cameras:
            picked.setdefault(cid, "neighbour")
    related = [_camera(cfg, statuses, cid, rel) for cid, rel in picked.items()
               if cfg.cameras[cid].enabled and user.sees_cell(cfg.cameras[cid].grid_cell)]
    return {"camera": _camera(cfg, statuses, camera_id, "alarm"), "related": related[:MAX_RELATED]}


async def detail_cameras(d: Dashboard, user: User, camera_id: str) -> dict[str, Any]:
    """What the handling view shows live: ``live_camera`` (the alarm camera) and ``related_cameras``."""
    try:
        statuses = await camera_statuses(d)
    except RedisError as e:  # the alert is read from the history: shown without the bus, camera states unknown
        log.warning("alert detail without camera states: bus unavailable (%s)", e)
        statuses = {}
    found = related_cameras(d.config(), statuses, user, camera_id)
    return {"live_camera": found["camera"], "related_cameras": found["related"]}


def _alert_cell(conn: Any, alert_id: str) -> tuple[str, str | None] | None:
    head = head_of(conn, alert_id)  # an occurrence is handled as its incident
    row = conn.execute(select(alerts.c.id, alerts.c.grid_cell_id, alerts.c.owner_id)
                       .where(alerts.c.id == head)).first()
    return (row.grid_cell_id, row.owner_id) if row is not None else None


async def recipients(d: Dashboard, user: User, alert_id: str) -> dict[str, Any] | None:
    """The colleagues the alert can be forwarded to (who may see its cell), on duty first; None when the alert
    is unknown or outside the user's cells (answered as unknown)."""
    return await run_in_threadpool(_recipients, d, user, alert_id)


def _recipients(d: Dashboard, user: User, alert_id: str, now: float | None = None) -> dict[str, Any] | None:
    now = time.time() if now is None else now
    with d.engine.connect() as conn:
        found = _alert_cell(conn, alert_id)
        if found is None or not user.sees_cell(found[0]):
            return None
        cell, owner_id = found
        live = dict(conn.execute(select(sessions.c.user_id, func.max(sessions.c.last_seen))
                                 .where(sessions.c.expires_at > now, sessions.c.last_seen >= now - SESSION_IDLE_S)
                                 .group_by(sessions.c.user_id)).all())
        out = []
        for row in conn.execute(select(users).where(users.c.disabled.is_(False)).order_by(users.c.display_name)):
            other = from_row(row)
            if other.id == user.id or not other.sees_cell(cell):
                continue
            out.append({"username": other.username, "display_name": other.display_name, "role": other.role,
                        "on_duty": other.id in live, "last_seen": live.get(other.id),
                        "owner": other.id == owner_id})
    out.sort(key=lambda u: not u["on_duty"])  # stable: by name within each group
    return {"alert_id": alert_id, "grid_cell": cell, "users": out}


def notice_for(user: User, msg: dict[str, Any]) -> dict[str, Any] | None:
    """The notice an action message (the actions stream's ``{"alert", "action"}``) holds for ``user``, or None."""
    act, alert = msg.get("action") or {}, msg.get("alert") or {}
    data = act.get("data") or {}
    if act.get("user_id") == user.id or not user.sees_cell((alert.get("grid_cell") or {}).get("id")):
        return None
    if act.get("action") == "forward" and data.get("to") == user.username:
        kind = "forwarded"
    elif act.get("action") == "take_over" and data.get("from_id") == user.id:
        kind = "taken_over"
    else:
        return None
    return {"kind": kind, "alert_id": alert.get("alert_id"), "time": act.get("time"), "by": data.get("by"),
            "note": act.get("note"), "camera": alert.get("camera"), "rule": alert.get("rule"),
            "grid_cell": {"id": (alert.get("grid_cell") or {}).get("id"),
                          "name": (alert.get("grid_cell") or {}).get("name")}}


async def notices(d: Dashboard, user: User, after: str | None) -> dict[str, Any]:
    """The user's notices in the actions stream after the id ``after`` (default: the last hour), oldest first,
    and the cursor to ask from next."""
    start = f"({after}" if after else f"{int((time.time() - NOTICES_BACK_S) * 1000)}-0"
    entries = await d.redis().xrange(d.actions_key(), min=start, max="+", count=NOTICES_READ)
    out, cursor = [], after or start
    for sid, fields in entries:
        cursor = sid.decode() if isinstance(sid, bytes) else sid
        try:
            msg = json.loads(fields[b"json"])
        except (KeyError, ValueError):
            continue
        note = notice_for(user, msg)
        if note is not None:
            out.append(dict(note, id=cursor))
    return {"notices": out, "cursor": cursor}
