"""Exports from the page: an alert's clip or cameras and a range, run in the background, downloaded by scope.

The cutting, the manifest, the signature, the holds and the cases are ``pipeline.export``'s (the
command line makes the same files); the job runner (threads of this process, progress in the job's
row, jobs of dead processes failed) is ``dashboard.services.export_jobs``', the cases, protected
storage and the timeline ``dashboard.services.cases``'.  Each route here checks its input and scope
and hands off, with every step in the audit log.

Scopes: a user may export, list, download and release only exports whose cameras all lie in grid
cells they may see (admins and ``*`` see every cell).  A camera of another cell is answered 404,
as everywhere in the dashboard, so its existence is not told either.

Why a request is checked twice: the names, the range, the scope and that something is recorded are
checked *before* the answer, so the page gets a clear refusal at once (``no_recording`` with the
sentence saying what is missing) instead of a job that fails a moment later; ``run_export`` checks
everything again on its thread (the recordings may change meanwhile).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboard.deps import CurrentUser, DashboardDep, RemoteAddr, current_user, found, refuse
from dashboard.files import UnsafePath, safe_join
from dashboard.orphans import parse_open
from dashboard.pages import add_pages
from dashboard.services import cases as case_service
from dashboard.services import export_jobs as jobs
from dashboard.services.alerts import ensure
from dashboard.services.export_jobs import MAX_CAMERAS, check_cameras, check_case, job_view, loads_json, parse_time_arg
from dashboard.services.responses import Reply

router = APIRouter(dependencies=[Depends(current_user)])

TIMELINE_MAX_S = 7 * 86400.0
MEDIA = {".mp4": "video/mp4", ".json": "application/json", ".txt": "text/plain; charset=utf-8",
         ".sig": "application/octet-stream", ".zip": "application/zip"}


class ExportBody(BaseModel):
    alert_id: str | None = Field(None, max_length=128)
    cameras: list[str] = Field(default_factory=list, max_length=MAX_CAMERAS)
    start: float | str | None = None
    end: float | str | None = None
    case: str | None = Field(None, max_length=80)
    case_description: str | None = Field(None, max_length=4000)
    precise: bool = False


class CaseBody(BaseModel):
    name: str = Field(max_length=80)
    description: str = Field("", max_length=4000)
    alerts: list[str] = Field(default_factory=list, max_length=50)


class JobOut(Reply):
    id: str
    state: str
    cameras: list[str]


class JobListOut(Reply):
    exports: list[dict[str, Any]]
    cases: list[dict[str, Any]]


class CaseOut(Reply):
    name: str
    alerts: list[str]


class StorageOut(Reply):
    total_bytes: int
    export_files_bytes: int


# ------------------------------------------------------------------------------------------ pages

add_pages(router, {"/exports": "exports.html", "/timeline": "timeline.html"})


# ------------------------------------------------------------------------------------------ jobs

@router.post("/api/exports", status_code=202, response_model=JobOut)
async def start_export(body: ExportBody, request: Request, d: DashboardDep, user: CurrentUser,
                       remote: RemoteAddr) -> dict[str, Any]:
    """Start an export of an alert's clip (``alert_id``) or of ``cameras`` from ``start`` to ``end``."""
    pool = jobs.runner(request.app.state, d)  # made (and stale jobs of dead processes failed) before the job's row
    if body.alert_id:
        await ensure(d, body.alert_id)  # the alert may be on the bus but not stored yet
    return await jobs.start(d, pool, user, remote, alert_id=body.alert_id, cameras=body.cameras, t_start=body.start,
                            t_end=body.end, case_name=body.case, case_description=body.case_description,
                            precise=body.precise)


@router.get("/api/exports", response_model=JobListOut)
async def list_exports(d: DashboardDep, user: CurrentUser, limit: int = 100) -> dict[str, Any]:
    """The user's visible exports, newest first, and the cases."""
    return await run_in_threadpool(jobs.list_jobs, d, user, max(1, min(limit, 500)))


