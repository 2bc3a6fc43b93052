"""Export jobs: started for a logged-in user, run on this process's threads, reported, zipped and released.

The cutting, the manifest, the signature, the holds and the cases are ``pipeline.export``'s (the
command line makes the same files); this module starts an export for a logged-in user, keeps
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
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Engine, select, update
from starlette.concurrency import run_in_threadpool

from dashboard import exports_import
from dashboard.context import Dashboard
from dashboard.deps import refuse
from dashboard.users import User
from history import patrol
from history.audit import record
from history.catalogue import dashboard_fetcher, recorded_anywhere
from history.schema import alerts, cases, export_jobs
from pipeline.config import Config
from pipeline.export import cases as export_cases
from pipeline.export import holds
from pipeline.export.alerts import AlertClip
from pipeline.export.job import MAX_RANGE_S, ExportError, ExportRequest, ExportResult, run_export
from pipeline.export.manifest import hash_path
from pipeline.export.paths import UnsafeName, check_camera_id, check_case_name, inside
from pipeline.export.times import iso_local, parse_time
from pipeline.publish import bus
from pipeline.record.catalog import Recordings

log = logging.getLogger("sharpeye.dashboard.exports")

MAX_RUNNING = 2  # exports at once per dashboard process; more wait their turn (state "queued")
PROGRESS_EVERY_S = 0.3
MAX_CAMERAS = 32
TIMELINE_MAX_S = 7 * 86400.0
# times outside these are typing errors (or a fuzzer) and would overflow date conversions
EARLIEST, LATEST = 946684800.0, 4102444800.0  # 2000-01-01, 2100-01-01 UTC
ZIP_CACHE = ("cache", "export-zips")  # under data_dir: ZIPs of case exports and of whole cases, made on demand


def loads_json(text: str | None, default: Any) -> Any:
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


def parse_time_arg(value: float | str | None, cfg: Config, what: str) -> float:
    """Epoch seconds or an ISO 8601 text (without an offset: the config's zone), checked."""
    if value is None:
        raise refuse(400, "bad_time", message=f"the {what} of the range is missing")
    if isinstance(value, str):
        try:
            value = parse_time(value, cfg.tzinfo())
        except (ValueError, OverflowError) as e:
            raise refuse(400, "bad_time", message=str(e)) from None
    return _check_time(float(value), what)


def camera_cells(cfg: Config, cameras: list[str]) -> list[str]:
    return sorted({cfg.cameras[c].grid_cell if c in cfg.cameras else "" for c in cameras})


def sees_all(user: User, cells: list[str]) -> bool:
    """Whether the user may see every cell (a camera no longer in the config has the cell "": admins only)."""
    return user.all_cells() or ("" not in cells and all(user.sees_cell(c) for c in cells))


def check_cameras(cfg: Config, user: User, cameras: list[str], rec_dir: Path) -> list[str]:
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


def check_case(name: str | None) -> str | None:
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
    files = loads_json(row.files, [])
    done = row.state in ("done", "released")
    return {
        "id": row.id, "export_id": row.export_id, "user": row.username, "cameras": loads_json(row.cameras, []),
        "grid_cells": loads_json(row.grid_cells, []), "start": row.start, "end": row.end, "alert_id": row.alert_id,
        "case": row.case_name, "precise": bool(row.precise), "state": row.state, "stage": row.stage,
        "progress": row.progress, "bytes_total": row.bytes_total, "files": files,
        "manifest_sha256": row.manifest_sha256, "size_bytes": row.size_bytes, "warnings": loads_json(row.warnings, []),
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
    if row is None or not sees_all(user, loads_json(row.grid_cells, [""])):
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


def runner(state: Any, d: Dashboard) -> Runner:
    """The app's runner (``state``: the app's state), made on first use."""
    r = getattr(state, "export_runner", None)
    if r is None:
        r = state.export_runner = Runner(d)
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
                _touch_case(conn, req, user)
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


def _touch_case(conn: Any, req: ExportRequest, user: User) -> None:
    """The user's own case the export went into: its alert linked, its change time now."""
    name, alert_id = req.case, (req.alert or {}).get("alert_id")
    mine = (cases.c.name == name, cases.c.created_by == user.username)
    row = conn.execute(select(cases).where(*mine)).first()
    now = time.time()
    if row is None:
        conn.execute(cases.insert().values(name=name, description="", alerts=json.dumps([alert_id] if alert_id else []),
                                           created_at=now, created_by=user.username, updated_at=now,
                                           folder=req.case_dir))
        return
    linked = loads_json(row.alerts, [])
    if alert_id and alert_id not in linked:
        linked.append(alert_id)
    conn.execute(update(cases).where(*mine).values(alerts=json.dumps(linked), updated_at=now))




def _alert_range(d: Dashboard, cfg: Config, alert_id: str, user: User) -> AlertClip:
    """The alert's camera and clip range (pre-roll before, post-roll after; an open alert runs to now)."""
    with d.engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None or not user.sees_cell(row.grid_cell_id):
        raise refuse(404, "not_found")
    msg = loads_json(row.message, {})
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




async def start(d: Dashboard, pool: Runner, user: User, remote: str | None, *, alert_id: str | None,
                cameras: list[str], t_start: float | str | None, t_end: float | str | None, case_name: str | None,
                case_description: str | None, precise: bool) -> dict[str, Any]:
    """Check the request (names, range, scope, something recorded), store the job and hand it to ``pool``;
    the job as the page shows it.  Refusals are HTTP errors with a code the page translates."""
    cfg = d.config()
    rec_dir = d.data_dir / cfg.recordings.dir

    def _prepare() -> dict[str, Any]:
        clip = _alert_range(d, cfg, alert_id, user) if alert_id else None
        if clip is not None and not clip.camera:  # a manual alarm raised with no camera: what was attached later
            with d.engine.connect() as conn:
                attached = patrol.evidence(conn, clip.alert_id)
            if attached is None:
                raise refuse(400, "no_camera", message=f"alert {clip.alert_id} has no camera attached")
            cams, start, end = attached
        elif clip is not None:
            cams, start, end = [clip.camera], clip.start, clip.end
        else:
            cams, start, end = cameras, parse_time_arg(t_start, cfg, "start"), parse_time_arg(t_end, cfg, "end")
        cams = check_cameras(cfg, user, cams, rec_dir)
        if not end > start:
            raise refuse(400, "bad_range", message="the end of the range must be after its start")
        if end - start > MAX_RANGE_S:
            raise refuse(400, "range_too_long", days=round(MAX_RANGE_S / 86400))
        case = check_case(case_name)
        rec = Recordings(rec_dir)
        if not any(rec.segments(c, start, end) for c in cams) and not (
                cfg.cluster.enabled and recorded_anywhere(d.engine, cams, start, end)):
            raise refuse(422, "no_recording", message=_nothing_recorded(cfg, rec, cams, start, end))
        job_id = secrets.token_urlsafe(12)
        cells = camera_cells(cfg, cams)
        now = time.time()
        description: str | None = None
        case_dir: str | None = None
        with d.engine.begin() as conn:
            if case is not None:
                # the user's own case of that name: another's of the same name is never reached (nor told
                # apart from none); a name new to this user makes their case, in a folder of its own
                mine = (cases.c.name == case, cases.c.created_by == user.username)
                if conn.execute(select(cases.c.name).where(*mine)).first() is None:
                    conn.execute(cases.insert().values(name=case, description=case_description or "",
                                                       alerts="[]", created_at=now, created_by=user.username,
                                                       updated_at=now,
                                                       folder=export_cases.owned_dir(user.username, case)))
                    record(conn, "case_create", user_id=user.id, username=user.username, remote=remote,
                           data={"case": case})
                description, case_dir = conn.execute(select(cases.c.description, cases.c.folder)
                                                     .where(*mine)).one()
            conn.execute(export_jobs.insert().values(
                id=job_id, user_id=user.id, username=user.username, cameras=json.dumps(cams),
                grid_cells=json.dumps(cells), start=start, end=end, alert_id=clip.alert_id if clip else None,
                case_name=case, precise=precise, state="queued", progress=0.0, created_at=now,
                runner=_runner_id()))
            record(conn, "export_start", user_id=user.id, username=user.username,
                   alert_id=clip.alert_id if clip else None, grid_cell_id=cells[0] if len(cells) == 1 else None,
                   remote=remote, data={"job": job_id, "cameras": cams, "start": start, "end": end, "case": case,
                                        "precise": precise})
            row = conn.execute(select(export_jobs).where(export_jobs.c.id == job_id)).first()
        req = ExportRequest(cams, start, end, precise=precise, zip=case is None, case=case, case_dir=case_dir,
                            case_description=(description or None) if case else None,
                            alert=clip.summary() if clip else None)
        return {"row": row, "req": req}

    prepared = await run_in_threadpool(_prepare)
    pool.submit(d, prepared["row"].id, prepared["req"], user, remote)
    return job_view(prepared["row"], user)


def list_jobs(d: Dashboard, user: User, limit: int) -> dict[str, Any]:
    """The user's visible exports, newest first, and the cases (``case_view``)."""
    from dashboard.services.cases import case_view

    if time.monotonic() - _last_orphan_check > ORPHAN_CHECK_S:
        fail_orphans(d)  # a job of a dashboard host that died does not stay "running" forever
    exports_import.sync(d)  # exports, cases and releases of `sharpeye export` (throttled)
    with d.engine.connect() as conn:
        rows = conn.execute(select(export_jobs).order_by(export_jobs.c.created_at.desc()).limit(limit * 4)).all()
        case_rows = conn.execute(select(cases).order_by(cases.c.updated_at.desc())).all()
    jobs = [job_view(r, user) for r in rows if sees_all(user, loads_json(r.grid_cells, [""]))][:limit]
    return {"exports": jobs, "cases": [c for c in (case_view(d, r, user) for r in case_rows) if c]}


def visible_job(d: Dashboard, job_id: str, user: User) -> Any:
    """The job's row, or None when there is none or the user may not see all of its cameras."""
    return _job_row(d.engine, job_id, user)


async def progress_events(d: Dashboard, job_id: str, user: User,
                          disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[bytes]:
    """Server-sent ``progress`` events of one job until it is done or failed (at most an hour)."""
    last = None
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline and not await disconnected():
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


def zip_cache(d: Dashboard) -> Path:
    p = d.data_dir.joinpath(*ZIP_CACHE)
    p.mkdir(parents=True, exist_ok=True)
    return p


def export_zip(d: Dashboard, row: Any) -> Path:
    """The export's ZIP: the one it was made as, or (an export inside a case) one made now from its folder."""
    path = Path(row.path)
    if path.suffix == ".zip":
        return path
    dest = zip_cache(d) / f"{row.export_id}.zip"
    if not dest.is_file():
        export_cases.zip_folder(path, dest)
    return dest


def audit(d: Dashboard, action: str, user: User, remote: str | None, **data: Any) -> None:
    with d.engine.begin() as conn:
        record(conn, action, user_id=user.id, username=user.username, remote=remote,
               alert_id=data.pop("alert_id", None), data=data)



def release(d: Dashboard, row: Any, user: User, remote: str | None) -> dict[str, Any]:
    """Release an export's hold (retention may delete its recordings when due; its files stay)."""
    had = holds.release(d.data_dir, row.export_id)
    with d.engine.begin() as conn:
        conn.execute(update(export_jobs).where(export_jobs.c.id == row.id).values(
            state="released", released_at=time.time(), released_by=user.username))
        record(conn, "export_release", user_id=user.id, username=user.username, alert_id=row.alert_id,
               remote=remote, data={"job": row.id, "export_id": row.export_id, "held": had})
        new = conn.execute(select(export_jobs).where(export_jobs.c.id == row.id)).first()
    return job_view(new, user)
