"""Video patrol: plans, tours and their log, manual alarms (a finding, a phone report), faults, reports.

Thin: each route validates its body (a model per request: bounded lengths, finite numbers), checks the
role, and calls one function of ``history.patrol``, which checks the grid-cell scope (an operator
patrols only their cells' cameras; an object out of scope answers 404 like an unknown one) and writes
the audit log.  Plans are edited by engineers and above (the room's supervisors); anyone may run a
plan whose cameras are all theirs.  A manual alarm is an alert like a detected one: it is put on the
bus, so every room shows it, and handled through ``/api/alerts/{id}/actions``.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from dashboard.context import Dashboard
from dashboard.deps import CurrentUser, DashboardDep, EngineerUser, RemoteAddr, current_user, refuse, service_call
from dashboard.pages import page
from dashboard.services import patrol_faults as faultcheck
from dashboard.services.responses import Reply
from history import patrol as svc

router = APIRouter(dependencies=[Depends(current_user)])
RowId = Annotated[int, PathParam(ge=1, le=2**62)]  # a row id: larger ones name nothing (and overflow SQL)
T = TypeVar("T")
MAX_RANGE_S = 400 * 86400.0
MAX_EPOCH = 4_102_444_800.0  # 2100: a time after it is a typo


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanCameraBody(Body):
    camera: str = Field(min_length=1, max_length=64)
    dwell_s: float = Field(10.0, ge=1.0, le=3600.0, allow_inf_nan=False)


class ScheduleBody(Body):
    every_min: int = Field(ge=5, le=1440)
    start: str = Field("00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field("00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    grace_min: int = Field(15, ge=0, le=1440)


class PlanBody(Body):
    name: str = Field(min_length=1, max_length=120)
    description: str = Field("", max_length=2000)
    cameras: list[PlanCameraBody] = Field(min_length=1, max_length=256)
    schedule: ScheduleBody | None = None
    version: int | None = Field(None, ge=0)


class StartBody(Body):
    layout: int = Field(1, ge=1, le=16)


class ViewBody(Body):
    camera: str = Field(min_length=1, max_length=64)
    on_screen_s: float = Field(ge=0, le=86400, allow_inf_nan=False)
    offline: bool = False


class MarkBody(Body):
    camera: str = Field(min_length=1, max_length=64)
    mark: str = Field(pattern="^(normal|finding|fault)$")
    fault_kind: str | None = Field(None, pattern="^(no_picture|blurred|moved|dark|wrong_time)$")
    note: str | None = Field(None, max_length=2000)
    snapshot: str | None = Field(None, max_length=2_800_000, description="a JPEG as a data: URL or base64")


class PhoneBody(Body):
    grid_cell: str = Field(min_length=1, max_length=64)
    caller: str = Field("", max_length=100)
    phone: str = Field("", max_length=32, pattern=r"^[0-9+\-() ]*$")
    report: str = Field(min_length=1, max_length=2000)
    point: list[float] | None = Field(None, min_length=2, max_length=2)
    severity: str = Field("high", pattern="^(low|medium|high|critical)$")


class AttachBody(Body):
    cameras: list[str] = Field(min_length=1, max_length=64)
    start: float = Field(ge=0, le=MAX_EPOCH, allow_inf_nan=False)
    end: float = Field(ge=0, le=MAX_EPOCH, allow_inf_nan=False)


class RepairBody(Body):
    step: str = Field(pattern="^(requested|done)$")
    note: str | None = Field(None, max_length=2000)


# ---------------------------------------------------------------------------------------------------- replies
# Each names the fields the pages rely on; the rest of what ``history.patrol`` returns passes unchanged.

class PlanListOut(Reply):
    plans: list[dict[str, Any]]


class PlanOut(Reply):
    id: int
    name: str
    cameras: list[dict[str, Any]]
    version: int


class DeletedOut(Reply):
    deleted: int


class PatrolOut(Reply):
    id: str
    state: str
    cameras: list[dict[str, Any]]
    planned_count: int
    patrolled_count: int
    not_patrolled: list[str]


class PatrolListOut(Reply):
    patrols: list[dict[str, Any]]


class MarkOut(Reply):
    """A mark answers the patrol's log; a finding also the manual alarm it raised (``alert_id``, ``pushed``)."""
    patrol: dict[str, Any]


class RaisedOut(Reply):
    alert_id: str
    pushed: bool


class AlarmOut(Reply):
    alert_id: str
    source: str
    cameras: list[str]


class FaultListOut(Reply):
    faults: list[dict[str, Any]]
    offline_after_s: float


class FaultOut(Reply):
    id: int
    camera: str
    state: str


