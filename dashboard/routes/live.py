"""Live view: the camera wall page, its camera list, the live WebSocket, and the clip inside an alert.

The dashboard never reads a camera itself.  A wall tile's WebSocket is proxied to the worker that
runs the camera through the live seam (``pipeline.live.protocol``, the only live module imported
here; docs/live.md): the worker remuxes the camera's own packets, so a camera is never dialled a
second time however many people watch.  Roles and grid-cell scopes are the command room's: a user
sees the live video of exactly the cameras of the cells they may see, and every opening is in the
audit log (footage can become evidence).

Messages to the page: text frames are JSON (``hello``, ``overlay``, ``accepted``, ``error``), binary
frames are one type byte (``I`` init segment, ``F`` fragment, ``J`` JPEG) and the payload.

Which worker: on one machine, every endpoint file under the dashboard's data directory is tried.
With ``cluster.enabled`` the workers may be on other machines: the camera's lease key names its
owner now, ``P:cluster:live`` where that owner's seam listens, and each request is signed with the
site key (``cluster.segment_key_file``) instead of a file's token; a camera that moved is found at
its new owner by the next opening (the page reconnects a tile whose stream ended).

The alert clip is cut from the recordings by stream copy (never re-encoded) into one MP4 that
starts ``recordings.pre_event_s`` before the alert and ends at its end (an open alert's: about now,
after the worker finished its open segment through the seam's ``finish`` op), cached under
``<data_dir>/cache/clips`` and served with byte ranges, so it is seekable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dashboard.clips import ClipError, cached_clip, cut_clip
from dashboard.context import Dashboard, ctx
from dashboard.deps import current_user, refuse, remote_addr
from dashboard.pages import page
from dashboard.routes.cameras import camera_statuses, status_dict, visible_cameras
from dashboard.security import COOKIE, lookup_session
from dashboard.users import User
from history.audit import record
from history.catalogue import dashboard_fetcher
from history.schema import alert_messages, alerts
from pipeline.cluster.leases import Lease, LeaseKeys
from pipeline.live import protocol
from pipeline.live.protocol import Endpoint, LiveError
from pipeline.record.catalog import Recordings
from pipeline.record.serve import key_path, load_or_create_key

log = logging.getLogger("sharpeye.dashboard.live")
router = APIRouter()
TEXT_NAMES = {protocol.ACCEPTED: "accepted", protocol.HELLO: "hello", protocol.OVERLAY: "overlay"}
RECENT_S = 900.0  # a window ending longer ago than this (longest segment + margin) is not in an open segment
FINISH_WAIT_S = 1.5  # longest wait for the keyframe that ends an open alert's segment (clip ready in 2 s)
CATALOGUE_WAIT_S = 3.0  # cluster: longest wait for that segment's catalogue row (announcement, archiver)
CLOSE_CODES = {"no_session": 4401, "forbidden": 4403, "not_found": 4404, "bad_request": 4400}


@router.get("/wall", include_in_schema=False)
async def wall_page(_user: User = Depends(current_user)) -> HTMLResponse:
    return page("wall.html")


@router.get("/clip/{alert_id}", include_in_schema=False)
async def clip_page(alert_id: str, _user: User = Depends(current_user)) -> HTMLResponse:
    return page("clip.html")


def _geometry(cam: Any) -> dict[str, Any]:
    return {"zones": {name: z.polygon for name, z in cam.zones.items()},
            "lines": {name: {"a": ln.a, "b": ln.b, "direction": ln.direction} for name, ln in cam.lines.items()}}


@router.get("/api/live/cameras")
async def live_cameras(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """The cameras this user may watch, with health (online, fps, skipped, last seen) and zones and lines."""
    d = ctx(request)
    cfg = d.config()
    statuses = await camera_statuses(d)
    out = []
    for cid in visible_cameras(cfg, user):
        cam = cfg.cameras[cid]
        st = status_dict(statuses[cid]) if cid in statuses else {}
        cell = cfg.grid_cells.get(cam.grid_cell)
        out.append({
            "id": cid, "name": cam.name, "enabled": cam.enabled,
            "grid_cell": {"id": cam.grid_cell, "name": cell.name if cell else cam.grid_cell},
            "state": st.get("state", "unknown" if cam.enabled else "disabled"), "online": bool(st.get("online")),
            "fps": st.get("packets_fps"), "detected_fps": st.get("detected_fps"), "skipped_fps": st.get("skipped_fps"),
            "last_seen": st.get("last_frame_time") or None, "updated": st.get("updated"),
            "width": st.get("width"), "height": st.get("height"), "main_stream": cam.record_source is not None,
            **_geometry(cam)})
    cells = sorted({c["grid_cell"]["id"]: c["grid_cell"] for c in out}.values(), key=lambda c: c["id"])
    return {"cameras": out, "cells": cells, "now": time.time()}


# ------------------------------------------------------------------------------------------ finding the worker

async def live_seams(d: Dashboard, camera: str) -> Path | list[Endpoint]:
    """Where to ask for ``camera``: this machine's endpoint files, or (cluster) the seam its owner announced.

    Raises :class:`LiveError` ``not_running`` (no lease: no worker runs it now) or ``unavailable``
    (Redis down, the owner announced no seam, the site key unreadable)."""
    cfg = d.config()
    if not cfg.cluster.enabled:
        return d.data_dir
    prefix = cfg.bus.prefix
    try:
        lease = Lease.parse(await d.redis().get(LeaseKeys(prefix).lease(camera)))
        if lease is None:
            raise LiveError("not_running", f"no worker holds camera {camera} now")
        raw = await d.redis().hget(protocol.cluster_key(prefix), lease.owner)
    except LiveError:
        raise
    except Exception as e:  # Redis down or failing over: the page retries
        raise LiveError("unavailable", f"the bus cannot be read: {e}") from None
    try:
        key = await run_in_threadpool(load_or_create_key, key_path(cfg))
    except (OSError, ValueError) as e:
        raise LiveError("unavailable", f"site key {key_path(cfg)} unreadable: {e}") from None
    ep = protocol.announced(lease.owner, raw, key)
    if ep is None:
        raise LiveError("unavailable", f"worker {lease.owner} runs camera {camera} but announces no live view")
    return [ep]


# ------------------------------------------------------------------------------------------ the WebSocket

async def _ws_user(ws: WebSocket, d: Dashboard) -> User | None:
    sess = await run_in_threadpool(lookup_session, d.engine, ws.cookies.get(COOKIE))
    return sess.user if sess is not None else None


def _same_origin(ws: WebSocket) -> bool:
    """A page of another site must not open a stream with the operator's cookie (cross-site WebSocket)."""
    origin = ws.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == ws.headers.get("host")


