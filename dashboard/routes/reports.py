"""Reports, the supervisor view and the printable alert: what the room did and how fast.

- ``/api/reports``: per grid cell over a time range: alerts and incidents by kind, outcomes, times to
  each step, rankings and false-alarm shares, rules by the name operators read
  (:mod:`dashboard.services.reports`).  ``/api/reports.csv`` is the same per-cell table as CSV.
- ``/api/supervisor``: open incidents by state, age and cell, the overdue ones, the load per operator.
- ``/alerts/{id}/print``: one alert with its timeline and snapshots, laid out for paper.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from dashboard.context import Dashboard
from dashboard.deps import CurrentUser, DashboardDep, current_user, refuse
from dashboard.pages import page
from dashboard.services import reports as service
from dashboard.users import User

router = APIRouter(dependencies=[Depends(current_user)])


@router.get("/reports", include_in_schema=False)
async def reports_page() -> HTMLResponse:
    return page("reports.html")


async def _report(d: Dashboard, user: User, start: float | None, end: float | None, cell: str | None) -> dict[str, Any]:
    try:
        return await service.report(d, user, start, end, cell)
    except service.ReportError as e:
        raise refuse(e.status, e.code, **({"message": str(e)} if e.status == 400 else {})) from None


@router.get("/api/reports")
async def reports(d: DashboardDep, user: CurrentUser, start: float | None = None,
                  end: float | None = None, cell: str | None = None) -> dict[str, Any]:
    return await _report(d, user, start, end, cell)


@router.get("/api/reports.csv")
async def reports_csv(d: DashboardDep, user: CurrentUser, start: float | None = None,
                      end: float | None = None, cell: str | None = None) -> Response:
    """The per-cell table as CSV (seconds; UTF-8 with BOM so spreadsheet programs read the Chinese names)."""
    name, text = service.report_csv(await _report(d, user, start, end, cell))
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/supervisor", include_in_schema=False)
async def supervisor_page() -> HTMLResponse:
    return page("supervisor.html")


@router.get("/api/supervisor")
async def supervisor(d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """Open incidents (alerts beside them) by state, age and cell, the overdue ones, each operator's load."""
    return await service.supervisor(d, user)


@router.get("/alerts/{alert_id}/print", include_in_schema=False)
async def print_page(alert_id: str) -> HTMLResponse:
    return page("print.html")
