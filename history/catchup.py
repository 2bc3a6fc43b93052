"""Catching the history database up with the bus, for a reader that cannot wait for the archiver.

The archiver stores every bus message, but it may be behind (stopped, restarting, a burst), and
an operator must still see an alert the moment a worker publishes it and act on it.  So the
dashboard folds bus messages in itself, through :func:`catch_up`, the one path for it:

- the alert list hands it the newest bus messages it has just read; only alerts the database
  already has are brought up to date (``missing=False``): a list read by every open page must not
  race the archiver to insert new rows, and it shows a bus-only alert from its message anyway;
- the detail view, an action or an export of one alert the database lacks looks the alert up on
  the bus (:func:`alert_from_bus`, at most ``BUS_LOOKBACK`` entries back) and stores all of it.

Both store exactly what the archiver would (``history.archiver.store``: idempotent by each
message's dedupe key), so the archiver catching up later finds them stored and moves on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import Engine, select

from history.archiver import store
from history.schema import alerts
from pipeline.publish import bus

BUS_LOOKBACK = 20_000  # newest bus entries searched for an alert the database does not have yet
SCAN_PAGE = 2000


def catch_up(engine: Engine, entries: Iterable[tuple[str | None, dict[str, Any]]], missing: bool) -> set[str]:
    """Store the alert messages the database lags behind on, oldest first; the ids of the alerts stored into.

    ``entries``: ``(stream id, message)`` pairs, oldest first (other message types are skipped).  A
    message is stored when its alert's row is older than it and has not ended; with ``missing``, every
    message of an alert that has no row yet too.
    """
    msgs = [(sid, m) for sid, m in entries if m.get("type") == "alert" and m.get("alert_id")]
    if not msgs:
        return set()
    ids = list({m["alert_id"] for _, m in msgs})
    rows: dict[str, Any] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), 500):
            for r in conn.execute(select(alerts.c.id, alerts.c.updated_at, alerts.c.phase)
                                  .where(alerts.c.id.in_(ids[i:i + 500]))):
                rows[r.id] = r

    def due(m: dict[str, Any]) -> bool:
        row = rows.get(m["alert_id"])
        if row is None:
            return missing
        return bool(row.phase != "end" and float(m["time"]) > row.updated_at)

    todo = [(sid, m) for sid, m in msgs if due(m)]
    if not todo:
        return set()
    with engine.begin() as conn:
        for sid, m in todo:
            store(conn, sid, m)
    return {m["alert_id"] for _, m in todo}


def stored(engine: Engine, alert_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(alerts.c.id).where(alerts.c.id == alert_id)).first() is not None


async def alert_from_bus(r: aioredis.Redis, events_key: str, alert_id: str,
                         lookback: int = BUS_LOOKBACK) -> list[tuple[str, dict[str, Any]]]:
    """The alert's messages still on the bus, oldest first: newest entries first, back to its ``new``."""
    found: list[tuple[str, dict[str, Any]]] = []
    cursor = "+"
    scanned = 0
    while scanned < lookback:
        entries = await r.xrevrange(events_key, max=cursor, count=SCAN_PAGE)
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
        if len(entries) < SCAN_PAGE:
            break
    return list(reversed(found))


async def ensure_alert(engine: Engine, r: aioredis.Redis, events_key: str, alert_id: str) -> None:
    """Store an alert the archiver has not stored yet (or at all), from the bus; nothing when it is stored."""
    if await asyncio.to_thread(stored, engine, alert_id):
        return
    found = await alert_from_bus(r, events_key, alert_id)
    if found:
        await asyncio.to_thread(catch_up, engine, found, True)