async def _refuse_ws(ws: WebSocket, code: str, detail: str = "") -> None:
    await ws.send_text(json.dumps({"type": "error", "code": code, "detail": detail}))
    await ws.close(CLOSE_CODES.get(code, 4503))


@router.websocket("/api/live/{camera_id}")
async def live_socket(ws: WebSocket, camera_id: str, stream: str = "sub", format: str = "fmp4") -> None:
    """One tile: the camera's live fMP4 (or JPEG) and its overlays, proxied from the worker that runs it."""
    d: Dashboard = ws.app.state.dashboard
    await ws.accept()  # refusals are explained to the page in a message, then the socket closes with a 44xx code
    if not _same_origin(ws):
        await _refuse_ws(ws, "forbidden", "cross-origin")
        return
    user = await _ws_user(ws, d)
    if user is None:
        await _refuse_ws(ws, "no_session")
        return
    cam = d.config().cameras.get(camera_id)
    if cam is None or not user.sees_cell(cam.grid_cell):
        await _refuse_ws(ws, "forbidden" if cam is not None else "not_found")
        return
    if stream not in protocol.STREAMS or format not in protocol.FORMATS:
        await _refuse_ws(ws, "bad_request")
        return
    try:
        upstream = await protocol.open_stream(await live_seams(d, camera_id), camera_id, stream, format)
    except LiveError as e:
        await _refuse_ws(ws, e.code, e.detail)
        return

    def _audit() -> None:
        with d.engine.begin() as conn:
            record(conn, "view_live", user_id=user.id, username=user.username, grid_cell_id=cam.grid_cell,
                   data={"camera": camera_id, "stream": stream, "format": format},
                   remote=ws.client.host if ws.client else None)
    await run_in_threadpool(_audit)

    async def pump() -> None:
        await ws.send_text(json.dumps({"type": "accepted", **upstream.accepted}))
        while True:
            kind, payload = await upstream.read()
            name = TEXT_NAMES.get(kind)
            if name is not None:  # JSON object from the worker: add the type without parsing it again
                await ws.send_text('{"type":"' + name + '",' + payload.decode()[1:])
            else:
                await ws.send_bytes(kind + payload)

    async def until_closed() -> None:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.create_task(pump()), asyncio.create_task(until_closed())]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for t in done:
            exc = t.exception()
            if isinstance(exc, LiveError):
                with contextlib.suppress(Exception):
                    await _refuse_ws(ws, exc.code, exc.detail)
            elif exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError, ConnectionError)):
                log.warning("camera %s: live proxy ended: %r", camera_id, exc)
    finally:
        for t in tasks:
            t.cancel()
        await upstream.close()