class ReportOut(Reply):
    start: float
    end: float
    operators: list[dict[str, Any]]
    total: dict[str, Any]
    availability: dict[str, float]
    availability_by_day: dict[str, Any]


class SupervisorOut(Reply):
    due: list[dict[str, Any]]
    overdue: list[dict[str, Any]]
    running: list[dict[str, Any]]


def _tx(d: Dashboard, fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    """``fn(conn, *args)`` in one transaction."""
    def call() -> T:
        with d.engine.begin() as conn:
            return fn(conn, *args)
    return call


def _alarms(request: Request, d: DashboardDep) -> svc.Alarms:
    """The process's manual-alarm writer (it holds a bus connection), made on first use."""
    a = getattr(request.app.state, "patrol_alarms", None)
    if a is None:
        a = request.app.state.patrol_alarms = svc.Alarms(d.engine, d.redis_url)
    return a  # type: ignore[no-any-return]


AlarmsDep = Annotated[svc.Alarms, Depends(_alarms)]


def _plan_cameras(body: PlanBody) -> tuple[list[svc.PlanCamera], svc.Schedule | None]:
    cams = [svc.PlanCamera(c.camera, c.dwell_s) for c in body.cameras]
    sched = svc.Schedule(**body.schedule.model_dump()) if body.schedule else None
    return cams, sched


def _range(start: float | None, end: float | None, default_s: float = 12 * 3600.0) -> tuple[float, float]:
    end = time.time() if end is None else end
    start = end - default_s if start is None else start
    if not (0 <= start < end) or end - start > MAX_RANGE_S or end != end or start != start:
        raise refuse(400, "bad_range")
    return start, end


# ---------------------------------------------------------------------------------------------------- pages

@router.get("/patrol", include_in_schema=False)
async def patrol_page() -> HTMLResponse:
    return page("patrol.html")


# ---------------------------------------------------------------------------------------------------- plans

@router.get("/api/patrol/plans", response_model=PlanListOut)
async def plans(d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    return {"plans": await service_call(_tx(d, svc.list_plans, user))}


@router.get("/api/patrol/plans/{plan_id}", response_model=PlanOut)
async def plan(plan_id: RowId, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    return await service_call(_tx(d, svc.get_plan, user, plan_id))


@router.post("/api/patrol/plans", response_model=PlanOut)
async def create_plan(body: PlanBody, d: DashboardDep, user: EngineerUser, remote: RemoteAddr) -> dict[str, Any]:
    cams, sched = _plan_cameras(body)
    return await service_call(_tx(d, svc.save_plan, d.config(), user, None, body.name, body.description, cams, sched,
                                  None, remote))


@router.put("/api/patrol/plans/{plan_id}", response_model=PlanOut)
async def update_plan(plan_id: RowId, body: PlanBody, d: DashboardDep, user: EngineerUser,
                      remote: RemoteAddr) -> dict[str, Any]:
    cams, sched = _plan_cameras(body)
    return await service_call(_tx(d, svc.save_plan, d.config(), user, plan_id, body.name, body.description, cams, sched,
                                  body.version, remote))


@router.delete("/api/patrol/plans/{plan_id}", response_model=DeletedOut)
async def delete_plan(plan_id: RowId, d: DashboardDep, user: EngineerUser, remote: RemoteAddr) -> dict[str, Any]:
    await service_call(_tx(d, svc.delete_plan, user, plan_id, remote))
    return {"deleted": plan_id}


@router.post("/api/patrol/plans/{plan_id}/start", response_model=PatrolOut)
async def start(plan_id: RowId, body: StartBody, d: DashboardDep, user: CurrentUser,
                remote: RemoteAddr) -> dict[str, Any]:
    return await service_call(_tx(d, svc.start_patrol, d.config(), user, plan_id, body.layout, remote))


# -------------------------------------------------------------------------------------------------- patrols

@router.get("/api/patrols", response_model=PatrolListOut)
async def patrol_list(d: DashboardDep, user: CurrentUser, start: float | None = None,
                      end: float | None = None) -> dict[str, Any]:
    t0, t1 = _range(start, end)
    return {"patrols": await service_call(_tx(d, svc.list_patrols, d.config(), user, t0, t1))}


@router.get("/api/patrols/{patrol_id}", response_model=PatrolOut)
async def patrol_log(patrol_id: str, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    return await service_call(_tx(d, svc.patrol_log, d.config(), user, patrol_id[:32]))


@router.post("/api/patrols/{patrol_id}/views", response_model=PatrolOut)
async def view(patrol_id: str, body: ViewBody, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """The tour showed a camera this long; ``offline``: no picture, skipped, and listed as a fault."""
    since = (await faultcheck.offline_since(d)).get(body.camera) if body.offline else None
    return await service_call(_tx(d, svc.record_view, d.config(), user, patrol_id[:32], body.camera, body.on_screen_s,
                                  body.offline, since or None))


@router.post("/api/patrols/{patrol_id}/marks", response_model=MarkOut)
async def mark(patrol_id: str, body: MarkBody, d: DashboardDep, user: CurrentUser, alarms: AlarmsDep,
               remote: RemoteAddr) -> dict[str, Any]:
    """正常 / 故障 (with its kind) / 发现情况 (a note and the live frame: raises a manual alarm in every room)."""
    if body.mark == "finding":
        jpeg = None
        if body.snapshot:
            raw = body.snapshot.split(",", 1)[1] if body.snapshot.startswith("data:") else body.snapshot
            try:
                jpeg = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise refuse(400, "bad_snapshot") from None
        return await service_call(alarms.finding, d.config(), user, patrol_id[:32], body.camera, body.note or "", jpeg,
                                  remote)
    log = await service_call(_tx(d, svc.mark_camera, d.config(), user, patrol_id[:32], body.camera, body.mark,
                                 body.fault_kind, body.note, None, None, remote))
    return {"patrol": log}


@router.post("/api/patrols/{patrol_id}/finish", response_model=PatrolOut)
async def finish(patrol_id: str, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    return await service_call(_tx(d, svc.finish_patrol, d.config(), user, patrol_id[:32], remote))


# ---------------------------------------------------------------------------------------------- manual alarms

@router.post("/api/alarms/phone", response_model=RaisedOut)
async def phone(body: PhoneBody, d: DashboardDep, user: CurrentUser, alarms: AlarmsDep,
                remote: RemoteAddr) -> dict[str, Any]:
    """报警: a citizen's call about a place in one of the user's cells; handled like any alert."""
    if body.point is not None and not all(abs(v) < 1e9 and v == v for v in body.point):
        raise refuse(400, "bad_point")
    return await service_call(alarms.phone, d.config(), user, body.grid_cell, body.caller, body.phone, body.report,
                              body.point, body.severity, remote)


@router.get("/api/alarms/{alert_id}", response_model=AlarmOut)
async def alarm(alert_id: str, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    return await service_call(_tx(d, svc.get_alarm, user, alert_id[:128]))


@router.post("/api/alarms/{alert_id}/attach", response_model=AlarmOut)
async def attach(alert_id: str, body: AttachBody, d: DashboardDep, user: CurrentUser,
                 remote: RemoteAddr) -> dict[str, Any]:
    """Cameras and a time range found later (the evidence to export with /api/exports)."""
    if not body.start < body.end or body.end - body.start > 86400:
        raise refuse(400, "bad_range")
    return await service_call(_tx(d, svc.attach, d.config(), user, alert_id[:128], body.cameras, body.start, body.end,
                                  remote))


# --------------------------------------------------------------------------------------------------- faults

@router.get("/api/patrol/faults", response_model=FaultListOut)
async def faults(d: DashboardDep, user: CurrentUser, repaired: bool = False) -> dict[str, Any]:
    """The fault list of the user's cells; cameras offline or tampered longer than the threshold are added first."""
    await faultcheck.check(d)
    return {"faults": await service_call(_tx(d, svc.list_faults, user, repaired)),
            "offline_after_s": d.config().dashboard.fault_after_s}


@router.post("/api/patrol/faults/{fault_id}/repair", response_model=FaultOut)
async def repair(fault_id: RowId, body: RepairBody, d: DashboardDep, user: CurrentUser,
                 remote: RemoteAddr) -> dict[str, Any]:
    return await service_call(_tx(d, svc.repair_step, user, fault_id, body.step, user.has_role("engineer"), body.note,
                                  remote))


# -------------------------------------------------------------------------------------------------- reports

@router.get("/api/patrol/report", response_model=ReportOut)
async def report(d: DashboardDep, user: CurrentUser, start: float | None = None,
                 end: float | None = None) -> dict[str, Any]:
    """Per operator over a shift (default: the last 12 hours): plans run, coverage, findings, alarms, faults;
    per camera its availability over the range and per day (the share not faulty nor offline)."""
    t0, t1 = _range(start, end)
    return await service_call(_tx(d, svc.shift_report, d.config(), user, t0, t1))


@router.get("/api/patrol/supervisor", response_model=SupervisorOut)
async def supervisor(d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """Scheduled plans due and overdue, and the patrols running now."""
    return await service_call(_tx(d, svc.supervisor_view, d.config(), user))
