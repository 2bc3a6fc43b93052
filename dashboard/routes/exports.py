"""Exports from the page: an alert's clip or cameras and a range, run in the background, downloaded by scope.

The cutting, the manifest, the signature, the holds and the cases are ``pipeline.export``'s (the
command line makes the same files); this module only starts an export for a logged-in user, keeps
its record in the history database (``export_jobs``, ``cases``), reports its progress, serves its
files and releases it, with every step in the audit log.

Scopes: a user may export, list, download and release only exports whose cameras all lie in grid
cells they may see (admins and ``*`` see every cell).  A camera of another cell is answered 404,
as everywhere in the dashboard, so its existence is not told either.

Why a request is checked twice: the route checks names, the range, the scope and that something is
recorded *before* it answers, so the page gets a clear refusal at once (``no_recording`` with the
sentence saying what is missing) instead of a job that fails a moment later; ``run_export`` checks
everything again on its thread (the recordings may change meanwhile).

A job runs on a thread of this dashboard process (``MAX_RUNNING`` at a time; stream copy is I/O
bound).  Its progress (bytes of recordings read) is written to its row at most every
``PROGRESS_EVERY_S``, so any dashboard process can answer the page's poll.  A job left ``running``
by a dashboard process that died is marked failed: on this host when its pid is gone, on another host
(several dashboards behind a load balancer) when its runner's beat in the bus (``P:exports:runner:<host:pid>``,
refreshed every ``RUNNER_BEAT_S``) has expired; checked when a process starts its first export and when
the list is read (at most every ``ORPHAN_CHECK_S``).  Exports, cases and releases of ``sharpeye export``
(files only, no database) are taken in when the lists are read (dashboard/exports_import.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import hashlib
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sqlalchemy import Engine, select, update
from starlette.concurrency import run_in_threadpool

from dashboard import exports_import
from dashboard.context import Dashboard, ctx
from dashboard.deps import current_user, refuse, remote_addr
from dashboard.orphans import parse_open
from dashboard.pages import page
from dashboard.users import User
from history.audit import record
from history.catalogue import dashboard_fetcher, recorded_anywhere
from history.schema import alerts, cases, export_jobs
from pipeline.config import Config
from pipeline.export import cases as export_cases
from pipeline.export import holds
from pipeline.export.alerts import AlertClip
from pipeline.export.job import MAX_RANGE_S, ExportError, ExportRequest, ExportResult, run_export
from pipeline.export.manifest import hash_path
from pipeline.export.paths import UnsafeName, check_camera_id, check_case_name, exports_root, inside
from pipeline.export.protect import alert_ranges
from pipeline.export.times import iso_local, parse_time
from pipeline.publish import bus
from pipeline.record.catalog import Recordings

log = logging.getLogger("sharpeye.dashboard.exports")
router = APIRouter(dependencies=[Depends(current_user)])

MAX_RUNNING = 2  # exports at once per dashboard process; more wait their turn (state "queued")
PROGRESS_EVERY_S = 0.3
MAX_CAMERAS = 32
TIMELINE_MAX_S = 7 * 86400.0
# times outside these are typing errors (or a fuzzer) and would overflow date conversions
EARLIEST, LATEST = 946684800.0, 4102444800.0  # 2000-01-01, 2100-01-01 UTC
ZIP_CACHE = ("cache", "export-zips")  # under data_dir: ZIPs of case exports and of whole cases, made on demand
MEDIA = {".mp4": "video/mp4", ".json": "application/json", ".txt": "text/plain; charset=utf-8",
         ".sig": "application/octet-stream", ".zip": "application/zip"}


# ------------------------------------------------------------------------------------------ pages

@router.get("/exports", include_in_schema=False)
async def exports_page() -> HTMLResponse:
    return page("exports.html")


@router.get("/timeline", include_in_schema=False)
async def timeline_page() -> HTMLResponse:
    return page("timeline.html")


# ------------------------------------------------------------------------------------------ helpers

def _loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def _runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _check_time(t: float, what: str) -> float:
    if not math.isfinite(t) or not EARLIEST <= t <= LATEST:
        raise refuse(400, "bad_time", message=f"{what} {t!r} is not a time between 2000 and 2100")
    return t


def _time(value: float | str | None, cfg: Config, what: str) -> float:
    """Epoch seconds or an ISO 8601 text (without an offset: the config's zone), checked."""
    if value is None:
        raise refuse(400, "bad_time", message=f"the {what} of the range is missing")
    if isinstance(value, str):
        try:
            value = parse_time(value, cfg.tzinfo())
        except (ValueError, OverflowError) as e:
            raise refuse(400, "bad_time", message=str(e)) from None
    return _check_time(float(value), what)


def _camera_cells(cfg: Config, cameras: list[str]) -> list[str]:
    return sorted({cfg.cameras[c].grid_cell if c in cfg.cameras else "" for c in cameras})


def _sees_all(user: User, cells: list[str]) -> bool:
    """Whether the user may see every cell (a camera no longer in the config has the cell "": admins only)."""
    return user.all_cells() or ("" not in cells and all(user.sees_cell(c) for c in cells))


def _check_cameras(cfg: Config, user: User, cameras: list[str], rec_dir: Path) -> list[str]:
    """Camera ids checked as names (400 bad_name), then against the user's cells (404 as for any camera)."""
    if not cameras:
        raise refuse(400, "no_camera")
    if len(cameras) > MAX_CAMERAS:
        raise refuse(400, "too_many_cameras", max=MAX_CAMERAS)
    out: list[str] = []
    for c in cameras:
        try:
            check_camera_id(c)
            inside(rec_dir, c)
        except UnsafeName as e:
            raise refuse(400, "bad_name", message=str(e)) from None
        cam = cfg.cameras.get(c)
        if cam is None:
            # a camera removed from the config: its recordings are still evidence, for users of every cell
            if not (user.all_cells() and (rec_dir / c).is_dir()):
                raise refuse(404, "not_found")
        elif not user.sees_cell(cam.grid_cell):
            raise refuse(404, "not_found")
        if c not in out:
            out.append(c)
    return out


def _check_case(name: str | None) -> str | None:
    if name is None or not name.strip():
        return None
    try:
        return check_case_name(name)
    except UnsafeName as e:
        raise refuse(400, "bad_name", message=str(e)) from None


def _who(user: User) -> str:
    """Who the manifest names: the display name and the account."""
    return f"{user.display_name} ({user.username})" if user.display_name != user.username else user.username


def job_view(row: Any, user: User) -> dict[str, Any]:
    """A job as the page shows it, with its links."""
    files = _loads(row.files, [])
    done = row.state in ("done", "released")
    return {
        "id": row.id, "export_id": row.export_id, "user": row.username, "cameras": _loads(row.cameras, []),
        "grid_cells": _loads(row.grid_cells, []), "start": row.start, "end": row.end, "alert_id": row.alert_id,
        "case": row.case_name, "precise": bool(row.precise), "state": row.state, "stage": row.stage,
        "progress": row.progress, "bytes_total": row.bytes_total, "files": files,
        "manifest_sha256": row.manifest_sha256, "size_bytes": row.size_bytes, "warnings": _loads(row.warnings, []),
        "error": row.error, "created_at": row.created_at, "started_at": row.started_at,
        "finished_at": row.finished_at, "released_at": row.released_at, "released_by": row.released_by,
        "download": f"/api/exports/{row.id}/download" if done else None,
        "file_urls": {f["name"]: f"/api/exports/{row.id}/files/{f['name']}" for f in files} if done else {},
        "can_release": row.state == "done" and (row.username == user.username or user.has_role("admin")),
    }


def _job_row(engine: Engine, job_id: str, user: User) -> Any:
    """The job, or None when there is none or the user may not see all of its cameras."""
    with engine.connect() as conn:
        row = conn.execute(select(export_jobs).where(export_jobs.c.id == job_id)).first()
    if row is None or not _sees_all(user, _loads(row.grid_cells, [""])):
        return None
    return row


def _update(engine: Engine, job_id: str, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(export_jobs).where(export_jobs.c.id == job_id).values(**values))


class _RowProgress:
    """pipeline.export's progress sink, written into the job's row (throttled) for any page to poll."""

    def __init__(self, engine: Engine, job_id: str):
        self.engine, self.job_id = engine, job_id
        self.total, self.done, self.last = 0, 0, 0.0

    def start(self, total_bytes: int, cameras: int) -> None:
        self.total = total_bytes
        _update(self.engine, self.job_id, bytes_total=total_bytes, stage="cut", progress=0.0)
        self.last = time.monotonic()

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            _update(self.engine, self.job_id, progress=min(0.99, self.done / self.total) if self.total else 0.0)

    def stage(self, text: str) -> None:
        _update(self.engine, self.job_id, stage=text[:32], progress=0.99)


# ------------------------------------------------------------------------------------------ running a job

RUNNER_BEAT_S = 10.0
RUNNER_TTL_S = 45  # a runner not heard of for this long is gone (its host died, or was cut off)
ORPHAN_CHECK_S = 30.0
_last_orphan_check = 0.0


def _runner_key(d: Dashboard, runner_id: str) -> str:
    return d.keys.prefix_key(f"exports:runner:{runner_id}")


class Runner:
    """The export threads of one dashboard process, and its beat in the bus (so other hosts can tell that
    its running jobs are still running)."""

    def __init__(self, d: Dashboard):
        self.pool = cf.ThreadPoolExecutor(MAX_RUNNING, thread_name_prefix="export-job")
        self._redis = bus.connect(d.redis_url)
        self._key = _runner_key(d, _runner_id())
        self._beat()  # before any job of this process exists
        threading.Thread(target=self._beat_forever, name="export-runner-beat", daemon=True).start()
        fail_orphans(d)

    def _beat(self) -> None:
        try:
            self._redis.set(self._key, str(time.time()), ex=RUNNER_TTL_S)
        except (RedisError, OSError) as e:
            log.debug("export runner beat not written (bus unavailable: %s)", e)

    def _beat_forever(self) -> None:
        while True:
            time.sleep(RUNNER_BEAT_S)
            self._beat()

    def submit(self, d: Dashboard, job_id: str, req: ExportRequest, user: User, remote: str | None) -> None:
        self.pool.submit(_run_job, d, job_id, req, user, remote)


def fail_orphans(d: Dashboard) -> int:
    """Jobs left queued or running by a dashboard process that is gone: failed, and said why; how many.

    This host's: its pid no longer exists.  Another host's: its runner's beat has expired in the bus
    (while the bus does not answer, nothing is decided about other hosts)."""
    global _last_orphan_check
    _last_orphan_check = time.monotonic()
    host = socket.gethostname()
    r = bus.connect(d.redis_url)
    failed = 0
    with d.engine.begin() as conn:
        rows = conn.execute(select(export_jobs.c.id, export_jobs.c.runner)
                            .where(export_jobs.c.state.in_(("queued", "running")))).all()
        for row in rows:
            h, _, pid = (row.runner or "").rpartition(":")
            if not pid.isdigit() or (h == host and (int(pid) == os.getpid() or _alive(int(pid)))):
                continue  # not started yet, ours, or a live process's of this host
            if h != host:
                try:
                    if r.exists(_runner_key(d, row.runner)):
                        continue  # that host's process still beats
                except (RedisError, OSError):
                    continue
            conn.execute(update(export_jobs).where(export_jobs.c.id == row.id).values(
                state="failed", finished_at=time.time(),
                error="the dashboard process running this export stopped before it finished; start it again"))
            failed += 1
    r.close()
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runner(request: Request) -> Runner:
    state = request.app.state
    r = getattr(state, "export_runner", None)
    if r is None:
        r = state.export_runner = Runner(ctx(request))
    return r  # type: ignore[no-any-return]


def _result_files(res: ExportResult) -> tuple[list[dict[str, Any]], str, int]:
    """(files with sha256 and size, sha256 of manifest.json, total bytes) of a finished export."""
    files = [{"name": n, "bytes": h["bytes"], "sha256": h["sha256"]} for n, h in res.manifest["files"].items()]
    if res.zip_path is not None:
        with zipfile.ZipFile(res.zip_path) as z:
            extra: dict[str, dict[str, Any]] = {}
            for name in ("manifest.json", "manifest.sig"):
                with z.open(f"{res.id}/{name}") as f:
                    data = f.read()
                extra[name] = {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        size = res.zip_path.stat().st_size
    else:
        extra = {n: {"name": n, **hash_path(res.folder / n)} for n in ("manifest.json", "manifest.sig")}
        size = sum(p.stat().st_size for p in res.folder.iterdir() if p.is_file())
    files += list(extra.values())
    files.sort(key=lambda f: (not str(f["name"]).endswith(".mp4"), str(f["name"])))
    return files, str(extra["manifest.json"]["sha256"]), size


def _run_job(d: Dashboard, job_id: str, req: ExportRequest, user: User, remote: str | None) -> None:
    engine = d.engine
    try:
        _update(engine, job_id, state="running", started_at=time.time(), runner=_runner_id())
        res = run_export(d.config(), req, user=_who(user), via="dashboard", progress=_RowProgress(engine, job_id),
                         fetcher=dashboard_fetcher(d))  # cluster: segments other machines hold
        files, manifest_sha, size = _result_files(res)
        path = res.zip_path or res.folder
        with engine.begin() as conn:
            conn.execute(update(export_jobs).where(export_jobs.c.id == job_id).values(
                state="done", stage=None, progress=1.0, export_id=res.id, path=str(path),
                files=json.dumps(files), manifest_sha256=manifest_sha, size_bytes=size,
                warnings=json.dumps(res.warnings, ensure_ascii=False), finished_at=time.time()))
            if req.case:
                _touch_case(conn, req.case, user, (req.alert or {}).get("alert_id"))
            record(conn, "export_done", user_id=user.id, username=user.username,
                   alert_id=(req.alert or {}).get("alert_id"), remote=remote,
                   data={"job": job_id, "export_id": res.id, "bytes": size, "seconds": round(res.seconds, 3),
                         "manifest_sha256": manifest_sha, "warnings": len(res.warnings), "case": req.case})
    except Exception as e:  # ExportError, or anything else: the job says so; the dashboard goes on
        msg = str(e) if isinstance(e, ExportError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, ExportError):
            log.exception("export job %s failed", job_id)
        with engine.begin() as conn:
            conn.execute(update(export_jobs).where(export_jobs.c.id == job_id).values(
                state="failed", stage=None, error=msg[:4000], finished_at=time.time()))
            record(conn, "export_failed", user_id=user.id, username=user.username,
                   alert_id=(req.alert or {}).get("alert_id"), remote=remote, data={"job": job_id, "error": msg[:500]})


def _touch_case(conn: Any, name: str, user: User, alert_id: str | None) -> None:
    row = conn.execute(select(cases).where(cases.c.name == name)).first()
    now = time.time()
    if row is None:
        conn.execute(cases.insert().values(name=name, description="", alerts=json.dumps([alert_id] if alert_id else []),
                                           created_at=now, created_by=user.username, updated_at=now))
        return
    linked = _loads(row.alerts, [])
    if alert_id and alert_id not in linked:
        linked.append(alert_id)
    conn.execute(update(cases).where(cases.c.name == name).values(alerts=json.dumps(linked), updated_at=now))


# ------------------------------------------------------------------------------------------ starting one

class ExportBody(BaseModel):
    alert_id: str | None = Field(None, max_length=128)
    cameras: list[str] = Field(default_factory=list, max_length=MAX_CAMERAS)
    start: float | str | None = None
    end: float | str | None = None
    case: str | None = Field(None, max_length=80)
    case_description: str | None = Field(None, max_length=4000)
    precise: bool = False


def _alert_range(d: Dashboard, cfg: Config, alert_id: str, user: User) -> AlertClip:
    """The alert's camera and clip range (pre-roll before, post-roll after; an open alert runs to now)."""
    with d.engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None or not user.sees_cell(row.grid_cell_id):
        raise refuse(404, "not_found")
    msg = _loads(row.message, {})
    clip = msg.get("clip") or {}
    acfg = cfg.camera_alerts(row.camera_id) if row.camera_id in cfg.cameras else cfg.alerts
    start = clip.get("start")
    if start is None:
        start = row.start_time - acfg.pre_roll_s
    end = clip.get("end")
    if end is None:
        end = row.end_time + acfg.post_roll_s if row.end_time is not None else time.time()
    end = max(float(end), float(start) + 1.0)
    return AlertClip(alert_id, row.camera_id, float(start), end, row.end_time is None, msg)


def _nothing_recorded(cfg: Config, rec: Recordings, cams: list[str], start: float, end: float) -> str:
    tz = cfg.tzinfo()
    why = []
    for c in cams:
        reasons = sorted({g.reason for g in rec.gaps(c, start, end)})
        why.append(f"{c}: {', '.join(reasons) or 'not recorded'}")
    return (f"nothing is recorded between {iso_local(start, tz)} and {iso_local(end, tz)} for {', '.join(cams)} "
            f"({'; '.join(why)})")


@router.post("/api/exports", status_code=202)
async def start_export(body: ExportBody, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """Start an export of an alert's clip (``alert_id``) or of ``cameras`` from ``start`` to ``end``."""
    d = ctx(request)
    pool = runner(request)  # made (and stale jobs of dead processes failed) before this job's row exists
    if body.alert_id:
        from dashboard.routes.alerts import _ensure_alert  # the alert may be on the bus but not stored yet
        await _ensure_alert(d, body.alert_id)
    cfg = d.config()
    rec_dir = d.data_dir / cfg.recordings.dir
    remote = remote_addr(request)

    def _prepare() -> dict[str, Any]:
        clip = _alert_range(d, cfg, body.alert_id, user) if body.alert_id else None
        if clip is not None:
            cams, start, end = [clip.camera], clip.start, clip.end
        else:
            cams, start, end = body.cameras, _time(body.start, cfg, "start"), _time(body.end, cfg, "end")
        cams = _check_cameras(cfg, user, cams, rec_dir)
        if not end > start:
            raise refuse(400, "bad_range", message="the end of the range must be after its start")
        if end - start > MAX_RANGE_S:
            raise refuse(400, "range_too_long", days=round(MAX_RANGE_S / 86400))
        case = _check_case(body.case)
        rec = Recordings(rec_dir)
        if not any(rec.segments(c, start, end) for c in cams) and not (
                cfg.cluster.enabled and recorded_anywhere(d.engine, cams, start, end)):
            raise refuse(422, "no_recording", message=_nothing_recorded(cfg, rec, cams, start, end))
        job_id = secrets.token_urlsafe(12)
        cells = _camera_cells(cfg, cams)
        now = time.time()
        description: str | None = None
        with d.engine.begin() as conn:
            if case is not None:
                if conn.execute(select(cases.c.name).where(cases.c.name == case)).first() is None:
                    conn.execute(cases.insert().values(name=case, description=body.case_description or "",
                                                       alerts="[]", created_at=now, created_by=user.username,
                                                       updated_at=now))
                    record(conn, "case_create", user_id=user.id, username=user.username, remote=remote,
                           data={"case": case})
                description = conn.execute(select(cases.c.description).where(cases.c.name == case)).scalar()
            conn.execute(export_jobs.insert().values(
                id=job_id, user_id=user.id, username=user.username, cameras=json.dumps(cams),
                grid_cells=json.dumps(cells), start=start, end=end, alert_id=clip.alert_id if clip else None,
                case_name=case, precise=body.precise, state="queued", progress=0.0, created_at=now,
                runner=_runner_id()))
            record(conn, "export_start", user_id=user.id, username=user.username,
                   alert_id=clip.alert_id if clip else None, grid_cell_id=cells[0] if len(cells) == 1 else None,
                   remote=remote, data={"job": job_id, "cameras": cams, "start": start, "end": end, "case": case,
                                        "precise": body.precise})
            row = conn.execute(select(export_jobs).where(export_jobs.c.id == job_id)).first()
        req = ExportRequest(cams, start, end, precise=body.precise, zip=case is None, case=case,
                            case_description=(description or None) if case else None,
                            alert=clip.summary() if clip else None)
        return {"row": row, "req": req}

    prepared = await run_in_threadpool(_prepare)
    pool.submit(d, prepared["row"].id, prepared["req"], user, remote)
    return job_view(prepared["row"], user)


# ------------------------------------------------------------------------------------------ reading them

@router.get("/api/exports")
async def list_exports(request: Request, user: User = Depends(current_user), limit: int = 100) -> dict[str, Any]:
    """The user's visible exports, newest first, and the cases."""
    d = ctx(request)
    limit = max(1, min(limit, 500))

    def _list() -> dict[str, Any]:
        if time.monotonic() - _last_orphan_check > ORPHAN_CHECK_S:
            fail_orphans(d)  # a job of a dashboard host that died does not stay "running" forever
        exports_import.sync(d)  # exports, cases and releases of `sharpeye export` (throttled)
        with d.engine.connect() as conn:
            rows = conn.execute(select(export_jobs).order_by(export_jobs.c.created_at.desc()).limit(limit * 4)).all()
            case_rows = conn.execute(select(cases).order_by(cases.c.updated_at.desc())).all()
        jobs = [job_view(r, user) for r in rows if _sees_all(user, _loads(r.grid_cells, [""]))][:limit]
        return {"exports": jobs, "cases": [c for c in (_case_view(d, r, user) for r in case_rows) if c]}
    return await run_in_threadpool(_list)


@router.get("/api/exports/{job_id}")
async def get_export(job_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """One job: the page polls it for progress."""
    row = await run_in_threadpool(_job_row, ctx(request).engine, job_id, user)
    if row is None:
        raise refuse(404, "not_found")
    return job_view(row, user)


@router.get("/api/exports/{job_id}/events")
async def export_events(job_id: str, request: Request, user: User = Depends(current_user)) -> StreamingResponse:
    """Server-sent ``progress`` events of one job until it is done or failed (the poll's push twin)."""
    d = ctx(request)
    if await run_in_threadpool(_job_row, d.engine, job_id, user) is None:
        raise refuse(404, "not_found")

    async def gen() -> AsyncIterator[bytes]:
        last = None
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline and not await request.is_disconnected():
            row = await run_in_threadpool(_job_row, d.engine, job_id, user)
            if row is None:
                return
            view = job_view(row, user)
            if view != last:
                last = view
                yield f"event: progress\ndata: {json.dumps(view, ensure_ascii=False)}\n\n".encode()
            if row.state not in ("queued", "running"):
                return
            await asyncio.sleep(PROGRESS_EVERY_S)

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _zip_cache(d: Dashboard) -> Path:
    p = d.data_dir.joinpath(*ZIP_CACHE)
    p.mkdir(parents=True, exist_ok=True)
    return p


def _export_zip(d: Dashboard, row: Any) -> Path:
    """The export's ZIP: the one it was made as, or (an export inside a case) one made now from its folder."""
    path = Path(row.path)
    if path.suffix == ".zip":
        return path
    dest = _zip_cache(d) / f"{row.export_id}.zip"
    if not dest.is_file():
        export_cases.zip_folder(path, dest)
    return dest


def _audit(d: Dashboard, action: str, user: User, remote: str | None, **data: Any) -> None:
    with d.engine.begin() as conn:
        record(conn, action, user_id=user.id, username=user.username, remote=remote,
               alert_id=data.pop("alert_id", None), data=data)


@router.get("/api/exports/{job_id}/download")
async def download_export(job_id: str, request: Request, user: User = Depends(current_user)) -> FileResponse:
    """The export as one ZIP (its videos, manifest.json/.txt/.sig), for users who may see all its cameras."""
    d = ctx(request)
    row = await run_in_threadpool(_job_row, d.engine, job_id, user)
    if row is None or row.state not in ("done", "released") or not row.path:
        raise refuse(404, "not_found")
    try:
        path = await run_in_threadpool(_export_zip, d, row)
    except OSError as e:
        raise refuse(410, "export_gone", message=str(e)) from None
    if not path.is_file():
        raise refuse(410, "export_gone", message=f"{path.name} is no longer on disk")
    await run_in_threadpool(_audit, d, "export_download", user, remote_addr(request), job=job_id,
                            export_id=row.export_id, alert_id=row.alert_id, file=path.name)
    return FileResponse(path, media_type="application/zip", filename=f"sharpeye-export-{row.export_id}.zip",
                        headers={"Cache-Control": "private, no-store"})


@router.get("/api/exports/{job_id}/files/{name}", response_model=None)
async def export_file(job_id: str, name: str, request: Request,
                      user: User = Depends(current_user)) -> FileResponse | StreamingResponse:
    """One file of an export (a camera's MP4, the manifest); only names the export lists are served."""
    d = ctx(request)
    row = await run_in_threadpool(_job_row, d.engine, job_id, user)
    if row is None or row.state not in ("done", "released") or not row.path:
        raise refuse(404, "not_found")
    if name not in {f["name"] for f in _loads(row.files, [])}:
        raise refuse(404, "not_found")  # also every "../x" or absolute name: never in the list
    media = MEDIA.get(Path(name).suffix, "application/octet-stream")
    path = Path(row.path)
    await run_in_threadpool(_audit, d, "export_download", user, remote_addr(request), job=job_id,
                            export_id=row.export_id, alert_id=row.alert_id, file=name)
    headers = {"Cache-Control": "private, no-store"}
    if path.suffix != ".zip":
        try:
            f = inside(path, name)
        except UnsafeName:
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


@router.post("/api/exports/{job_id}/release")
async def release_export(job_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """Release an export's hold: retention may delete its recordings when due (its files stay)."""
    d = ctx(request)
    row = await run_in_threadpool(_job_row, d.engine, job_id, user)
    if row is None:
        raise refuse(404, "not_found")
    if row.state != "done" or not row.export_id:
        raise refuse(409, "not_releasable", state=row.state)
    if row.username != user.username and not user.has_role("admin"):
        raise refuse(403, "forbidden_release")

    def _release() -> Any:
        had = holds.release(d.data_dir, row.export_id)
        with d.engine.begin() as conn:
            conn.execute(update(export_jobs).where(export_jobs.c.id == job_id).values(
                state="released", released_at=time.time(), released_by=user.username))
            record(conn, "export_release", user_id=user.id, username=user.username, alert_id=row.alert_id,
                   remote=remote_addr(request), data={"job": job_id, "export_id": row.export_id, "held": had})
            return conn.execute(select(export_jobs).where(export_jobs.c.id == job_id)).first()
    return job_view(await run_in_threadpool(_release), user)


# ------------------------------------------------------------------------------------------ cases

def _case_doc(d: Dashboard, name: str) -> dict[str, Any]:
    try:
        folder = export_cases.case_folder(exports_root(d.data_dir), name)
    except UnsafeName:
        return {}
    return holds.read_json(folder / "case.json", {}) if folder.is_dir() else {}


def _case_view(d: Dashboard, row: Any, user: User) -> dict[str, Any] | None:
    """A case for the list, or None when one of its exports has a camera, or one of its linked alerts is of a
    cell the user may not see."""
    cfg = d.config()
    doc = _case_doc(d, row.name)
    cams = sorted({c for e in doc.get("exports", []) for c in e.get("cameras", [])})
    linked = sorted({*_loads(row.alerts, []), *doc.get("alerts", [])})
    cells = set(_camera_cells(cfg, cams))
    if linked:
        with d.engine.connect() as conn:
            cells |= set(conn.execute(select(alerts.c.grid_cell_id).where(alerts.c.id.in_(linked[:500]))).scalars())
    if not _sees_all(user, sorted(cells)):
        return None
    return {"name": row.name, "description": row.description, "alerts": linked, "created_at": row.created_at,
            "created_by": row.created_by, "updated_at": row.updated_at, "cameras": cams,
            "exports": [e.get("id") for e in doc.get("exports", [])],
            "download": f"/api/cases/{row.name}/download" if doc.get("exports") else None}


class CaseBody(BaseModel):
    name: str = Field(max_length=80)
    description: str = Field("", max_length=4000)
    alerts: list[str] = Field(default_factory=list, max_length=50)


@router.get("/api/cases")
async def list_cases(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    d = ctx(request)

    def _list() -> list[dict[str, Any]]:
        exports_import.sync(d)  # cases of `sharpeye export --case` (throttled)
        with d.engine.connect() as conn:
            rows = conn.execute(select(cases).order_by(cases.c.updated_at.desc())).all()
        return [c for c in (_case_view(d, r, user) for r in rows) if c]
    return await run_in_threadpool(_list)


@router.post("/api/cases")
async def save_case(body: CaseBody, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """Create a case, or change its description and linked alerts (alerts of the user's cells only)."""
    d = ctx(request)
    name = _check_case(body.name)
    if name is None:
        raise refuse(400, "bad_name", message="a case needs a name")
    from dashboard.routes.alerts import _ensure_alert
    for aid in dict.fromkeys(body.alerts):  # on the bus but not stored yet by the archiver
        if 0 < len(aid) <= 128:
            await _ensure_alert(d, aid)

    def _save() -> dict[str, Any]:
        now = time.time()
        with d.engine.begin() as conn:
            for aid in body.alerts:
                row = conn.execute(select(alerts.c.grid_cell_id).where(alerts.c.id == aid)).first()
                if row is None or not user.sees_cell(row.grid_cell_id):
                    raise refuse(404, "not_found", alert_id=aid[:128])
            old = conn.execute(select(cases).where(cases.c.name == name)).first()
            if old is not None and _case_view(d, old, user) is None:
                raise refuse(404, "not_found")
            linked = sorted(set(body.alerts))
            if old is None:
                conn.execute(cases.insert().values(name=name, description=body.description, alerts=json.dumps(linked),
                                                   created_at=now, created_by=user.username, updated_at=now))
            else:
                conn.execute(update(cases).where(cases.c.name == name).values(
                    description=body.description, alerts=json.dumps(linked), updated_at=now))
            record(conn, "case_create" if old is None else "case_update", user_id=user.id, username=user.username,
                   remote=remote_addr(request), data={"case": name, "alerts": linked})
            row = conn.execute(select(cases).where(cases.c.name == name)).first()
        view = _case_view(d, row, user)
        assert view is not None
        return view
    return await run_in_threadpool(_save)


def _case_zip(d: Dashboard, name: str) -> Path:
    """The whole case as one ZIP (every export with its manifest, and the signed case manifest), made when
    the case changed since the last one."""
    folder = export_cases.case_folder(exports_root(d.data_dir), name)
    stamp = (folder / "case.json").stat().st_mtime_ns
    tag = holds.read_json(folder / "case.json", {}).get("updated", {}).get("epoch", 0)
    cache = _zip_cache(d)
    prefix = "case-" + hashlib.sha256(name.encode()).hexdigest()[:20]
    dest = cache / f"{prefix}-{stamp}-{round(float(tag) * 1000)}.zip"
    if not dest.is_file():
        export_cases.zip_folder(folder, dest)
        for old in cache.glob(f"{prefix}-*.zip"):
            if old != dest:
                old.unlink(missing_ok=True)
    return dest


@router.get("/api/cases/{name}/download")
async def download_case(name: str, request: Request, user: User = Depends(current_user)) -> FileResponse:
    """A case as one ZIP, for users who may see every camera of every export in it."""
    d = ctx(request)
    _check_case(name)

    def _get() -> Path | None:
        with d.engine.connect() as conn:
            row = conn.execute(select(cases).where(cases.c.name == name)).first()
        view = _case_view(d, row, user) if row is not None else None
        if view is None or not view["download"]:
            return None
        return _case_zip(d, name)
    path = await run_in_threadpool(_get)
    if path is None:
        raise refuse(404, "not_found")
    await run_in_threadpool(_audit, d, "case_download", user, remote_addr(request), case=name, file=path.name)
    return FileResponse(path, media_type="application/zip", filename=f"sharpeye-case-{name.replace(' ', '_')}.zip",
                        headers={"Cache-Control": "private, no-store"})


# ------------------------------------------------------------------------------------------ protected storage

def protected_storage(d: Dashboard, user: User, open_alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Bytes of recordings retention must keep (held by exports, by open alerts, both together) for the
    user's cameras, and the bytes of export files on disk."""
    cfg = d.config()
    rec = Recordings(d.data_dir / cfg.recordings.dir)
    now = time.time()
    held = holds.all_holds(d.data_dir)

    def visible(cam: str) -> bool:
        c = cfg.cameras.get(cam)
        return user.all_cells() if c is None else user.sees_cell(c.grid_cell)

    def segments(ranges: dict[str, list[tuple[float, float]]]) -> dict[Path, int]:
        out: dict[Path, int] = {}
        for cam, rs in ranges.items():
            if not visible(cam):
                continue
            for s, e in rs:
                for seg in rec.segments(cam, s, min(e, now)):
                    out[seg.path] = seg.bytes
        return out
    by_exports = segments(holds.ranges_of(held))
    by_alerts = segments(alert_ranges(open_alerts))
    files = 0
    with d.engine.connect() as conn:
        for r in conn.execute(select(export_jobs.c.grid_cells, export_jobs.c.size_bytes)
                              .where(export_jobs.c.state.in_(("done", "released")))):
            if r.size_bytes and _sees_all(user, _loads(r.grid_cells, [""])):
                files += r.size_bytes
    return {"exports_bytes": sum(by_exports.values()), "alerts_bytes": sum(by_alerts.values()),
            "total_bytes": sum({**by_exports, **by_alerts}.values()), "segments": len({*by_exports, *by_alerts}),
            "holds": len(held), "open_alerts": len(open_alerts), "export_files_bytes": files}


@router.get("/api/exports-storage")
async def storage(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    d = ctx(request)
    open_now = [m for m in parse_open(await d.redis().hgetall(d.keys.open_alerts)).values()
                if user.sees_cell((m.get("grid_cell") or {}).get("id"))]
    return await run_in_threadpool(protected_storage, d, user, open_now)


# ------------------------------------------------------------------------------------------ timeline

@router.get("/api/timeline")
async def timeline(request: Request, user: User = Depends(current_user), start: str = Query(max_length=64),
                   end: str = Query(max_length=64),
                   camera: list[str] = Query(default_factory=list, max_length=MAX_CAMERAS)) -> JSONResponse:
    """Recorded ranges, gaps (with reasons), held ranges and alerts of the user's cameras in [start, end]."""
    d = ctx(request)
    cfg = d.config()
    t0, t1 = _time(start, cfg, "start"), _time(end, cfg, "end")
    if not t1 > t0 or t1 - t0 > TIMELINE_MAX_S:
        raise refuse(400, "bad_range", message="the window must end after it starts and last at most 7 days")
    rec_dir = d.data_dir / cfg.recordings.dir
    visible = [c for c, cam in cfg.cameras.items() if user.sees_cell(cam.grid_cell)]
    cams = _check_cameras(cfg, user, camera, rec_dir) if camera else visible

    def _build() -> dict[str, Any]:
        rec = Recordings(rec_dir)
        held = holds.ranges_of(holds.all_holds(d.data_dir))
        out = []
        for c in cams:
            cam = cfg.cameras.get(c)
            out.append({"id": c, "name": cam.name if cam else c,
                        "ranges": [[round(s, 3), round(e, 3)] for s, e in rec.recorded_ranges(c, t0, t1)],
                        "gaps": [{"start": round(g.start, 3), "end": round(g.end, 3), "reason": g.reason}
                                 for g in rec.gaps(c, t0, t1)],
                        "held": [[max(s, t0), min(e, t1)] for s, e in held.get(c, []) if s < t1 and e > t0]})
        with d.engine.connect() as conn:
            rows = conn.execute(select(alerts.c.id, alerts.c.camera_id, alerts.c.start_time, alerts.c.end_time,
                                       alerts.c.kind, alerts.c.severity, alerts.c.state)
                                .where(alerts.c.camera_id.in_(cams), alerts.c.start_time < t1,
                                       alerts.c.start_time >= t0 - 86400)
                                .order_by(alerts.c.start_time).limit(2000)).all()
        marks = [{"alert_id": r.id, "camera": r.camera_id, "start_time": r.start_time, "end_time": r.end_time,
                  "kind": r.kind, "severity": r.severity, "state": r.state}
                 for r in rows if r.end_time is None or r.end_time >= t0]
        return {"start": t0, "end": t1, "now": time.time(), "cameras": out, "alerts": marks}
    return JSONResponse(await run_in_threadpool(_build), headers={"Cache-Control": "no-store"})