# ------------------------------------------------------------------------------------------ the alert clip

def _alert_row(d: Dashboard, alert_id: str, user: User) -> Any:
    with d.engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None or not user.sees_cell(row.grid_cell_id):
        return None
    return row


async def _finish_open_segment(d: Dashboard, camera: str) -> float | None:
    """Ask the camera's worker (live seam ``finish``; cluster: its owner, wherever it runs) to finish its
    open segment; None when it cannot.

    At most one keyframe interval (``FINISH_WAIT_S``).  A camera that is not running or not recorded
    is no error: the clip then covers what is already finished.
    """
    try:
        seams = await live_seams(d, camera)
        return await run_in_threadpool(protocol.finish_recording, seams, camera, FINISH_WAIT_S)
    except LiveError as e:
        log.info("camera %s: open segment not finished for a clip: %s", camera, e)
        return None


def _wait_catalogued(d: Dashboard, rec_dir: Path, camera: str, end: float,
                     timeout: float = CATALOGUE_WAIT_S) -> bool:
    """Cluster: wait until the segment the owner just finished (ending at ``end``) can be found.

    Why: on another machine the clip reaches that segment only through the catalogue (the owner
    announces it, the archiver stores it: about a second); cut at once, the clip would end a
    segment short.  True when it is here (on this machine's disk, or in the catalogue)."""
    from history.catalogue import lookup

    deadline = time.monotonic() + timeout
    while True:
        local = Recordings(rec_dir).segments(camera, end - 1.0, end)
        if local and local[-1].end >= end - 0.05:
            return True
        try:
            if any(r.end >= end - 0.05 for r in lookup(d.engine, camera, end - 1.0, end)):
                return True
        except Exception as e:  # the database: the clip covers what it can
            log.info("camera %s: catalogue not read while waiting for a finished segment: %s", camera, e)
            return False
        if time.monotonic() >= deadline:
            log.info("camera %s: the segment finished at %.3f is not in the catalogue after %.1f s (archiver "
                     "running?): the clip ends before it", camera, end, timeout)
            return False
        time.sleep(0.1)


def _needs_finish(rec_dir: Path, camera: str, start: float, end: float) -> bool:
    """Whether the window's end is recent and past the finished recording (so it is in the open segment)."""
    if end < time.time() - RECENT_S:
        return False  # an old window the recording does not reach has a gap there, not an open segment
    segs = Recordings(rec_dir).segments(camera, start, end)
    return not segs or segs[-1].end < end - 0.05


def _window(d: Dashboard, row: Any) -> tuple[float, float, bool]:
    """(start, end, open): the message's clip range (pre-roll before the alert, post-roll after its end).

    An old message without one falls back to ``recordings.pre_event_s`` before the start; an open
    alert's clip runs to now.
    """
    clip = json.loads(row.message).get("clip") or {}
    start = clip.get("start")
    if start is None:
        start = row.start_time - d.config().recordings.pre_event_s
    end = clip.get("end") or (row.end_time if row.end_time is not None else time.time())
    return float(start), max(float(end), row.start_time + 1.0), row.end_time is None


