"""Health: ``/healthz`` (open: the supervisor probes it) and Prometheus ``/metrics`` (session or token)."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from dashboard.deps import DashboardDep, refuse
from dashboard.security import COOKIE, lookup_session
from dashboard.services import cluster
from dashboard.services.cameras import camera_statuses, visible_cameras
from pipeline.publish.status import metrics_text

router = APIRouter()


@router.get("/healthz")
async def healthz(d: DashboardDep) -> Any:
    """Whether the bus answers; no details, so it can stay open without a session."""
    try:
        await d.redis().ping()
    except Exception:
        return JSONResponse({"ok": False}, status_code=503)
    return {"ok": True}


@router.get("/metrics")
async def metrics(request: Request, d: DashboardDep) -> Response:
    """Per-camera fps, inference ms, reconnects, state: for a scraper with the token, or a logged-in user.

    A user sees only the cameras of their grid cells; the token sees all.
    """
    token = d.config().dashboard.metrics_token
    auth = request.headers.get("authorization", "")
    statuses = await camera_statuses(d)
    if token and auth.startswith("Bearer ") and secrets.compare_digest(auth[7:].strip(), token):
        return Response(metrics_text(statuses) + await cluster.metrics_text(d),
                        media_type="text/plain; version=0.0.4; charset=utf-8")
    sess = await run_in_threadpool(lookup_session, d.engine, request.cookies.get(COOKIE))
    if sess is None:
        raise refuse(401, "no_session")
    mine = set(visible_cameras(d.config(), sess.user))
    statuses = {cid: st for cid, st in statuses.items() if cid in mine}
    # the workers' metrics (cameras held, moves) are site-wide: engineers of every cell and the token only
    extra = await cluster.metrics_text(d) if sess.user.has_role("engineer") and sess.user.all_cells() else b""
    return Response(metrics_text(statuses) + extra, media_type="text/plain; version=0.0.4; charset=utf-8")
