"""Alerts: the command-room page, the alert list, one alert with its timeline, actions, the live stream.

The list comes from the history database (workflow state, owner, dispatch steps) merged with
the newest bus messages, so an alert shows at once even before the archiver has stored it.
The live stream (server-sent events) follows two Redis streams with one blocking ``XREAD``:
the workers' events and the dashboard's own actions stream, so an action done in one browser
reaches every open page in milliseconds, whichever dashboard process served it.  Everything
is filtered by the user's grid cells.

The stream stays honest about itself: a ``heartbeat`` event every ``HEARTBEAT_S`` is sent only
after Redis answered, so a page that hears none for 10 s knows its picture is stale (bus frozen,
dashboard gone, network cut) and says so; every read gives up after ``REDIS_TIMEOUT_S``, and a
stream whose bus fails ends with an ``unavailable`` event so the page reconnects (from the id it
last saw).  Open alerts whose camera no worker reports any more are sent as ``orphans``
(dashboard/orphans.py), so the page marks them stale instead of live.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard, ctx
from dashboard.deps import current_user, refuse, remote_addr
from dashboard.orphans import orphaned, parse_open
from dashboard.pages import page
from dashboard.paging import page_officer
from dashboard.routes.cameras import camera_list, camera_statuses
from dashboard.users import User
from dashboard.workflow import Request as ActionRequest
from dashboard.workflow import WorkflowError, alert_view, apply, create_link
from history.archiver import store
from history.audit import record, timeline
from history.schema import OPEN_STATES, alert_messages, alerts
from pipeline.publish import bus
from pipeline.publish.fencing import FenceFilter

log = logging.getLogger("sharpeye.dashboard")
router = APIRouter(dependencies=[Depends(current_user)])
CAMERA_PUSH_PERIOD_S = 2.0
HEARTBEAT_S = 3.0  # the page calls its picture stale after 10 s without one
RETRY_MS = 2000  # EventSource's own reconnect delay after a stream ends
CURSOR_PART = re.compile(r"(\$|\d{1,20}(-\d{1,20})?)?")  # fullmatch: a stream id, "$" (from now) or empty
BUS_LOOKBACK = 20_000  # newest bus entries searched for an alert the database does not have yet
CLOSED_SHOWN_S = 12 * 3600.0  # closed alerts stay in the live list this long (a shift)


def _visible(user: User, msg: dict[str, Any]) -> bool:
    return user.sees_cell((msg.get("grid_cell") or {}).get("id"))


def _cell_filter(user: User) -> Any:
    return True if user.all_cells() else alerts.c.grid_cell_id.in_(user.cells)


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    return page("index.html")


@router.get("/api/alerts")
async def list_alerts(request: Request, user: User = Depends(current_user), limit: int = 300) -> dict[str, Any]:
    """Open alerts and those closed this shift, newest first, merged with the bus; the cursor to follow from."""
    d = ctx(request)
    limit = max(1, min(limit, 2000))
    r = d.redis()
    newest_events = await r.xrevrange(d.keys.events, count=limit)
    newest_action = await r.xrevrange(d.actions_key(), count=1)
    orphans = await user_orphans(d, user)
    msgs = [m for _, m in bus.decode_entries(newest_events) if _visible(user, m)]

    def _rows() -> list[dict[str, Any]]:
        since = time.time() - CLOSED_SHOWN_S
        bus_ids = {m["alert_id"] for m in msgs if m.get("type") == "alert"}
        with d.engine.connect() as conn:
            q = (select(alerts).where(_cell_filter(user))
                 .where(or_(alerts.c.state.in_(OPEN_STATES), alerts.c.closed_at >= since))
                 .order_by(alerts.c.start_time.desc()).limit(limit))
            fetched = conn.execute(q).all()
            rows = {r.id: alert_view(r) for r in fetched}
            lagging = {r.id: r.updated_at for r in fetched if r.phase != "end" and r.id in bus_ids}
        newer = [m for m in reversed(msgs) if m.get("type") == "alert" and m["alert_id"] in lagging
                 and float(m["time"]) > lagging[m["alert_id"]]]
        if newer:  # the bus is ahead of the archiver (not running, or behind): fold those messages in now
            with d.engine.begin() as conn:
                for m in newer:
                    store(conn, m.get("stream_id"), {k: v for k, v in m.items() if k != "stream_id"})
        with d.engine.connect() as conn:
            if newer:
                ids = list({m["alert_id"] for m in newer})
                rows.update({r.id: alert_view(r) for r in conn.execute(select(alerts).where(alerts.c.id.in_(ids)))})
            missing = [i for i in bus_ids if i not in rows]
            for i in range(0, len(missing), 500):
                for r in conn.execute(select(alerts).where(alerts.c.id.in_(missing[i:i + 500]))):
                    rows[r.id] = alert_view(r)
        return list(rows.values())

    rows = await run_in_threadpool(_rows)
    known = {a["alert_id"] for a in rows}
    for m in msgs:  # newest first: the newest message of an alert the database does not know yet
        if m.get("type") == "alert" and m["alert_id"] not in known:
            rows.append(dict(m, state="new", owner=None, version=None, dispatch={}))
            known.add(m["alert_id"])
    for a in rows:
        a["orphaned_since"] = orphans.get(a["alert_id"]) if a.get("phase") != "end" else None
    rows.sort(key=lambda a: a["start_time"], reverse=True)
    cursor = f"{newest_events[0][0].decode() if newest_events else '0-0'}|" \
             f"{newest_action[0][0].decode() if newest_action else '0-0'}"
    return {"alerts": rows, "camera_events": [m for m in msgs if m.get("type") == "camera"], "cursor": cursor,
            "orphans": orphans, "orphan_after_s": d.config().dashboard.orphan_alert_s}


async def user_orphans(d: Dashboard, user: User, statuses: dict[str, Any] | None = None) -> dict[str, float]:
    """The user's open alerts that no worker owns any more: alert id → when the camera was last reported."""
    r = d.redis()
    open_now = {aid: m for aid, m in parse_open(await r.hgetall(d.keys.open_alerts)).items() if _visible(user, m)}
    if not open_now:
        return {}
    if statuses is None:
        statuses = await camera_statuses(d)
    return orphaned(open_now, statuses, d.config().dashboard.orphan_alert_s)


