"""The video wall of each user, kept by the dashboard: which camera on which tile, and what a pushed tile showed.

A wall belongs to one user (the ``walls`` row of their id) and is the same in every window or PC logged in
as that user: the wall page reads it when it opens and polls its version (a change shows within about a
second), and writes it back when the operator picks a layout or a camera.  Until a user saves a wall, it
shows the first cameras of their grid cells in config order.

The command room pushes an alarm camera onto a chosen tile ("push to wall"); the tile keeps the camera it
showed before the push, and "restore" puts it back.  A second push onto a pushed tile keeps the first
one's previous camera, so restore always returns to the operator's own choice.  Pushes and restores are
in the audit log (on the alert's timeline when they name one).

Scope: every camera named or shown is one of the user's cells; a camera out of scope answers exactly as an
unknown one (404).  A camera that left the user's cells (rights changed, camera removed) is shown as an
empty tile, never streamed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from dashboard.context import Dashboard
from dashboard.services.cameras import visible_cameras
from dashboard.users import User
from history.audit import record
from history.refusal import Refused
from history.schema import alerts, walls

LAYOUTS = (1, 4, 9, 16)
MAX_TILES = 16
DEFAULT_LAYOUT = 4


class WallError(Refused):
    """A wall request that cannot be done; ``code`` is translated by the page."""

    default_status = 409


def _fit_layout(tiles: int) -> int:
    return next(n for n in LAYOUTS if n >= tiles)


def _tile(camera: str | None, pushed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"camera": camera, "pushed": pushed}


def _default(d: Dashboard, user: User) -> dict[str, Any]:
    cams = visible_cameras(d.config(), user)[:MAX_TILES]
    return {"layout": DEFAULT_LAYOUT, "tiles": [_tile(c) for c in cams], "version": 0, "saved": False}


def _load(conn: Connection, d: Dashboard, user: User, lock: bool = False) -> dict[str, Any]:
    q = select(walls).where(walls.c.user_id == user.id)
    row = conn.execute(q.with_for_update() if lock else q).first()
    if row is None:
        return _default(d, user)
    try:
        tiles = [_tile(t.get("camera"), t.get("pushed")) for t in json.loads(row.tiles)][:MAX_TILES]
    except (ValueError, AttributeError):
        tiles = []  # a row this code cannot read: an empty wall, written over by the next change
    return {"layout": row.layout if row.layout in LAYOUTS else DEFAULT_LAYOUT, "tiles": tiles,
            "version": row.version, "saved": True}


def _save(conn: Connection, user: User, state: dict[str, Any]) -> dict[str, Any]:
    tiles = state["tiles"]
    while tiles and tiles[-1]["camera"] is None and tiles[-1]["pushed"] is None:
        tiles.pop()
    values = {"layout": state["layout"], "tiles": json.dumps(tiles, ensure_ascii=False),
              "version": state["version"] + 1, "updated_at": time.time()}
    if state["saved"]:
        conn.execute(walls.update().where(walls.c.user_id == user.id).values(**values))
    else:
        conn.execute(walls.insert().values(user_id=user.id, **values))
    return {**state, "version": values["version"], "saved": True}


def _shown(d: Dashboard, user: User, state: dict[str, Any]) -> dict[str, Any]:
    """The wall as the page gets it: one entry per tile of the layout, cameras out of scope left out."""
    cfg = d.config()
    mine = set(visible_cameras(cfg, user))

    def cam(cid: str | None) -> dict[str, Any] | None:
        if cid is None or cid not in mine:
            return None
        c = cfg.cameras[cid]
        return {"id": cid, "name": c.name, "grid_cell": c.grid_cell}

    tiles = state["tiles"] + [_tile(None)] * (MAX_TILES - len(state["tiles"]))
    out = []
    for i, t in enumerate(tiles[:state["layout"]]):
        p = t["pushed"]
        pushed = None
        if p:
            pushed = {"alert_id": p.get("alert_id"), "at": p.get("at"), "by": p.get("by"),
                      "previous": cam(p.get("previous"))}
        out.append({"tile": i + 1, "camera": cam(t["camera"]), "pushed": pushed})
    return {"layout": state["layout"], "version": state["version"], "saved": state["saved"], "tiles": out}


def _write(d: Dashboard, change: Any) -> Any:
    """Run ``change(conn)`` in one transaction with the user's row locked; once more if a first save raced."""
    for attempt in (1, 2):
        try:
            with d.engine.begin() as conn:
                return change(conn)
        except IntegrityError:  # two first saves of one user's wall at once: the second reads the row now
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def wall(d: Dashboard, user: User) -> dict[str, Any]:
    """The user's wall: layout, version and each tile's camera (and what a pushed tile showed before)."""
    with d.engine.connect() as conn:
        return _shown(d, user, _load(conn, d, user))


