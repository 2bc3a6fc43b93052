"""The audit page (审计日志) and its API, and the log-in throttles an admin can see and clear.

- ``/audit``: the page; ``/api/audit``: one page of rows, filtered; ``/api/audit.csv``: the same as CSV.
  Admins read every row, engineers (supervisors) the rows of their cells, operators none (403).
- ``/api/admin/throttles``: (name, address) pairs slowed by failed log-ins; ``.../clear`` forgets one.
There is no route that changes or deletes an audit row.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboard.deps import AdminUser, DashboardDep, EngineerUser, RemoteAddr, current_user, refuse
from dashboard.pages import page
from dashboard.security import clear_throttles, list_throttles
from dashboard.services import audit
from dashboard.services.responses import Reply
from history.audit import record

router = APIRouter(dependencies=[Depends(current_user)])


def _time() -> Any:
    """A time filter: finite epoch seconds."""
    return Query(None, ge=0, le=1e11, allow_inf_nan=False)


class AuditOut(Reply):
    rows: list[dict[str, Any]]
    next_before: int | None
    actions: list[str]


class ClearThrottle(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    remote: str | None = Field(None, max_length=64)


def _filter(user: str | None, action: str | None, camera: str | None, cell: str | None, since: float | None,
            until: float | None, before: int | None) -> audit.AuditFilter:
    return audit.AuditFilter(user=user or None, action=action or None, camera=camera or None, cell=cell or None,
                             since=since, until=until, before_id=before)


@router.get("/audit", include_in_schema=False)
async def audit_page(_user: EngineerUser) -> HTMLResponse:
    return page("audit.html")


@router.get("/api/audit", response_model=AuditOut)
async def audit_rows(d: DashboardDep, viewer: EngineerUser,
                     user: str | None = Query(None, max_length=64), action: str | None = Query(None, max_length=32),
                     camera: str | None = Query(None, max_length=64), cell: str | None = Query(None, max_length=64),
                     since: float | None = _time(), until: float | None = _time(),
                     before: int | None = Query(None, ge=1, le=2**53),
                     limit: int = Query(200, ge=1, le=audit.MAX_PAGE)) -> dict[str, Any]:
    """Newest first; ``next_before`` asks for the next page."""
    f = _filter(user, action, camera, cell, since, until, before)
    return await run_in_threadpool(audit.read, d.engine, viewer, f, limit)


@router.get("/api/audit.csv")
async def audit_csv(d: DashboardDep, viewer: EngineerUser, remote: RemoteAddr,
                    user: str | None = Query(None, max_length=64), action: str | None = Query(None, max_length=32),
                    camera: str | None = Query(None, max_length=64), cell: str | None = Query(None, max_length=64),
                    since: float | None = _time(),
                    until: float | None = _time()) -> StreamingResponse:
    """The filtered rows as a CSV file (the export itself is audited)."""
    f = _filter(user, action, camera, cell, since, until, None)

    def _note() -> None:
        with d.engine.begin() as conn:
            record(conn, "audit_export", user_id=viewer.id, username=viewer.username, remote=remote,
                   data={k: v for k, v in vars(f).items() if v is not None} or None)
    await run_in_threadpool(_note)
    return StreamingResponse(audit.csv_lines(d.engine, viewer, f), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="sharpeye-audit.csv"',
                                      "Cache-Control": "private, no-store"})


@router.get("/api/admin/throttles")
async def throttles(d: DashboardDep, _admin: AdminUser) -> dict[str, Any]:
    """(name, address) pairs with failed log-ins, and how long each still waits."""
    return {"throttles": await run_in_threadpool(list_throttles, d.engine)}


@router.post("/api/admin/throttles/clear")
async def clear_throttle(body: ClearThrottle, d: DashboardDep, admin: AdminUser, remote: RemoteAddr) -> dict[str, Any]:
    """Forget a name's failures (from one address, or every address)."""
    def _clear() -> int:
        n = clear_throttles(d.engine, body.username, body.remote)
        with d.engine.begin() as conn:
            record(conn, "login_throttle_cleared", user_id=admin.id, username=admin.username, remote=remote,
                   data={"for": body.username, "address": body.remote, "pairs": n})
        return n
    n = await run_in_threadpool(_clear)
    if n == 0:
        raise refuse(404, "not_found")
    return {"cleared": n}
