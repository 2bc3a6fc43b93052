"""Alert look-ups and actions behind the command-room page: the list, one alert, actions, the live stream.

The list comes from the history database (workflow state, owner, dispatch steps) merged with the
newest bus messages, so an alert shows at once even before the archiver has stored it; what the
database lags behind on is folded in through ``history.catchup`` (the one catch-up path, shared with
the detail view).  Everything is filtered by the user's grid cells.

The live stream (server-sent events) follows two Redis streams with one blocking ``XREAD``: the
workers' events and the dashboard's own actions stream, so an action done in one browser reaches
every open page in milliseconds, whichever dashboard process served it.  It stays honest about
itself: a ``heartbeat`` every ``HEARTBEAT_S`` only after Redis answered, and an ``unavailable``
event before it ends because the bus failed.  Open alerts whose camera no worker reports any more
are sent as ``orphans`` (dashboard/orphans.py), so the page marks them stale instead of live.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from dashboard.files import UnsafePath, first_part, safe_join
from dashboard.orphans import orphaned, parse_open
from dashboard.services import handling_view as handling
from dashboard.services.cameras import camera_list, camera_statuses
from dashboard.users import User
from dashboard.workflow import Request as ActionRequest
from dashboard.workflow import WorkflowError, alert_view, apply, create_link
from history.audit import record, timeline
from history.catchup import catch_up, ensure_alert
from history.incidents import incident_for_message, is_head, lone_item, room_items
from history.schema import OPEN_STATES, alert_messages, alerts
from pipeline.publish import bus
from pipeline.publish.fencing import FenceFilter

log = logging.getLogger("sharpeye.dashboard")
CAMERA_PUSH_PERIOD_S = 2.0
HEARTBEAT_S = 3.0  # the page calls its picture stale after 10 s without one
RETRY_MS = 2000  # EventSource's own reconnect delay after a stream ends
CLOSED_SHOWN_S = 12 * 3600.0  # closed alerts stay in the live list this long (a shift)


def visible(user: User, msg: dict[str, Any]) -> bool:
    return user.sees_cell((msg.get("grid_cell") or {}).get("id"))


def _cell_filter(user: User) -> Any:
    return True if user.all_cells() else alerts.c.grid_cell_id.in_(user.cells)


async def ensure(d: Dashboard, alert_id: str) -> None:
    """The alert stored from the bus when the archiver has not stored it yet (``history.catchup``)."""
    await ensure_alert(d.engine, d.redis(), d.keys.events, alert_id)


async def alert_list(d: Dashboard, user: User, limit: int) -> dict[str, Any]:
    """Open alerts and those closed this shift, newest first, merged with the bus; the cursor to follow from."""
    r = d.redis()
    newest_events = await r.xrevrange(d.keys.events, count=limit)
    newest_action = await r.xrevrange(d.actions_key(), count=1)
    orphans = await user_orphans(d, user)
    entries = [(sid, m) for sid, m in bus.decode_entries(newest_events) if visible(user, m)]
    msgs = [m for _, m in entries]

    def _rows() -> list[dict[str, Any]]:
        since = time.time() - CLOSED_SHOWN_S
        bus_ids = {m["alert_id"] for m in msgs if m.get("type") == "alert"}
        with d.engine.connect() as conn:
            q = (select(alerts).where(_cell_filter(user), is_head())
                 .where(or_(alerts.c.state.in_(OPEN_STATES), alerts.c.closed_at >= since))
                 .order_by(alerts.c.start_time.desc()).limit(limit))
            rows = {r.id: alert_view(r) for r in conn.execute(q)}
        # the bus is ahead of the archiver (not running, or behind): fold those messages in now
        changed = catch_up(d.engine, reversed(entries), missing=False)
        with d.engine.connect() as conn:
            if changed:
                rows.update({r.id: alert_view(r)
                             for r in conn.execute(select(alerts).where(alerts.c.id.in_(list(changed))))})
            missing = [i for i in bus_ids if i not in rows]
            for i in range(0, len(missing), 500):
                for r in conn.execute(select(alerts).where(alerts.c.id.in_(missing[i:i + 500]))):
                    rows[r.id] = alert_view(r)
            return room_items(conn, list(rows.values()), alert_view)  # one item per incident

    rows = await run_in_threadpool(_rows)
    known = {i for a in rows for i in a["occurrences"]["alert_ids"]}
    for m in msgs:  # newest first: the newest message of an alert the database does not know yet
        if m.get("type") == "alert" and m["alert_id"] not in known:
            rows.append(lone_item(dict(m, state="new", owner=None, version=None, dispatch={})))
            known.add(m["alert_id"])
    for a in rows:
        a["orphaned_since"] = orphans.get(a["alert_id"]) if a.get("phase") != "end" else None
    rows.sort(key=lambda a: a["start_time"], reverse=True)
    cursor = f"{newest_events[0][0].decode() if newest_events else '0-0'}|" \
             f"{newest_action[0][0].decode() if newest_action else '0-0'}"
    return {"alerts": rows, "camera_events": [m for m in msgs if m.get("type") == "camera"], "cursor": cursor,
            "orphans": orphans, "orphan_after_s": d.config().dashboard.orphan_alert_s}


def incident_id(d: Dashboard, sid: str | None, msg: dict[str, Any]) -> str:
    """The incident of a bus alert message (stored first if the archiver has not yet: history.incidents)."""
    with d.engine.begin() as conn:
        return incident_for_message(conn, sid, msg)


async def user_orphans(d: Dashboard, user: User, statuses: dict[str, Any] | None = None) -> dict[str, float]:
    """The user's open alerts that no worker owns any more: alert id → when the camera was last reported."""
    r = d.redis()
    open_now = {aid: m for aid, m in parse_open(await r.hgetall(d.keys.open_alerts)).items() if visible(user, m)}
    if not open_now:
        return {}
    if statuses is None:
        statuses = await camera_statuses(d)
    return orphaned(open_now, statuses, d.config().dashboard.orphan_alert_s)


