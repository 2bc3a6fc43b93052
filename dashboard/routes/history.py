"""History: search every stored alert by time range, camera, cell, rule, kind, label and state, with paging.

Paging is by key (the last row's start time and id), not by offset, so the hundredth page costs
what the first does; each filter has an index that starts with it and ends with the start time
(``schema.alerts``), so a page is read in index order and stops after ``limit`` rows.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from sqlalchemy import select, tuple_
from starlette.concurrency import run_in_threadpool

from dashboard.deps import CurrentUser, DashboardDep, current_user, refuse
from dashboard.pages import page
from dashboard.users import User
from dashboard.workflow import alert_view
from history.schema import STATES, alerts

router = APIRouter(dependencies=[Depends(current_user)])
LIST_COLUMNS = [c for c in alerts.c if c.name != "message"]  # the raw message is not needed for a list
MAX_LIMIT = 200


def search(conn: Any, user: User, *, start: float | None = None, end: float | None = None,
           camera: str | None = None, cell: str | None = None, rule: str | None = None, kind: str | None = None,
           label: str | None = None, state: str | None = None, before: str | None = None,
           limit: int = 50) -> dict[str, Any]:
    """One page of alerts, newest first, and the cursor of the next page (None at the end)."""
    q = select(*LIST_COLUMNS)
    if not user.all_cells():
        q = q.where(alerts.c.grid_cell_id.in_(user.cells))
    if start is not None:
        q = q.where(alerts.c.start_time >= start)
    if end is not None:
        q = q.where(alerts.c.start_time < end)
    for col, value in ((alerts.c.camera_id, camera), (alerts.c.grid_cell_id, cell), (alerts.c.rule_id, rule),
                       (alerts.c.kind, kind)):
        if value:
            q = q.where(col == value)
    if state == "open":
        q = q.where(alerts.c.state.in_(("new", "acknowledged", "dispatched")))
    elif state:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        q = q.where(alerts.c.state == state)
    if label:
        q = q.where(alerts.c.labels.like(f"%,{label.replace('%', '').replace('_', '')},%"))
    if before:
        try:
            bt_s, bid = before.split("|", 1)
            bt = float(bt_s)
        except ValueError:
            raise ValueError("bad cursor") from None
        q = q.where(tuple_(alerts.c.start_time, alerts.c.id) < tuple_(bt, bid))  # a range on the indexes
    limit = max(1, min(limit, MAX_LIMIT))
    rows = conn.execute(q.order_by(alerts.c.start_time.desc(), alerts.c.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = f"{rows[-1].start_time!r}|{rows[-1].id}" if more and rows else None
    return {"alerts": [alert_view(r) for r in rows], "next": nxt}


@router.get("/history", include_in_schema=False)
async def history_page() -> HTMLResponse:
    return page("history.html")


@router.get("/api/history")
async def history(d: DashboardDep, user: CurrentUser, start: float | None = None,
                  end: float | None = None, camera: str | None = None, cell: str | None = None,
                  rule: str | None = None, kind: str | None = None, label: str | None = None,
                  state: str | None = None, before: str | None = None, limit: int = 50) -> dict[str, Any]:
    if cell and not user.sees_cell(cell):
        raise refuse(404, "not_found")

    def _run() -> dict[str, Any]:
        t0 = time.perf_counter()
        with d.engine.connect() as conn:
            out = search(conn, user, start=start, end=end, camera=camera, cell=cell, rule=rule, kind=kind,
                         label=label, state=state, before=before, limit=limit)
        out["query_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out
    try:
        return await run_in_threadpool(_run)
    except ValueError as e:
        raise refuse(400, "bad_query", message=str(e)) from None
