"""Cameras: the live list (operators, their cells only) and the engineer's health page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard, ctx
from dashboard.deps import current_user, refuse, require_role
from dashboard.pages import page
from dashboard.routes.workers import attach_owners
from dashboard.users import User
from pipeline.config import Config, redact_url
from pipeline.publish import bus

router = APIRouter(dependencies=[Depends(current_user)])


def status_dict(st: Any) -> dict[str, Any]:
    return st.to_dict() if hasattr(st, "to_dict") else dict(st)


async def camera_statuses(d: Dashboard) -> dict[str, Any]:
    return bus.parse_statuses(await d.redis().hgetall(d.keys.cameras))


def visible_cameras(cfg: Config, user: User) -> list[str]:
    return [cid for cid, cam in cfg.cameras.items() if user.sees_cell(cam.grid_cell)]


def camera_list(cfg: Config, statuses: dict[str, Any], user: User, detail: bool = False) -> list[dict[str, Any]]:
    out = []
    for cid in visible_cameras(cfg, user):
        cam = cfg.cameras[cid]
        st = status_dict(statuses[cid]) if cid in statuses else {}
        cell = cfg.grid_cells.get(cam.grid_cell)
        item = {
            "id": cid, "name": cam.name, "enabled": cam.enabled,
            "grid_cell": {"id": cam.grid_cell, "name": cell.name if cell else cam.grid_cell},
            "state": st.get("state", "unknown" if cam.enabled else "disabled"),
            "online": bool(st.get("online")), "since": st.get("since"),
        }
        if detail:  # engineers: the source (password hidden) and the counters
            item.update({"source": redact_url(cam.source), "detect_fps": cam.detect_fps,
                         "rules": sorted(cam.effective_rules()), "status": st})
        out.append(item)
    return out


@router.get("/api/cameras")
async def cameras(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    d = ctx(request)
    return camera_list(d.config(), await camera_statuses(d), user)


@router.get("/api/cameras/{camera_id}")
async def camera(camera_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    d = ctx(request)
    cfg = d.config()
    cam = cfg.cameras.get(camera_id)
    if cam is None or not user.sees_cell(cam.grid_cell):
        raise refuse(404, "not_found")
    item = [c for c in camera_list(cfg, await camera_statuses(d), user, detail=user.has_role("engineer"))
            if c["id"] == camera_id][0]
    return (await attach_owners(d, [item]))[0]  # which worker runs it now (docs/events.md, cluster keys)


@router.get("/engineer", include_in_schema=False)
async def engineer_page(_user: User = Depends(require_role("engineer"))) -> HTMLResponse:
    return page("engineer.html")


@router.get("/api/health")
async def health(request: Request, user: User = Depends(require_role("engineer"))) -> list[dict[str, Any]]:
    """Every visible camera with its configuration, counters and owner worker (the engineer page)."""
    d = ctx(request)
    return await attach_owners(d, camera_list(d.config(), await camera_statuses(d), user, detail=True))


@router.get("/map", include_in_schema=False)
async def map_page() -> HTMLResponse:
    return page("map.html")


@router.get("/api/map")
async def grid_map(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """The user's grid cells (outline, duty officer, open alerts now) and cameras (position, online)."""
    d = ctx(request)
    cfg = d.config()
    cams = camera_list(cfg, await camera_statuses(d), user)

    def _counts() -> dict[str, dict[str, int]]:
        from sqlalchemy import func, select

        from history.schema import OPEN_STATES, alerts
        with d.engine.connect() as conn:
            rows = conn.execute(select(alerts.c.grid_cell_id, alerts.c.state, func.count())
                                .where(alerts.c.state.in_(OPEN_STATES)).group_by(alerts.c.grid_cell_id, alerts.c.state))
            out: dict[str, dict[str, int]] = {}
            for cell, state, n in rows:
                out.setdefault(cell, {})[state] = n
            return out
    counts = await run_in_threadpool(_counts)
    cells = [{"id": cid, "name": c.name, "officer": {"name": c.officer.name, "phone": c.officer.phone},
              "outline": [list(p) for p in c.outline] if c.outline else None,
              "open": sum(counts.get(cid, {}).values()), "new": counts.get(cid, {}).get("new", 0)}
             for cid, c in cfg.grid_cells.items() if user.sees_cell(cid)]
    for cam in cams:
        pos = cfg.cameras[cam["id"]].position
        cam["position"] = list(pos) if pos else None
    return {"cells": cells, "cameras": cams}
