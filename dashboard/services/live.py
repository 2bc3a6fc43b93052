"""The live seam from the dashboard's side: which worker to ask for a camera, the wall's proxy, the alert clip.

The dashboard never reads a camera itself.  A wall tile's WebSocket is proxied to the worker that
runs the camera through the live seam (``pipeline.live.protocol``, the only live module imported
here; docs/live.md): the worker remuxes the camera's own packets, so a camera is never dialled a
second time however many people watch.

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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dashboard.clips import Clip, cached_clip, cut_clip
from dashboard.context import Dashboard
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
TEXT_NAMES = {protocol.ACCEPTED: "accepted", protocol.HELLO: "hello", protocol.OVERLAY: "overlay"}
RECENT_S = 900.0  # a window ending longer ago than this (longest segment + margin) is not in an open segment
FINISH_WAIT_S = 1.5  # longest wait for the keyframe that ends an open alert's segment (clip ready in 2 s)
CATALOGUE_WAIT_S = 3.0  # cluster: longest wait for that segment's catalogue row (announcement, archiver)


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


# ------------------------------------------------------------------------------------------ the wall's proxy

async def proxy(ws: WebSocket, d: Dashboard, user: User, camera_id: str, grid_cell: str, stream: str, fmt: str,
                refuse: Callable[[str, str], Awaitable[None]]) -> None:
    """Open the camera at its worker, audit the opening, then pump its frames to the page until either ends.

    ``refuse(code, detail)`` tells the page why the stream could not open or ended (a :class:`LiveError`)."""
    try:
        upstream = await protocol.open_stream(await live_seams(d, camera_id), camera_id, stream, fmt)
    except LiveError as e:
        await refuse(e.code, e.detail)
        return

    def _audit() -> None:
        with d.engine.begin() as conn:
            record(conn, "view_live", user_id=user.id, username=user.username, grid_cell_id=grid_cell,
                   data={"camera": camera_id, "stream": stream, "format": fmt},
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
                    await refuse(exc.code, exc.detail)
            elif exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError, ConnectionError)):
                log.warning("camera %s: live proxy ended: %r", camera_id, exc)
    finally:
        for t in tasks:
            t.cancel()
        await upstream.close()


# ------------------------------------------------------------------------------------------ the alert clip

def alert_row(d: Dashboard, alert_id: str, user: User) -> Any:
    """The alert's row, or None when there is none or it is of a cell the user may not see."""
    with d.engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None or not user.sees_cell(row.grid_cell_id):
        return None
    return row


async def finish_open_segment(d: Dashboard, camera: str) -> float | None:
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


def _cut(d: Dashboard, row: Any, alert_id: str, start: float, end: float, is_open: bool) -> Clip:
    return cut_clip(d.data_dir / d.config().recordings.dir, d.data_dir / "cache" / "clips", row.camera_id,
                    alert_id, start, end, is_open, dashboard_fetcher(d))


async def clip_info(d: Dashboard, user: User, row: Any, alert_id: str, remote: str | None) -> dict[str, Any]:
    """The alert's clip: cut (or found in the cache) now, with its window, what it covers and its gaps.

    Raises :class:`dashboard.clips.ClipError` when nothing can be cut."""
    t0 = time.perf_counter()
    recorded_to = None
    start, end, is_open = _window(d, row)
    rec_dir = d.data_dir / d.config().recordings.dir
    if await run_in_threadpool(_needs_finish, rec_dir, row.camera_id, start, end):
        # open, or ended a moment ago: the worker finishes its open segment first, so the clip reaches now
        recorded_to = await finish_open_segment(d, row.camera_id)
        if recorded_to is not None and d.config().cluster.enabled:  # the owner may be another machine
            await run_in_threadpool(_wait_catalogued, d, rec_dir, row.camera_id, recorded_to)
        start, end, is_open = _window(d, row)
    finish_ms = round((time.perf_counter() - t0) * 1000, 1)
    clip = await run_in_threadpool(_cut, d, row, alert_id, start, end, is_open)

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
                   grid_cell_id=row.grid_cell_id, data={"start": clip.start, "end": clip.end}, remote=remote)
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


async def clip_path(d: Dashboard, row: Any, alert_id: str, version: str) -> Path:
    """The clip file: the cached version the info named, else cut now (raises ClipError)."""
    found = cached_clip(d.data_dir / "cache" / "clips", row.camera_id, alert_id, version)
    if found is not None:
        return Path(found)
    start, end, is_open = _window(d, row)
    clip = await run_in_threadpool(_cut, d, row, alert_id, start, end, is_open)
    return Path(clip.path)