@router.get("/api/clips/{alert_id}")
async def clip_info(alert_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """The alert's clip: cut (or found in the cache) now, with its window, what it covers and its gaps."""
    d = ctx(request)
    row = await run_in_threadpool(_alert_row, d, alert_id, user)
    if row is None:
        raise refuse(404, "not_found")
    t0 = time.perf_counter()
    recorded_to = None
    start, end, is_open = _window(d, row)
    rec_dir = d.data_dir / d.config().recordings.dir
    if await run_in_threadpool(_needs_finish, rec_dir, row.camera_id, start, end):
        # open, or ended a moment ago: the worker finishes its open segment first, so the clip reaches now
        recorded_to = await _finish_open_segment(d, row.camera_id)
        if recorded_to is not None and d.config().cluster.enabled:  # the owner may be another machine
            await run_in_threadpool(_wait_catalogued, d, rec_dir, row.camera_id, recorded_to)
        start, end, is_open = _window(d, row)
    finish_ms = round((time.perf_counter() - t0) * 1000, 1)
    try:
        clip = await run_in_threadpool(cut_clip, d.data_dir / d.config().recordings.dir, d.data_dir / "cache" / "clips",
                                       row.camera_id, alert_id, start, end, is_open, dashboard_fetcher(d))
    except ClipError as e:
        raise refuse(404, e.code, detail=str(e)) from None

    def _track() -> list[dict[str, Any]]:
        with d.engine.connect() as conn:
            msgs = conn.execute(select(alert_messages.c.time, alert_messages.c.message)
                                .where(alert_messages.c.alert_id == alert_id).order_by(alert_messages.c.time)).all()
        path = []
        for m in msgs:
            body = json.loads(m.message)
            ids = set(body.get("track_ids") or [])
            for o in body.get("objects") or []:
                if not ids or o.get("track_id") in ids:
                    path.append({"time": m.time, "track_id": o.get("track_id"), "box": o.get("box")})
        return path

    def _audit() -> None:
        with d.engine.begin() as conn:
            record(conn, "view_clip", user_id=user.id, username=user.username, alert_id=alert_id,
                   grid_cell_id=row.grid_cell_id, data={"start": clip.start, "end": clip.end},
                   remote=remote_addr(request))
    await run_in_threadpool(_audit)
    message = json.loads(row.message)
    return {"alert_id": alert_id, "camera": {"id": row.camera_id, "name": row.camera_name},
            "alert_start": row.start_time, "alert_end": row.end_time, "window": [start, end],
            "clip_start": clip.start, "clip_end": clip.end, "duration": clip.duration,
            "alert_offset": row.start_time - clip.start, "gaps": clip.gaps, "cached": clip.cached,
            "open": is_open, "recorded_to": recorded_to, "finish_ms": finish_ms,
            "cut_ms": round((time.perf_counter() - t0) * 1000 - finish_ms, 1),
            "url": f"/api/clips/{alert_id}/video.mp4?v={clip.version}",
            "snapshot": message.get("snapshot"), "track": await run_in_threadpool(_track)}


@router.get("/api/clips/{alert_id}/video.mp4")
async def clip_file(alert_id: str, request: Request, user: User = Depends(current_user)) -> FileResponse:
    """The clip file itself, the version the info named (``v``); byte ranges make it seekable in a ``<video>``."""
    d = ctx(request)
    row = await run_in_threadpool(_alert_row, d, alert_id, user)
    if row is None:
        raise refuse(404, "not_found")
    cache = d.data_dir / "cache" / "clips"
    found = cached_clip(cache, row.camera_id, alert_id, request.query_params.get("v", ""))
    if found is not None:
        return FileResponse(found, media_type="video/mp4", headers={"Cache-Control": "private, no-cache"})
    start, end, is_open = _window(d, row)
    try:
        clip = await run_in_threadpool(cut_clip, d.data_dir / d.config().recordings.dir, d.data_dir / "cache" / "clips",
                                       row.camera_id, alert_id, start, end, is_open, dashboard_fetcher(d))
    except ClipError as e:
        raise refuse(404, e.code, detail=str(e)) from None
    return FileResponse(Path(clip.path), media_type="video/mp4", headers={"Cache-Control": "private, no-cache"})
