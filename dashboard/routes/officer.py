"""The dispatched officer's phone page: reached by the one-time link the operator sends, no account.

The link (``/o/<token>``) names one dispatched alert and allows exactly the remaining dispatch
steps (signed for → on scene → feedback), each stored and pushed to the command room like an
operator's action.  It ends with the feedback, when the operator makes a new one, or after
``LINK_TTL_S``; an unknown or ended link is a plain 404.  The token is a 192-bit secret in the
path, so no session or CSRF token applies; like the log-in, a step must be a same-origin JSON POST.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboard.deps import DashboardDep, RemoteAddr, refuse
from dashboard.files import UnsafePath, safe_join
from dashboard.pages import page
from dashboard.workflow import WorkflowError, alert_view, link_alert, officer_step

router = APIRouter()


class StepBody(BaseModel):
    step: str = Field(max_length=16)
    note: str | None = Field(None, max_length=2000)


@router.get("/o/{token}", include_in_schema=False)
async def officer_page(token: str, d: DashboardDep) -> HTMLResponse:

    def _ok() -> bool:
        with d.engine.connect() as conn:
            return link_alert(conn, token) is not None
    # an ended link still gets the phone page (404), which tells the officer to call the room
    return page("officer.html", 200 if await run_in_threadpool(_ok) else 404)


@router.get("/api/o/{token}")
async def officer_alert(token: str, d: DashboardDep) -> dict[str, Any]:
    """What the officer needs: where, what, when, and which steps are done (no operator names)."""

    def _get() -> dict[str, Any] | None:
        with d.engine.connect() as conn:
            row = link_alert(conn, token)
            return alert_view(row) if row is not None else None
    a = await run_in_threadpool(_get)
    if a is None:
        raise refuse(404, "link_invalid")
    return {"alert_id": a["alert_id"], "camera": a["camera"], "grid_cell": a["grid_cell"], "rule": a["rule"],
            "labels": a["labels"], "start_time": a["start_time"], "dispatch": a["dispatch"], "state": a["state"],
            "has_snapshot": bool(a["snapshot"]), "timezone": d.config().timezone}


@router.get("/api/o/{token}/snapshot")
async def officer_snapshot(token: str, d: DashboardDep) -> FileResponse:

    def _path() -> str | None:
        with d.engine.connect() as conn:
            row = link_alert(conn, token)
            return row.snapshot_path if row is not None else None
    rel = await run_in_threadpool(_path)
    try:  # the stored path starts with snapshots/: the one safe join, under the snapshots folder only
        path = safe_join(d.data_dir / "snapshots", (rel or "").removeprefix("snapshots/"))
    except UnsafePath:
        raise refuse(404, "not_found") from None
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post("/api/o/{token}/steps")
async def officer_report(token: str, body: StepBody, request: Request, d: DashboardDep,
                         remote: RemoteAddr) -> dict[str, Any]:
    origin = request.headers.get("origin")
    if not request.headers.get("content-type", "").startswith("application/json") or (
            origin is not None and urlsplit(origin).netloc != request.headers.get("host")):
        raise refuse(403, "csrf")

    def _step() -> tuple[dict[str, Any], dict[str, Any]]:
        with d.engine.begin() as conn:
            return officer_step(conn, token, body.step, body.note, remote)
    try:
        alert, action = await run_in_threadpool(_step)
    except WorkflowError as e:
        raise refuse(e.status, e.code, **e.extra) from None
    await d.push_action(alert, action)
    return {"dispatch": alert["dispatch"], "state": alert["state"]}