async def alert_detail(d: Dashboard, user: User, alert_id: str) -> dict[str, Any] | None:
    """One alert, its timeline (every action), its bus messages and the rule's procedure; None outside the
    user's cells or unknown."""
    await ensure(d, alert_id)

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
        return None
    cam = d.config().cameras.get(out["alert"]["camera"]["id"])
    rule = cam.effective_rules().get(out["alert"]["rule"]["id"]) if cam else None
    out["procedure"] = getattr(rule, "procedure", None)  # the rule's SOP from streams.yaml, as configured now
    out.update(await handling.detail_cameras(d, user, out["alert"]["camera"]["id"]))  # live, related cameras
    return out


async def bulk_close(d: Dashboard, user: User, camera: str, note: str, remote: str | None) -> dict[str, int]:
    """Close every open alert of one camera as a false alarm; alerts another operator handles are skipped."""
    def _close() -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], int]:
        done, skipped = [], 0
        with d.engine.connect() as conn:
            ids = conn.execute(select(alerts.c.id).where(alerts.c.camera_id == camera, is_head(),  # one per incident
                                                         alerts.c.state.in_(OPEN_STATES))).scalars().all()
        for aid in ids:
            try:
                with d.engine.begin() as conn:
                    done.append(apply(conn, aid, user, ActionRequest("close", note=note,
                                                                     classification="false_alarm"), remote))
            except WorkflowError:
                skipped += 1
        return done, skipped
    done, skipped = await run_in_threadpool(_close)
    for alert, action in done:
        await d.push_action(alert, action)
    return {"closed": len(done), "skipped": skipped}


async def act(d: Dashboard, user: User, alert_id: str, req: ActionRequest,
              remote: str | None) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """Do one workflow action (stored, then pushed to every open page): (alert, action, officer token).

    Raises :class:`WorkflowError` when the action is not allowed now."""
    await ensure(d, alert_id)

    def _apply() -> tuple[dict[str, Any], dict[str, Any], str | None]:
        with d.engine.begin() as conn:
            alert, action = apply(conn, alert_id, user, req, remote)
            # a dispatch makes the officer's one-time phone link, shown to this operator only
            token = create_link(conn, alert_id, user) if req.action == "dispatch" else None
            return alert, action, token
    alert, action, token = await run_in_threadpool(_apply)
    await d.push_action(alert, action)
    return alert, action, token


