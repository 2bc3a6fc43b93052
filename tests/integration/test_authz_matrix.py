"""The authorization matrix, generated from the app's own route table.

Every route (method and path, the live WebSocket included) must have an entry in ``MATRIX``: who may call
it (public, an officer's link, any session, engineer, admin) and which kind of object its path names.
The test FAILS for a route without an entry, so a new route cannot skip the matrix.

Each route is called as {no session, operator of cell A, operator of cell B, engineer, admin} against
fixtures of every object kind in cell A and cell B:
- without a session: 401 (or the log-in redirect for pages), except public routes and officer links;
- a role below the route's: 403;
- the operator of cell B naming cell A's object gets exactly the answer an unknown object gets (404), for
  reads and writes, and the operator of cell A naming it does not get a 404;
- nobody ever gets a 500, and after all of cell B's requests every row of cell A is as it was.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from sqlalchemy import select

from history.schema import alerts, cases, export_jobs
from history.sightings import store
from tests.support.security_room import Room

NOW = time.time()
# access: public | officer | session | engineer | admin;  kind: the object the path names (None: none)
# body: the JSON a write sends (valid enough to reach the scope check)
MATRIX: dict[str, tuple[str, str | None, Any]] = {
    "GET /static/{rel:path}": ("public", None, None),
    "GET /favicon.ico": ("public", None, None),
    "GET /login": ("public", None, None),
    "POST /api/login": ("public", None, {"username": "nobody", "password": "x"}),
    "POST /api/logout": ("session", None, {}),
    "GET /api/me": ("session", None, None),
    "POST /api/me/locale": ("session", None, {"locale": "en"}),
    "GET /healthz": ("public", None, None),
    "GET /metrics": ("session", None, None),
    "GET /o/{token}": ("officer", "token", None),
    "GET /api/o/{token}": ("officer", "token", None),
    "GET /api/o/{token}/snapshot": ("officer", "token", None),
    "POST /api/o/{token}/steps": ("officer", "token", {"step": "signed_for"}),
    "GET /": ("session", None, None),
    "GET /api/alerts": ("session", None, None),
    "GET /api/alerts/{alert_id}": ("session", "alert", None),
    "POST /api/alerts/bulk": ("session", None, {"ids": ["al-A"], "action": "acknowledge"}),  # B must skip A's
    "POST /api/alerts/bulk-close": ("session", None, {"camera": "lobby", "note": "flapping"}),
    "POST /api/alerts/{alert_id}/actions": ("session", "alert", {"action": "note", "note": "seen"}),
    "POST /api/alerts/{alert_id}/officer-link": ("session", "alert", {}),
    "GET /api/alerts/{alert_id}/recipients": ("session", "alert", None),
    "GET /api/notices": ("session", None, None),
    "GET /api/stream": ("session", None, None),
    "GET /snapshots/{rel:path}": ("session", "snapshot", None),
    "GET /history": ("session", None, None),
    "GET /api/history": ("session", None, None),
    "GET /api/history/choices": ("session", None, None),
    "GET /reports": ("session", None, None),
    "GET /api/reports": ("session", None, None),
    "GET /api/reports.csv": ("session", None, None),
    "GET /supervisor": ("session", None, None),
    "GET /api/supervisor": ("session", None, None),
    "GET /alerts/{alert_id}/print": ("session", "alert", None),
    "GET /api/cameras": ("session", None, None),
    "GET /api/cameras/{camera_id}": ("session", "camera", None),
    "GET /engineer": ("engineer", None, None),
    "GET /api/health": ("engineer", None, None),
    "GET /map": ("session", None, None),
    "GET /api/map": ("session", None, None),
    "GET /users": ("admin", None, None),
    "GET /api/users": ("admin", None, None),
    "POST /api/users": ("admin", None, {"username": "x", "password": "short", "role": "operator", "cells": ["G1"]}),
    "PATCH /api/users/{username}": ("admin", "user", {}),
    "GET /wall": ("session", None, None),
    "GET /clip/{alert_id}": ("session", "alert", None),
    "GET /api/live/cameras": ("session", None, None),
    "GET /api/wall": ("session", None, None),
    "PUT /api/wall": ("session", None, {"layout": 4, "cameras": ["lobby"]}),  # B: another cell's camera, 404
    "POST /api/wall/push": ("session", None, {"tile": 1, "alert_id": "al-A"}),
    "POST /api/wall/restore": ("session", None, {"tile": 1}),
    "WS /api/live/{camera_id}": ("session", "camera", None),
    "GET /api/clips/{alert_id}": ("session", "alert", None),
    "GET /api/clips/{alert_id}/video.mp4": ("session", "alert", None),
    "GET /zones": ("engineer", None, None),
    "GET /api/zones": ("engineer", None, None),
    "GET /api/zones/{camera_id}": ("engineer", "camera", None),
    "GET /api/zones/{camera_id}/frame": ("engineer", "camera", None),
    "GET /api/zones/{camera_id}/detections": ("engineer", "camera", None),
    "POST /api/zones/{camera_id}": ("engineer", "camera", {}),
    "GET /exports": ("session", None, None),
    "GET /timeline": ("session", None, None),
    "POST /api/exports": ("session", None, {"cameras": ["lobby"], "start": NOW - 60, "end": NOW - 30}),
    "GET /api/exports": ("session", None, None),
    "GET /api/exports/{job_id}": ("session", "job", None),
    "GET /api/exports/{job_id}/events": ("session", "job", None),
    "GET /api/exports/{job_id}/download": ("session", "job", None),
    "GET /api/exports/{job_id}/files/{name}": ("session", "job", None),
    "POST /api/exports/{job_id}/release": ("session", "job", {"note": "released to court"}),
    "GET /api/cases": ("session", None, None),
    "POST /api/cases": ("session", None, {"name": "C-A", "description": "taken"}),
    "GET /api/cases/{name}/download": ("session", "case", None),
    "GET /api/exports-storage": ("session", None, None),
    "GET /api/timeline": ("session", None, None),
    "GET /workers": ("engineer", None, None),
    "GET /api/workers": ("engineer", None, None),
    "GET /api/workers/moves": ("engineer", None, None),
    "GET /api/sightings": ("session", None, None),
    "GET /api/sightings/path": ("session", None, None),
    "GET /watchlists": ("engineer", None, None),
    "GET /api/watchlists": ("engineer", None, None),
    "POST /api/watchlists": ("engineer", None, {"plate": "藏D·T5022", "reason": "stolen", "cells": ["G1"]}),
    "DELETE /api/watchlists/{entry_id}": ("engineer", None, None),
    "GET /search": ("session", None, None),
    "GET /search/clip": ("session", None, None),
    "GET /api/sightings/crops/{rel:path}": ("session", "crop", None),
    "GET /api/sightings/{sighting_id}/clip": ("session", "sighting", None),
    "GET /api/sightings/{sighting_id}/video.mp4": ("session", "sighting", None),
    "POST /api/sightings/{sighting_id}/case": ("session", "sighting", {"name": "C-A"}),
    "GET /patrol": ("session", None, None),
    "GET /api/patrol/plans": ("session", None, None),
    "GET /api/patrol/plans/{plan_id}": ("session", "plan", None),
    "POST /api/patrol/plans": ("engineer", None, {"name": "p", "cameras": [{"camera": "lobby"}]}),
    "PUT /api/patrol/plans/{plan_id}": ("engineer", "plan", {"name": "taken", "cameras": [{"camera": "square"}]}),
    "DELETE /api/patrol/plans/{plan_id}": ("engineer", "plan", None),
    "POST /api/patrol/plans/{plan_id}/start": ("session", "plan", {"layout": 1}),
    "GET /api/patrols": ("session", None, None),
    "GET /api/patrols/{patrol_id}": ("session", "patrol", None),
    "POST /api/patrols/{patrol_id}/views": ("session", "patrol", {"camera": "lobby", "on_screen_s": 1}),
    "POST /api/patrols/{patrol_id}/marks": ("session", "patrol", {"camera": "lobby", "mark": "normal"}),
    "POST /api/patrols/{patrol_id}/finish": ("session", "patrol", {}),
    "POST /api/alarms/phone": ("session", None, {"grid_cell": "G1", "report": "a fight"}),
    "GET /api/alarms/{alert_id}": ("session", "alert", None),
    "POST /api/alarms/{alert_id}/attach": ("session", "alert", {"cameras": ["lobby"], "start": NOW - 60,
                                                                   "end": NOW - 30}),
    "GET /api/patrol/faults": ("session", None, None),
    "POST /api/patrol/faults/{fault_id}/repair": ("session", "fault", {"step": "requested"}),
    "GET /api/patrol/report": ("session", None, None),
    "GET /api/patrol/supervisor": ("session", None, None),
    "GET /audit": ("engineer", None, None),
    "GET /api/audit": ("engineer", None, None),
    "GET /api/audit.csv": ("engineer", None, None),
    "GET /api/admin/throttles": ("admin", None, None),
    "POST /api/admin/throttles/clear": ("admin", None, {"username": "nobody"}),
    "GET /api/shelves": ("session", None, None),
    "POST /api/shelves": ("session", None, {"camera": "lobby", "reason": "flapping", "minutes": 30}),  # B: 404
    "POST /api/shelves/{shelf_id}/lift": ("engineer", None, {}),
}
RANK = {"public": 0, "officer": 0, "session": 1, "engineer": 2, "admin": 3}
ROLE_OF = {"opA": "session", "opB": "session", "eng": "engineer", "boss": "admin"}
UNKNOWN = {"alert": "no-such-alert", "camera": "no-such-camera", "snapshot": "lobbyx/2026-12-07/x.jpg",
           "job": "no-such-job", "case": "no-such-case", "user": "no-such-user", "plan": "999999",
           "patrol": "no-such-patrol", "fault": "999999", "token": "x" * 43,
           "sighting": "no-such-sighting", "crop": "lobbyx/20261207/x.jpg"}
SKIP_WHEN_LOGGED_IN = {"POST /api/logout"}  # would end the session the rest of the matrix uses
PAGES = re.compile(r"^/(?!api/|static/|snapshots/)")


def _routes(routes: list[Any]) -> Iterator[Any]:
    for r in routes:
        nested = getattr(r, "original_router", None)
        if nested is not None:
            yield from _routes(nested.routes)
        elif isinstance(r, APIRoute | APIWebSocketRoute):
            yield r


def route_keys(app: Any) -> list[str]:
    keys = []
    for r in _routes(app.routes):
        if isinstance(r, APIWebSocketRoute):
            keys.append(f"WS {r.path}")
        else:
            keys += [f"{m} {r.path}" for m in sorted(r.methods - {"HEAD"})]
    return keys


def _objects(room: Room) -> dict[str, dict[str, str]]:
    """One object of every kind in each cell: {"A": {kind: id}, "B": {...}}."""
    out: dict[str, dict[str, str]] = {"A": {}, "B": {}}
    for cell, cam, op, aid in (("A", "lobby", "opA", "al-A"), ("B", "square", "opB", "al-B")):
        room.publish_alert(aid, cam)
        c = room.as_(op)
        assert c.call("GET", f"/api/alerts/{aid}").status_code == 200
        out[cell].update(alert=aid, camera=cam, snapshot=room.snap[cam], user=op)
        r = c.call("POST", "/api/cases", {"name": f"C-{cell}", "description": cell, "alerts": [aid]})
        assert r.status_code == 200, r.text
        out[cell]["case"] = f"C-{cell}"
        job = f"job-{cell}"
        with room.engine.begin() as conn:
            conn.execute(export_jobs.insert().values(
                id=job, user_id=None, username=op, cameras=json.dumps([cam]),
                grid_cells=json.dumps(["G1" if cell == "A" else "G2"]), start=NOW - 60, end=NOW - 30,
                state="done", progress=1.0, created_at=NOW, files=json.dumps([{"name": f"{cam}.mp4"}]),
                path=str(room.data / "exports" / job)))
        out[cell]["job"] = job
        r = room.as_("eng").call("POST", "/api/patrol/plans", {"name": f"plan {cell}", "cameras": [{"camera": cam}]})
        assert r.status_code < 300, r.text
        plan = r.json().get("plan", r.json())
        out[cell]["plan"] = str(plan["id"])
        r = c.call("POST", f"/api/patrol/plans/{plan['id']}/start", {"layout": 1})
        assert r.status_code < 300, r.text
        patrol = r.json().get("patrol", r.json())
        out[cell]["patrol"] = str(patrol["id"])
        r = c.call("POST", f"/api/patrols/{patrol['id']}/marks",
                   {"camera": cam, "mark": "fault", "fault_kind": "no_picture"})
        assert r.status_code < 300, r.text
        faults = c.call("GET", "/api/patrol/faults").json()
        found = [f for f in (faults.get("faults") or []) if f.get("camera") == cam or f.get("camera_id") == cam]
        out[cell]["fault"] = str(found[0]["id"]) if found else UNKNOWN["fault"]
        crop = room.data / "sightings" / cam / "20261207" / f"{cam}-s.jpg"  # a sighting and its crop
        crop.parent.mkdir(parents=True, exist_ok=True)
        crop.write_bytes(b"\xff\xd8" + cam.encode() + b"\xff\xd9")
        with room.engine.begin() as conn:
            store(conn, {"sighting_id": f"{cam}:1:1", "camera_id": cam, "grid_cell_id": "G1" if cell == "A" else "G2",
                         "track_id": 1, "label": "car", "first_time": NOW - 60, "last_time": NOW - 55,
                         "best_time": NOW - 58, "direction": "stationary", "colours": "{}", "hits": 3, "final": True,
                         "crop_path": f"{cam}/20261207/{cam}-s.jpg"})
        out[cell].update(sighting=f"{cam}:1:1", crop=f"{cam}/20261207/{cam}-s.jpg")
    return out


def _path(path: str, kind: str | None, value: str) -> str:
    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "name" and kind == "job":
            return "lobby.mp4"
        return value if kind is not None else {"rel": "login.js"}.get(name, "x")
    return re.sub(r"\{(\w+)(?::path)?\}", fill, path)


def _call(room: Room, who: str | None, key: str, value: str) -> tuple[int, Any]:
    method, path = key.split(" ", 1)
    access, kind, body = MATRIX[key]
    url = _path(path, kind, value)
    c = room.as_(who)
    if method == "WS":
        with c.c.websocket_connect(url) as ws:
            msg = ws.receive_json()
        return {"no_session": 401, "not_found": 404, "forbidden": 403}.get(msg.get("code"), 200), msg
    if key == "GET /api/stream" or key.endswith("/events"):
        with c.c.stream(method, url, headers=c.h) as r:  # an event stream: the status is enough
            return r.status_code, None
    r = c.call(method, url, body)
    try:
        content = r.json()
    except ValueError:
        content = r.content[:200]
    return r.status_code, content


def _cell_a_rows(room: Room) -> list[Any]:
    with room.engine.connect() as conn:
        return [conn.execute(select(alerts).where(alerts.c.grid_cell_id == "G1").order_by(alerts.c.id)).all(),
                # B naming "C-A" makes B's own case of that name: A's must stay as it was
                conn.execute(select(cases).where(cases.c.name == "C-A", cases.c.created_by == "opA")).all(),
                conn.execute(select(export_jobs).where(export_jobs.c.id == "job-A")).all()]


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Room]:
    r = Room(tmp_path_factory.mktemp("matrix"), redis_url)
    yield r
    r.close()


def test_every_route_has_an_entry(room: Room) -> None:
    keys = route_keys(room.app.app)  # type: ignore[attr-defined]
    missing = sorted(set(keys) - set(MATRIX))
    assert not missing, f"routes without an entry in the authorization matrix: {missing}"
    stale = sorted(set(MATRIX) - set(keys))
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"


def test_the_matrix(room: Room) -> None:
    keys = route_keys(room.app.app)  # type: ignore[attr-defined]
    objs = _objects(room)
    assert all(v != UNKNOWN.get(k) for cell in objs.values() for k, v in cell.items()), objs  # real objects
    print(f"matrix: {len(keys)} routes x 5 callers; objects {objs}")
    problems: list[str] = []

    def check(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    # without a session
    for key in keys:
        access, kind, _ = MATRIX[key]
        status, body = _call(room, None, key, objs["A"].get(kind, UNKNOWN.get(kind, "")) if kind else "")
        check(status != 500, f"{key} without a session: 500")
        if access in ("session", "engineer", "admin"):
            want = (303,) if PAGES.match(key.split(" ", 1)[1]) and key.startswith("GET") else (401,)
            check(status in want + (401,), f"{key} without a session: {status}, want {want}")
        elif access == "officer":
            check(status in (404, 422), f"{key} with an unknown link: {status}")
    # the operator of cell B first: afterwards, cell A's rows must be as they were
    before = _cell_a_rows(room)
    for who in ("opB", "opA", "eng", "boss"):
        if who == "opA":
            check(_cell_a_rows(room) == before, "cell B's operator changed a row of cell A")
        for key in keys:
            if key in SKIP_WHEN_LOGGED_IN:
                continue
            access, kind, _ = MATRIX[key]
            if access in ("public", "officer"):
                continue
            if RANK[ROLE_OF[who]] < RANK[access]:
                status, _ = _call(room, who, key, objs["A"][kind] if kind else "")
                check(status == 403, f"{key} as {who} (below {access}): {status}, want 403")
                continue
            if kind is None or kind == "user":
                status, _ = _call(room, who, key, "")
                check(status != 500, f"{key} as {who}: 500")
                continue
            if who == "opB":
                other, other_body = _call(room, who, key, objs["A"][kind])
                unknown, unknown_body = _call(room, who, key, UNKNOWN[kind])
                page = key.startswith("GET ") and bool(PAGES.match(key[4:]))  # the same static page for any id
                check(other == unknown == 404 or (other == unknown and (other in (400, 422) or page)),
                      f"{key} as opB on cell A's {kind}: {other}, unknown: {unknown}")
                check(other_body == unknown_body, f"{key} as opB: cell A's {kind} answers {other_body!r}, "
                                                  f"an unknown one {unknown_body!r}")
            elif who == "opA":
                own, _ = _call(room, who, key, objs["A"][kind])
                check(own != 500, f"{key} as opA on its own {kind}: 500")
                if kind not in ("fault",) and not key.startswith("DELETE"):
                    check(own not in (401, 403), f"{key} as opA on its own {kind}: {own}")
            else:
                for cell in ("A", "B"):
                    status, _ = _call(room, who, key, objs[cell][kind])
                    check(status != 500, f"{key} as {who} on cell {cell}'s {kind}: 500")
    assert not problems, "\n".join(problems)
