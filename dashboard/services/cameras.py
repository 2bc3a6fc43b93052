"""Camera look-ups: the statuses the workers publish, the cameras a user may see, the lists the pages show.

Every list is filtered by the user's grid cells; a camera of another cell is never named.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from dashboard.services.cluster import attach_owners
from dashboard.users import User
from history.schema import OPEN_STATES, alerts
from pipeline.config import Config, redact_url
from pipeline.publish import bus


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
            "detector": st.get("detector", "ok"), "detector_error": st.get("detector_error", ""),
        }
        if detail:  # engineers: the source (password hidden) and the counters
            item.update({"source": redact_url(cam.source), "detect_fps": cam.detect_fps,
                         "rules": sorted(cam.effective_rules()), "status": st})
        out.append(item)
    return out


async def user_cameras(d: Dashboard, user: User) -> list[dict[str, Any]]:
    """The live list: the user's cameras with their state now."""
    return camera_list(d.config(), await camera_statuses(d), user)


async def camera_detail(d: Dashboard, user: User, camera_id: str) -> dict[str, Any] | None:
    """One camera (engineers: with its source, counters and owner worker); None outside the user's cells."""
    cfg = d.config()
    cam = cfg.cameras.get(camera_id)
    if cam is None or not user.sees_cell(cam.grid_cell):
        return None
    item = [c for c in camera_list(cfg, await camera_statuses(d), user, detail=user.has_role("engineer"))
            if c["id"] == camera_id][0]
    return (await attach_owners(d, [item]))[0]  # which worker runs it now (docs/events.md, cluster keys)


async def health(d: Dashboard, user: User) -> list[dict[str, Any]]:
    """Every visible camera with its configuration, counters and owner worker (the engineer page)."""
    return await attach_owners(d, camera_list(d.config(), await camera_statuses(d), user, detail=True))


async def grid_map(d: Dashboard, user: User) -> dict[str, Any]:
    """The user's grid cells (outline, duty officer, open alerts now) and cameras (position, online)."""
    cfg = d.config()
    cams = camera_list(cfg, await camera_statuses(d), user)

    def _counts() -> dict[str, dict[str, int]]:
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


def _geometry(cam: Any) -> dict[str, Any]:
    return {"zones": {name: z.polygon for name, z in cam.zones.items()},
            "lines": {name: {"a": ln.a, "b": ln.b, "direction": ln.direction} for name, ln in cam.lines.items()}}


async def wall_cameras(d: Dashboard, user: User) -> dict[str, Any]:
    """The cameras this user may watch, with health (online, fps, skipped, last seen) and zones and lines."""
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