@router.get("/api/exports/{job_id}", response_model=JobOut)
async def get_export(job_id: str, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """One job: the page polls it for progress."""
    row = found(await run_in_threadpool(jobs.visible_job, d, job_id, user))
    return job_view(row, user)


@router.get("/api/exports/{job_id}/events")
async def export_events(job_id: str, request: Request, d: DashboardDep, user: CurrentUser) -> StreamingResponse:
    """Server-sent ``progress`` events of one job until it is done or failed (the poll's push twin)."""
    if await run_in_threadpool(jobs.visible_job, d, job_id, user) is None:
        raise refuse(404, "not_found")
    return StreamingResponse(jobs.progress_events(d, job_id, user, request.is_disconnected),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/api/exports/{job_id}/download")
async def download_export(job_id: str, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> FileResponse:
    """The export as one ZIP (its videos, manifest.json/.txt/.sig), for users who may see all its cameras."""
    row = await run_in_threadpool(jobs.visible_job, d, job_id, user)
    if row is None or row.state not in ("done", "released") or not row.path:
        raise refuse(404, "not_found")
    try:
        path = await run_in_threadpool(jobs.export_zip, d, row)
    except OSError as e:
        raise refuse(410, "export_gone", message=str(e)) from None
    if not path.is_file():
        raise refuse(410, "export_gone", message=f"{path.name} is no longer on disk")
    await run_in_threadpool(jobs.audit, d, "export_download", user, remote, job=job_id,
                            export_id=row.export_id, alert_id=row.alert_id, file=path.name)
    return FileResponse(path, media_type="application/zip", filename=f"sharpeye-export-{row.export_id}.zip",
                        headers={"Cache-Control": "private, no-store"})


@router.get("/api/exports/{job_id}/files/{name}", response_model=None)
async def export_file(job_id: str, name: str, d: DashboardDep, user: CurrentUser,
                      remote: RemoteAddr) -> FileResponse | StreamingResponse:
    """One file of an export (a camera's MP4, the manifest); only names the export lists are served."""
    row = await run_in_threadpool(jobs.visible_job, d, job_id, user)
    if row is None or row.state not in ("done", "released") or not row.path:
        raise refuse(404, "not_found")
    if name not in {f["name"] for f in loads_json(row.files, [])}:
        raise refuse(404, "not_found")  # also every "../x" or absolute name: never in the list
    media = MEDIA.get(Path(name).suffix, "application/octet-stream")
    path = Path(row.path)
    await run_in_threadpool(jobs.audit, d, "export_download", user, remote, job=job_id,
                            export_id=row.export_id, alert_id=row.alert_id, file=name)
    headers = {"Cache-Control": "private, no-store"}
    if path.suffix != ".zip":
        try:  # the one safe join for files served
            f = safe_join(path, name, must_exist=False)
        except UnsafePath:
            raise refuse(404, "not_found") from None
        if not f.is_file():
            raise refuse(410, "export_gone")
        return FileResponse(f, media_type=media, filename=name, headers=headers)
    member = f"{row.export_id}/{name}"
    try:
        with zipfile.ZipFile(path) as z:
            size = z.getinfo(member).file_size
    except (OSError, KeyError, zipfile.BadZipFile):
        raise refuse(410, "export_gone") from None

    def chunks() -> Iterator[bytes]:
        with zipfile.ZipFile(path) as z, z.open(member) as fh:
            while block := fh.read(1 << 20):
                yield block
    headers.update({"Content-Length": str(size), "Content-Disposition": f'attachment; filename="{name}"'})
    return StreamingResponse(chunks(), media_type=media, headers=headers)


@router.post("/api/exports/{job_id}/release", response_model=JobOut)
async def release_export(job_id: str, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """Release an export's hold: retention may delete its recordings when due (its files stay)."""
    row = found(await run_in_threadpool(jobs.visible_job, d, job_id, user))
    if row.state != "done" or not row.export_id:
        raise refuse(409, "not_releasable", state=row.state)
    if row.username != user.username and not user.has_role("admin"):
        raise refuse(403, "forbidden_release")
    return await run_in_threadpool(jobs.release, d, row, user, remote)


# ------------------------------------------------------------------------------------------ cases

@router.get("/api/cases", response_model=list[CaseOut])
async def list_cases(d: DashboardDep, user: CurrentUser) -> list[dict[str, Any]]:
    return await run_in_threadpool(case_service.list_cases, d, user)


@router.post("/api/cases", response_model=CaseOut)
async def save_case(body: CaseBody, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """Create a case, or change its description and linked alerts (alerts of the user's cells only)."""
    name = check_case(body.name)
    if name is None:
        raise refuse(400, "bad_name", message="a case needs a name")
    for aid in dict.fromkeys(body.alerts):  # on the bus but not stored yet by the archiver
        if 0 < len(aid) <= 128:
            await ensure(d, aid)
    return await run_in_threadpool(case_service.save_case, d, user, name, body.description, body.alerts, remote)


@router.get("/api/cases/{name}/download")
async def download_case(name: str, d: DashboardDep, user: CurrentUser, remote: RemoteAddr,
                        owner: str | None = Query(None, max_length=64)) -> FileResponse:
    """The user's own case as one ZIP, or (``owner``) the command line's or, for admins, anyone's; for users
    who may see every camera of every export in it."""
    check_case(name)
    path = found(await run_in_threadpool(case_service.case_download, d, user, name, owner))
    await run_in_threadpool(jobs.audit, d, "case_download", user, remote, case=name, owner=owner or user.username,
                            file=path.name)
    return FileResponse(path, media_type="application/zip", filename=f"sharpeye-case-{name.replace(' ', '_')}.zip",
                        headers={"Cache-Control": "private, no-store"})


# ------------------------------------------------------------------------------------------ storage, timeline

@router.get("/api/exports-storage", response_model=StorageOut)
async def storage(d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    open_now = [m for m in parse_open(await d.redis().hgetall(d.keys.open_alerts)).values()
                if user.sees_cell((m.get("grid_cell") or {}).get("id"))]
    return await run_in_threadpool(case_service.protected_storage, d, user, open_now)


@router.get("/api/timeline")
async def timeline(d: DashboardDep, user: CurrentUser, start: str = Query(max_length=64),
                   end: str = Query(max_length=64),
                   camera: list[str] = Query(default_factory=list, max_length=MAX_CAMERAS)) -> JSONResponse:
    """Recorded ranges, gaps (with reasons), held ranges and alerts of the user's cameras in [start, end]."""
    cfg = d.config()
    t0, t1 = parse_time_arg(start, cfg, "start"), parse_time_arg(end, cfg, "end")
    if not t1 > t0 or t1 - t0 > TIMELINE_MAX_S:
        raise refuse(400, "bad_range", message="the window must end after it starts and last at most 7 days")
    rec_dir = d.data_dir / cfg.recordings.dir
    visible = [c for c, cam in cfg.cameras.items() if user.sees_cell(cam.grid_cell)]
    cams = check_cameras(cfg, user, camera, rec_dir) if camera else visible
    return JSONResponse(await run_in_threadpool(case_service.timeline, d, user, cams, t0, t1),
                        headers={"Cache-Control": "no-store"})
