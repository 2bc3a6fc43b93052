"""Alerts: the command-room page, the alert list, one alert with its timeline, actions, the live stream.

Each route checks its input and the user's cells and calls one function of ``dashboard.services.alerts``
(the list merged with the bus, the detail view, the workflow actions, the server-sent event stream).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from dashboard.deps import CurrentUser, DashboardDep, RemoteAddr, current_user, found, refuse
from dashboard.pages import page
from dashboard.paging import page_officer
from dashboard.services import alerts as alert_service
from dashboard.services import triage
from dashboard.services.alerts import HEARTBEAT_S
from dashboard.services.responses import Reply
from dashboard.workflow import Request as ActionRequest
from dashboard.workflow import WorkflowError

__all__ = ["HEARTBEAT_S", "router"]  # the heartbeat period is part of the stream's contract with the page

router = APIRouter(dependencies=[Depends(current_user)])
Short = Annotated[str | None, Query(max_length=200)]
CURSOR_PART = re.compile(r"(\$|\d{1,20}(-\d{1,20})?)?")  # fullmatch: a stream id, "$" (from now) or empty


class AlertListOut(Reply):
    alerts: list[dict[str, Any]]
    camera_events: list[dict[str, Any]]
    cursor: str
    orphans: dict[str, Any]
    orphan_after_s: float


class AlertOut(Reply):
    alert: dict[str, Any]
    timeline: list[Any]
    snapshots: list[str]
    messages: list[dict[str, Any]]
    procedure: Any = None


class BulkClose(BaseModel):
    camera: str = Field(max_length=64)
    note: str = Field(max_length=4000)


class BulkCloseOut(Reply):
    closed: int
    skipped: int


class ActionBody(BaseModel):
    action: str = Field(max_length=32)
    note: str | None = Field(None, max_length=4000)
    classification: str | None = None
    to: str | None = Field(None, max_length=64)
    at: float | None = Field(None, allow_inf_nan=False, ge=0, le=1e11)  # the workflow bounds it by the alert and now
    version: int | None = Field(None, ge=0, le=2**53)


class ActionOut(Reply):
    alert: dict[str, Any]
    action: dict[str, Any]
    officer_link: str | None


class OfficerLinkOut(Reply):
    officer_link: str


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    return page("index.html")


@router.get("/api/alerts", response_model=AlertListOut)
async def list_alerts(d: DashboardDep, user: CurrentUser, limit: int = 300, state: Short = None,
                      severity: Short = None, camera: Short = None, cell: Short = None, owner: Short = None,
                      rule: Short = None, classification: Short = None, q: Short = None,
                      sort: Literal["age", "priority"] = "age") -> dict[str, Any]:
    """The room's items (one per incident: open and closed this shift) merged with the bus, filtered and sorted
    (dashboard/services/triage.py); the cursor to follow from."""
    f = triage.Filters(state, severity, camera, cell, owner, rule, classification, q, sort)
    return await triage.room_list(d, user, max(1, min(limit, 2000)), f)


class BulkBody(BaseModel):
    ids: list[Annotated[str, Field(max_length=128)]] = Field(max_length=triage.MAX_BULK)
    action: str = Field(max_length=32)
    classification: str | None = Field(None, max_length=16)
    note: str | None = Field(None, max_length=4000)


@router.post("/api/alerts/bulk")
async def bulk(body: BulkBody, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """Acknowledge or close (with classification and comment) several items; those not allowed are skipped."""
    try:
        return await triage.bulk(d, user, body.ids, body.action, body.classification, body.note, remote)
    except WorkflowError as e:
        raise refuse(e.status, e.code, **e.extra) from None


@router.get("/api/alerts/{alert_id}", response_model=AlertOut)
async def get_alert(alert_id: str, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """One alert, its timeline (every action) and its bus messages (detection updates)."""
    return found(await alert_service.alert_detail(d, user, alert_id))


@router.post("/api/alerts/bulk-close", response_model=BulkCloseOut)
async def bulk_close(body: BulkClose, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """Close every open alert of one camera as a false alarm with one reason (a flapping camera).

    Alerts another operator is handling are left to them; the answer counts closed and skipped.
    """
    cam = d.config().cameras.get(body.camera)
    if cam is None or not user.sees_cell(cam.grid_cell):
        raise refuse(404, "not_found")
    if not body.note.strip():
        raise refuse(400, "comment_required")
    return await alert_service.bulk_close(d, user, body.camera, body.note, remote)


@router.post("/api/alerts/{alert_id}/actions", response_model=ActionOut)
async def act(alert_id: str, body: ActionBody, request: Request, background: BackgroundTasks, d: DashboardDep,
              user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """Do one workflow action; it is stored, then pushed to every open page."""
    req = ActionRequest(**body.model_dump())
    try:
        alert, action, token = await alert_service.act(d, user, alert_id, req, remote)
    except WorkflowError as e:
        raise refuse(e.status, e.code, **e.extra) from None
    cell = d.config().grid_cells.get(alert["grid_cell"]["id"])
    if token and cell is not None and cell.webhook:  # the cell's paging system, after the response
        link = str(request.base_url).rstrip("/") + f"/o/{token}"
        background.add_task(page_officer, d.engine, cell.webhook, alert, link)
    return {"alert": alert, "action": action, "officer_link": f"/o/{token}" if token else None}


@router.post("/api/alerts/{alert_id}/officer-link", response_model=OfficerLinkOut)
async def new_officer_link(alert_id: str, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """A fresh link for the dispatched officer (the old one stops working): the operator lost it, or resends."""
    try:
        token = await alert_service.new_officer_link(d, user, alert_id, remote)
    except WorkflowError as e:
        raise refuse(e.status, e.code, **e.extra) from None
    return {"officer_link": f"/o/{token}"}


@router.get("/api/stream")
async def stream(request: Request, d: DashboardDep, user: CurrentUser, cursor: str = "$|$") -> StreamingResponse:
    """Server-sent events: bus messages (``message``), actions (``action``), camera lists (``cameras``),
    open alerts nobody owns (``orphans``), ``notice`` for this user (an alert forwarded to them or taken from
    them), ``heartbeat`` every few seconds while the bus answers, and
    ``unavailable`` just before the stream ends because the bus failed.

    Every event that moves the position carries the id ``<events id>|<actions id>`` (heartbeats too, so
    entries filtered out for this user still move it): a page that reconnects with it loses nothing.
    """
    # a reconnecting EventSource tells where it stopped: resume there, nothing is lost
    start = request.headers.get("last-event-id") or cursor
    ev_id, _, act_id = start.partition("|")
    if not (CURSOR_PART.fullmatch(ev_id) and CURSOR_PART.fullmatch(act_id)):
        raise refuse(400, "bad_cursor")  # Redis would refuse the id; better said now than as a broken stream
    return StreamingResponse(alert_service.live_events(d, user, ev_id, act_id, request.is_disconnected),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/snapshots/{rel:path}")
async def snapshot(rel: str, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> FileResponse:
    """A snapshot JPEG, for users of the camera's grid cell only (the path starts with the camera id)."""
    path = found(await alert_service.snapshot_file(d, user, rel, remote))
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
