"""Shelves (屏蔽) behind the room: list, shelve a camera or one of its rules, lift a shelf early.

Scope: an operator shelves only cameras of their own grid cells (like every other action on a camera:
bulk close, patrol marks), and sees the shelves of their cells; a camera or shelf outside them answers
404 as an unknown one does.  Lifting early is for supervisors (engineers and admins) of the shelf's cell.
The rules live in ``history.shelves``; the escalation check skips shelved alerts and the page does not ring
for them (dashboard/static/room-shelves.js).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from dashboard.users import User
from history import shelves
from history.schema import users
from history.shelves import ShelfError

TAMPER_CHECKS = ("dark", "covered", "blur", "moved")  # the tamper alerts' rule ids are tamper:<check>
HISTORY_S = 7 * 86400.0  # how far back a supervisor's list reaches


def _named(d: Dashboard, s: dict[str, Any]) -> dict[str, Any]:
    cam = d.config().cameras.get(s["camera_id"])
    rule = cam.effective_rules().get(s["rule_id"]) if cam is not None and s["rule_id"] else None
    return dict(s, camera_name=cam.name if cam is not None else s["camera_id"],
                rule_name=getattr(rule, "name", None), rule_kind=getattr(rule, "kind", None))


async def listing(d: Dashboard, user: User, history: bool = False) -> dict[str, Any]:
    """The shelves of the user's cells holding now or ended this shift (a week back for supervisors asking)."""
    since = HISTORY_S if history and user.has_role("engineer") else shelves.RECENT_S

    def _tx() -> list[dict[str, Any]]:
        with d.engine.connect() as conn:
            rows = shelves.listing(conn, None if user.all_cells() else user.cells, since_s=since)
            lifters = {s["lifted_by"] for s in rows if s["lifted_by"]}
            names = dict(conn.execute(select(users.c.username, users.c.display_name)
                                      .where(users.c.username.in_(lifters))).all()) if lifters else {}
        # who lifted a shelf early, as people read it (the supervisor page lists it)
        return [dict(s, lifted_by_name=names.get(s["lifted_by"], s["lifted_by"])) for s in rows]
    rows = await run_in_threadpool(_tx)
    return {"shelves": [_named(d, s) for s in rows], "now": time.time(), "can_lift": user.has_role("engineer"),
            "min_minutes": shelves.MIN_S / 60, "max_minutes": shelves.MAX_S / 60}


async def create(d: Dashboard, user: User, camera: str, rule: str | None, reason: str, minutes: float,
                 remote: str | None) -> dict[str, Any]:
    """Shelve a camera of the user's cells, or one of its rules (its id, or tamper:<check>); raises ShelfError."""
    cam = d.config().cameras.get(camera)
    if cam is None or not user.sees_cell(cam.grid_cell):
        raise ShelfError("not_found", 404)
    if rule and rule not in cam.effective_rules() and rule not in {f"tamper:{c}" for c in TAMPER_CHECKS}:
        raise ShelfError("unknown_rule", 400, field="rule", camera=camera)

    def _tx() -> dict[str, Any]:
        with d.engine.begin() as conn:
            return shelves.create(conn, camera_id=camera, grid_cell_id=cam.grid_cell, rule_id=rule or None,
                                  reason=reason, duration_s=minutes * 60.0, user_id=user.id, username=user.username,
                                  display_name=user.display_name, remote=remote)
    return _named(d, await run_in_threadpool(_tx))


async def lift(d: Dashboard, user: User, shelf_id: int, remote: str | None) -> dict[str, Any]:
    """End a shelf of the user's cells now (the route lets supervisors only); raises ShelfError."""
    def _tx() -> dict[str, Any]:
        with d.engine.begin() as conn:
            row = shelves.get(conn, shelf_id)
            if row is None or not user.sees_cell(row.grid_cell_id):
                raise ShelfError("not_found", 404)
            return shelves.lift(conn, shelf_id, user_id=user.id, username=user.username,
                                display_name=user.display_name, remote=remote)
    return _named(d, await run_in_threadpool(_tx))