async def new_officer_link(d: Dashboard, user: User, alert_id: str, remote: str | None) -> str:
    """A fresh link token for the dispatched officer (the old one stops working); raises WorkflowError."""
    def _make() -> str:
        with d.engine.begin() as conn:
            token = create_link(conn, alert_id, user)
            record(conn, "officer_link", user_id=user.id, username=user.username, alert_id=alert_id,
                   remote=remote, data={"by": user.display_name})
            return token
    return await run_in_threadpool(_make)


async def snapshot_file(d: Dashboard, user: User, rel: str, remote: str | None) -> Path | None:
    """A snapshot's path, for users of the camera's grid cell only (the path starts with the camera id);
    the viewing is audited (footage can become evidence).  None when not found or not theirs."""
    root = d.data_dir / "snapshots"
    try:  # the one safe join; the scope is the camera the resolved file really lies under
        path = safe_join(root, rel)
        cam = d.config().cameras.get(first_part(root, path))
    except UnsafePath:
        return None
    if cam is None or not user.sees_cell(cam.grid_cell):
        return None
    rel = path.relative_to(root.resolve()).as_posix()  # the audit row names the file served

    def _audit() -> None:
        with d.engine.begin() as conn:
            record(conn, "view_snapshot", user_id=user.id, username=user.username, grid_cell_id=cam.grid_cell,
                   data={"path": rel}, remote=remote)
    await run_in_threadpool(_audit)
    return path


def sse(event: str, data: Any, sid: str | None = None) -> bytes:
    head = f"id: {sid}\n" if sid else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


async def live_events(d: Dashboard, user: User, ev_id: str, act_id: str,
                      disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[bytes]:
    """The stream's events from the position ``ev_id|act_id`` ("$" or "": from now) until the page leaves."""
    akey = d.actions_key()
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
        yield sse("cameras", cams)
        yield sse("orphans", orphans)
        yield sse("heartbeat", {"time": round(time.time(), 3)}, f"{ev_id}|{act_id}")
        next_push = time.monotonic() + CAMERA_PUSH_PERIOD_S
        next_beat = time.monotonic() + HEARTBEAT_S
        fences = FenceFilter()
        while not await disconnected():
            res = await r.xread({d.keys.events: ev_id, akey: act_id}, count=200, block=1000)
            for key, entries in res or []:
                key = key.decode() if isinstance(key, bytes) else key
                for sid, fields in entries:
                    sid = sid.decode()
                    if key == akey:
                        act_id = sid
                        msg = json.loads(fields[b"json"])
                        if user.sees_cell(msg["alert"]["grid_cell"]["id"]):
                            yield sse("action", msg, f"{ev_id}|{act_id}")
                            notice = handling.notice_for(user, msg)  # forwarded to them, taken from them
                            if notice is not None:
                                yield sse("notice", notice, f"{ev_id}|{act_id}")
                    else:
                        ev_id = sid
                        for _, msg in bus.decode_entries([(sid, fields)]):
                            if fences.accept(msg) and visible(user, msg):  # stale owner: dropped
                                if msg.get("type") == "alert":  # which room item (incident) it belongs to
                                    msg["incident_id"] = await run_in_threadpool(incident_id, d, sid, msg)
                                yield sse("message", msg, f"{ev_id}|{act_id}")
            if time.monotonic() >= next_push:
                next_push = time.monotonic() + CAMERA_PUSH_PERIOD_S
                statuses = await camera_statuses(d)
                new = camera_list(d.config(), statuses, user)
                if new != cams:
                    cams = new
                    yield sse("cameras", cams)
                new_orphans = await user_orphans(d, user, statuses)
                if new_orphans != orphans:
                    orphans = new_orphans
                    yield sse("orphans", orphans)
            if time.monotonic() >= next_beat:  # only after Redis answered: a beat means "this is current"
                next_beat = time.monotonic() + HEARTBEAT_S
                yield sse("heartbeat", {"time": round(time.time(), 3)}, f"{ev_id}|{act_id}")
    except asyncio.CancelledError:
        pass
    except (RedisError, OSError) as e:
        # the page hears no more beats and reconnects (with backoff) from the last id it saw
        log.warning("live stream of %s ends: bus unavailable (%s: %s)", user.username, type(e).__name__, e)
        yield sse("unavailable", {"code": "bus_unavailable"})