async def _ensure_alert(d: Dashboard, alert_id: str) -> None:
    """Store an alert the archiver has not stored yet (or at all), from the bus; idempotent like the archiver."""
    def _has() -> bool:
        with d.engine.connect() as conn:
            return conn.execute(select(alerts.c.id).where(alerts.c.id == alert_id)).first() is not None
    if await run_in_threadpool(_has):
        return
    found: list[tuple[str, dict[str, Any]]] = []
    cursor = "+"
    scanned = 0
    r = d.redis()
    while scanned < BUS_LOOKBACK:
        entries = await r.xrevrange(d.keys.events, max=cursor, count=2000)
        if not entries:
            break
        scanned += len(entries)
        for sid, fields in entries:
            if fields.get(b"alert_id") == alert_id.encode():
                found.extend(bus.decode_entries([(sid, fields)]))
        if found and found[-1][1].get("phase") == "new":
            break
        last = entries[-1][0].decode()
        ms, seq = last.split("-")
        cursor = f"{ms}-{int(seq) - 1}" if int(seq) > 0 else f"{int(ms) - 1}-{2**63}"
        if len(entries) < 2000:
            break
    if not found:
        return

    def _store() -> None:
        with d.engine.begin() as conn:
            for sid, msg in reversed(found):
                store(conn, sid, msg)
    await run_in_threadpool(_store)