def set_wall(d: Dashboard, user: User, layout: int, cameras: list[str | None]) -> dict[str, Any]:
    """The operator picked a layout or cameras: ``cameras`` are the tiles in order (None: an empty tile).

    A tile that still shows its pushed camera stays pushed (restore still knows what was there)."""
    if layout not in LAYOUTS:
        raise WallError("bad_layout", 422, layout=layout)
    if len(cameras) > MAX_TILES:
        raise WallError("too_many_tiles", 422, most=MAX_TILES)
    mine = set(visible_cameras(d.config(), user))
    for cid in cameras:
        if cid is not None and cid not in mine:
            raise WallError("not_found", 404, camera=cid)  # out of scope answers as unknown

    def change(conn: Connection) -> dict[str, Any]:
        state = _load(conn, d, user, lock=True)
        old = state["tiles"]
        tiles = []
        for i, cid in enumerate(cameras):
            pushed = old[i]["pushed"] if i < len(old) and old[i]["camera"] == cid else None
            tiles.append(_tile(cid, pushed))
        return _save(conn, user, {**state, "layout": layout, "tiles": tiles})

    return _shown(d, user, _write(d, change))


def _alert_camera(conn: Connection, user: User, alert_id: str) -> tuple[str, str]:
    row = conn.execute(select(alerts.c.camera_id, alerts.c.grid_cell_id).where(alerts.c.id == alert_id)).first()
    if row is None or not user.sees_cell(row.grid_cell_id):
        raise WallError("not_found", 404)
    return row.camera_id, row.grid_cell_id


def push(d: Dashboard, user: User, tile: int, camera: str | None, alert_id: str | None,
         remote: str | None) -> dict[str, Any]:
    """Put ``camera`` (or the camera of ``alert_id``) on tile ``tile`` (1-based) of the user's wall, keeping
    what the tile showed for :func:`restore`.  A tile past the layout makes the layout large enough."""
    if not 1 <= tile <= MAX_TILES:
        raise WallError("bad_tile", 422, most=MAX_TILES)
    if camera is None and alert_id is None:
        raise WallError("no_camera", 422)
    cfg = d.config()

    def change(conn: Connection) -> dict[str, Any]:
        cid = camera
        if alert_id is not None:
            alarm_cam, _cell = _alert_camera(conn, user, alert_id)
            cid = cid or alarm_cam
        assert cid is not None
        if cid not in cfg.cameras or not user.sees_cell(cfg.cameras[cid].grid_cell):
            raise WallError("not_found", 404)
        state = _load(conn, d, user, lock=True)
        tiles = state["tiles"] + [_tile(None) for _ in range(max(0, tile - len(state["tiles"])))]
        old = tiles[tile - 1]
        previous = old["pushed"]["previous"] if old["pushed"] else old["camera"]
        tiles[tile - 1] = _tile(cid, {"camera": cid, "previous": previous, "alert_id": alert_id,
                                      "at": time.time(), "by": user.username})
        layout = max(state["layout"], _fit_layout(tile))
        saved = _save(conn, user, {**state, "layout": layout, "tiles": tiles})
        record(conn, "wall_push", user_id=user.id, username=user.username, alert_id=alert_id,
               grid_cell_id=cfg.cameras[cid].grid_cell, remote=remote,
               data={"camera": cid, "camera_name": cfg.cameras[cid].name, "tile": tile, "previous": previous})
        return saved

    return _shown(d, user, _write(d, change))


def restore(d: Dashboard, user: User, tile: int, remote: str | None) -> dict[str, Any]:
    """Put back on tile ``tile`` the camera it showed before it was pushed (an empty tile if it showed none,
    or if that camera is no longer the user's)."""
    if not 1 <= tile <= MAX_TILES:
        raise WallError("bad_tile", 422, most=MAX_TILES)
    cfg = d.config()
    mine = set(visible_cameras(cfg, user))

    def change(conn: Connection) -> dict[str, Any]:
        state = _load(conn, d, user, lock=True)
        tiles = state["tiles"]
        pushed = tiles[tile - 1]["pushed"] if tile <= len(tiles) else None
        if not pushed:
            raise WallError("not_pushed", 409, tile=tile)
        previous = pushed.get("previous") if pushed.get("previous") in mine else None
        tiles[tile - 1] = _tile(previous)
        saved = _save(conn, user, {**state, "tiles": tiles})
        cid = pushed.get("camera")
        cell = cfg.cameras[cid].grid_cell if cid in cfg.cameras else None
        record(conn, "wall_restore", user_id=user.id, username=user.username, alert_id=pushed.get("alert_id"),
               grid_cell_id=cell, remote=remote, data={"camera": previous, "pushed": cid, "tile": tile})
        return saved

    return _shown(d, user, _write(d, change))
