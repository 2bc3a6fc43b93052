"""History: search every stored alert with the room's filters, plus who acknowledged and who closed it how.

The search itself lives in :mod:`dashboard.services.history_search`; ``/api/history/choices`` is what the
page's menus offer (rules by the name operators read, the people of the user's cells).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from dashboard.deps import CurrentUser, DashboardDep, current_user, refuse
from dashboard.pages import page
from dashboard.services.history_search import Query, choices, search

router = APIRouter(dependencies=[Depends(current_user)])


@router.get("/history", include_in_schema=False)
async def history_page() -> HTMLResponse:
    return page("history.html")


@router.get("/api/history")
async def history(d: DashboardDep, user: CurrentUser, start: float | None = None,
                  end: float | None = None, camera: str | None = None, cell: str | None = None,
                  rule: str | None = None, kind: str | None = None, label: str | None = None,
                  state: str | None = None, severity: str | None = None, owner: str | None = None,
                  classification: str | None = None, acknowledged_by: str | None = None,
                  closed_by: str | None = None, q: str | None = None, before: str | None = None,
                  limit: int = 50) -> dict[str, Any]:
    if cell and not user.sees_cell(cell):
        raise refuse(404, "not_found")
    query = Query(start=start, end=end, camera=camera, cell=cell, rule=rule, kind=kind, label=label, state=state,
                  severity=severity, owner=owner, classification=classification, acknowledged_by=acknowledged_by,
                  closed_by=closed_by, q=q, before=before, limit=limit)
    cfg = d.config()

    def _run() -> dict[str, Any]:
        t0 = time.perf_counter()
        with d.engine.connect() as conn:
            out = search(conn, user, query, cfg)
        out["query_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out
    try:
        return await run_in_threadpool(_run)
    except ValueError as e:
        raise refuse(400, "bad_query", message=str(e)) from None


@router.get("/api/history/choices")
async def history_choices(d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    cfg = d.config()
    return await run_in_threadpool(choices, cfg, d.engine, user)