@router.get("/api/alerts/{alert_id}")
async def get_alert(alert_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """One alert, its timeline (every action) and its bus messages (detection updates)."""
    d = ctx(request)
    await _ensure_alert(d, alert_id)

    def _get() -> dict[str, Any] | None:
        with d.engine.connect() as conn:
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
            if row is None or not user.sees_cell(row.grid_cell_id):
                return None
            msgs = conn.execute(select(alert_messages.c.phase, alert_messages.c.time, alert_messages.c.message)
                                .where(alert_messages.c.alert_id == alert_id).order_by(alert_messages.c.time)).all()
            snaps: list[str] = []
            for m in msgs:
                path = (json.loads(m.message).get("snapshot") or {}).get("path")
                if path and path not in snaps:
                    snaps.append(path)
            return {"alert": alert_view(row), "timeline": timeline(conn, alert_id), "snapshots": snaps,
                    "messages": [{"phase": m.phase, "time": m.time} for m in msgs]}
    out = await run_in_threadpool(_get)
    if out is None:
        raise refuse(404, "not_found")
    cam = d.config().cameras.get(out["alert"]["camera"]["id"])
    rule = cam.effective_rules().get(out["alert"]["rule"]["id"]) if cam else None
    out["procedure"] = getattr(rule, "procedure", None)  # the rule's SOP from streams.yaml, as configured now
    return out


class BulkClose(BaseModel):
    camera: str = Field(max_length=64)
    note: str = Field(max_length=4000)


@router.post("/api/alerts/bulk-close")
async def bulk_close(body: BulkClose, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """Close every open alert of one camera as a false alarm with one reason (a flapping camera).

    Alerts another operator is handling are left to them; the answer counts closed and skipped.
    """
    d = ctx(request)
    cam = d.config().cameras.get(body.camera)
    if cam is None or not user.sees_cell(cam.grid_cell):
        raise refuse(404, "not_found")
    if not body.note.strip():
        raise refuse(400, "comment_required")

    def _close() -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], int]:
        done, skipped = [], 0
        with d.engine.connect() as conn:
            ids = conn.execute(select(alerts.c.id).where(alerts.c.camera_id == body.camera,
                                                         alerts.c.state.in_(OPEN_STATES))).scalars().all()
        for aid in ids:
            try:
                with d.engine.begin() as conn:
                    done.append(apply(conn, aid, user, ActionRequest("close", note=body.note,
                                                                     classification="false_alarm"),
                                      remote_addr(request)))
            except WorkflowError:
                skipped += 1
        return done, skipped
    done, skipped = await run_in_threadpool(_close)
    for alert, action in done:
        await d.push_action(alert, action)
    return {"closed": len(done), "skipped": skipped}


class ActionBody(BaseModel):
    action: str = Field(max_length=32)
    note: str | None = Field(None, max_length=4000)
    classification: str | None = None
    to: str | None = Field(None, max_length=64)
    at: float | None = None
    version: int | None = None


@router.post("/api/alerts/{alert_id}/actions")
async def act(alert_id: str, body: ActionBody, request: Request, background: BackgroundTasks,
              user: User = Depends(current_user)) -> dict[str, Any]:
    """Do one workflow action; it is stored, then pushed to every open page."""
    d = ctx(request)
    await _ensure_alert(d, alert_id)
    req = ActionRequest(**body.model_dump())

    def _apply() -> tuple[dict[str, Any], dict[str, Any], str | None]:
        with d.engine.begin() as conn:
            alert, action = apply(conn, alert_id, user, req, remote_addr(request))
            # a dispatch makes the officer's one-time phone link, shown to this operator only
            token = create_link(conn, alert_id, user) if req.action == "dispatch" else None
            return alert, action, token
    try:
        alert, action, token = await run_in_threadpool(_apply)
    except WorkflowError as e:
        raise refuse(e.status, e.code, **e.extra) from None
    await d.push_action(alert, action)
    cell = d.config().grid_cells.get(alert["grid_cell"]["id"])
    if token and cell is not None and cell.webhook:  # the cell's paging system, after the response
        link = str(request.base_url).rstrip("/") + f"/o/{token}"
        background.add_task(page_officer, d.engine, cell.webhook, alert, link)
    return {"alert": alert, "action": action, "officer_link": f"/o/{token}" if token else None}


