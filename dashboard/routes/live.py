"""Live view: the camera wall page, its camera list, the live WebSocket, and the clip inside an alert.

Roles and grid-cell scopes are the command room's: a user sees the live video of exactly the cameras
of the cells they may see, and every opening is in the audit log (footage can become evidence).  The
proxying to the worker that runs the camera and the clip cutting are ``dashboard.services.live``'s
(docs/live.md).

Messages to the page: text frames are JSON (``hello``, ``overlay``, ``accepted``, ``error``), binary
frames are one type byte (``I`` init segment, ``F`` fragment, ``J`` JPEG) and the payload.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool

from dashboard.clips import ClipError
from dashboard.context import Dashboard
from dashboard.deps import CurrentUser, DashboardDep, RemoteAddr, found, refuse
from dashboard.pages import page
from dashboard.security import COOKIE, lookup_session
from dashboard.services import live as live_service
from dashboard.services.cameras import wall_cameras
from dashboard.services.responses import Reply
from dashboard.users import User
from pipeline.live import protocol

router = APIRouter()
CLOSE_CODES = {"no_session": 4401, "forbidden": 4403, "not_found": 4404, "bad_request": 4400}


class WallOut(Reply):
    cameras: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    now: float


class ClipOut(Reply):
    alert_id: str
    url: str
    window: list[float]


@router.get("/wall", include_in_schema=False)
async def wall_page(_user: CurrentUser) -> HTMLResponse:
    return page("wall.html")


@router.get("/clip/{alert_id}", include_in_schema=False)
async def clip_page(alert_id: str, _user: CurrentUser) -> HTMLResponse:
    return page("clip.html")


@router.get("/api/live/cameras", response_model=WallOut)
async def live_cameras(d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """The cameras this user may watch, with health (online, fps, skipped, last seen) and zones and lines."""
    return await wall_cameras(d, user)


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
        await _refuse_ws(ws, "not_found")  # out of scope answers as unknown: camera ids are not probed
        return
    if stream not in protocol.STREAMS or format not in protocol.FORMATS:
        await _refuse_ws(ws, "bad_request")
        return

    async def refuse_ws(code: str, detail: str) -> None:
        await _refuse_ws(ws, code, detail)
    await live_service.proxy(ws, d, user, camera_id, cam.grid_cell, stream, format, refuse_ws)


# ------------------------------------------------------------------------------------------ the alert clip

@router.get("/api/clips/{alert_id}", response_model=ClipOut)
async def clip_info(alert_id: str, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """The alert's clip: cut (or found in the cache) now, with its window, what it covers and its gaps."""
    row = found(await run_in_threadpool(live_service.alert_row, d, alert_id, user))
    try:
        return await live_service.clip_info(d, user, row, alert_id, remote)
    except ClipError as e:
        raise refuse(404, e.code, detail=str(e)) from None


@router.get("/api/clips/{alert_id}/video.mp4")
async def clip_file(alert_id: str, request: Request, d: DashboardDep, user: CurrentUser) -> FileResponse:
    """The clip file itself, the version the info named (``v``); byte ranges make it seekable in a ``<video>``."""
    row = found(await run_in_threadpool(live_service.alert_row, d, alert_id, user))
    try:
        path = await live_service.clip_path(d, row, alert_id, request.query_params.get("v", ""))
    except ClipError as e:
        raise refuse(404, e.code, detail=str(e)) from None
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private, no-cache"})