@router.post("/api/alerts/{alert_id}/officer-link")
async def new_officer_link(alert_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """A fresh link for the dispatched officer (the old one stops working): the operator lost it, or resends."""
    d = ctx(request)

    def _make() -> str:
        with d.engine.begin() as conn:
            token = create_link(conn, alert_id, user)
            record(conn, "officer_link", user_id=user.id, username=user.username, alert_id=alert_id,
                   remote=remote_addr(request), data={"by": user.display_name})
            return token
    try:
        token = await run_in_threadpool(_make)
    except WorkflowError as e:
        raise refuse(e.status, e.code, **e.extra) from None
    return {"officer_link": f"/o/{token}"}


def _sse(event: str, data: Any, sid: str | None = None) -> bytes:
    head = f"id: {sid}\n" if sid else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


@router.get("/api/stream")
async def stream(request: Request, user: User = Depends(current_user), cursor: str = "$|$") -> StreamingResponse:
    """Server-sent events: bus messages (``message``), actions (``action``), camera lists (``cameras``),
    open alerts nobody owns (``orphans``), ``heartbeat`` every few seconds while the bus answers, and
    ``unavailable`` just before the stream ends because the bus failed.

    Every event that moves the position carries the id ``<events id>|<actions id>`` (heartbeats too, so
    entries filtered out for this user still move it): a page that reconnects with it loses nothing.
    """
    d = ctx(request)
    akey = d.actions_key()
    # a reconnecting EventSource tells where it stopped: resume there, nothing is lost
    start = request.headers.get("last-event-id") or cursor
    ev_id, _, act_id = start.partition("|")
    if not (CURSOR_PART.fullmatch(ev_id) and CURSOR_PART.fullmatch(act_id)):
        raise refuse(400, "bad_cursor")  # Redis would refuse the id; better said now than as a broken stream

    async def gen() -> AsyncIterator[bytes]:
        nonlocal ev_id, act_id
        r = d.redis()
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            if ev_id in ("$", ""):
                newest = await r.xrevrange(d.keys.events, count=1)
                ev_id = newest[0][0].decode() if newest else "0-0"
            if act_id in ("$", ""):
                newest = await r.xrevrange(akey, count=1)
                act_id = newest[0][0].decode() if newest else "0-0"
            statuses = await camera_statuses(d)
            cams = camera_list(d.config(), statuses, user)
            orphans = await user_orphans(d, user, statuses)
            yield _sse("cameras", cams)
            yield _sse("orphans", orphans)
            yield _sse("heartbeat", {"time": round(time.time(), 3)}, f"{ev_id}|{act_id}")
            next_push = time.monotonic() + CAMERA_PUSH_PERIOD_S
            next_beat = time.monotonic() + HEARTBEAT_S
            fences = FenceFilter()
            while not await request.is_disconnected():
                res = await r.xread({d.keys.events: ev_id, akey: act_id}, count=200, block=1000)
                for key, entries in res or []:
                    key = key.decode() if isinstance(key, bytes) else key
                    for sid, fields in entries:
                        sid = sid.decode()
                        if key == akey:
                            act_id = sid
                            msg = json.loads(fields[b"json"])
                            if user.sees_cell(msg["alert"]["grid_cell"]["id"]):
                                yield _sse("action", msg, f"{ev_id}|{act_id}")
                        else:
                            ev_id = sid
                            for _, msg in bus.decode_entries([(sid, fields)]):
                                if fences.accept(msg) and _visible(user, msg):  # stale owner: dropped
                                    yield _sse("message", msg, f"{ev_id}|{act_id}")
                if time.monotonic() >= next_push:
                    next_push = time.monotonic() + CAMERA_PUSH_PERIOD_S
                    statuses = await camera_statuses(d)
                    new = camera_list(d.config(), statuses, user)
                    if new != cams:
                        cams = new
                        yield _sse("cameras", cams)
                    new_orphans = await user_orphans(d, user, statuses)
                    if new_orphans != orphans:
                        orphans = new_orphans
                        yield _sse("orphans", orphans)
                if time.monotonic() >= next_beat:  # only after Redis answered: a beat means "this is current"
                    next_beat = time.monotonic() + HEARTBEAT_S
                    yield _sse("heartbeat", {"time": round(time.time(), 3)}, f"{ev_id}|{act_id}")
        except asyncio.CancelledError:
            pass
        except (RedisError, OSError) as e:
            # the page hears no more beats and reconnects (with backoff) from the last id it saw
            log.warning("live stream of %s ends: bus unavailable (%s: %s)", user.username, type(e).__name__, e)
            yield _sse("unavailable", {"code": "bus_unavailable"})

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/snapshots/{rel:path}")
async def snapshot(rel: str, request: Request, user: User = Depends(current_user)) -> FileResponse:
    """A snapshot JPEG, for users of the camera's grid cell only (the path starts with the camera id)."""
    d = ctx(request)
    root = (d.data_dir / "snapshots").resolve()
    path = (root / rel).resolve()
    cam = d.config().cameras.get(rel.split("/", 1)[0])
    if not path.is_relative_to(root) or not path.is_file() or cam is None or not user.sees_cell(cam.grid_cell):
        raise refuse(404, "not_found")

    def _audit() -> None:  # footage can become evidence: who looked at what is kept (the browser caches a day)
        with d.engine.begin() as conn:
            record(conn, "view_snapshot", user_id=user.id, username=user.username, grid_cell_id=cam.grid_cell,
                   data={"path": rel}, remote=remote_addr(request))
    await run_in_threadpool(_audit)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
