"""The audit log: one append-only row per action (log-ins, alert handling, escalations, views).

The ``actions`` table refuses UPDATE and DELETE (triggers from the migration); this module is
the one place that writes it, so every row has the same shape.  An alert's timeline is its rows
in id order.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection, select

from history.schema import actions


def record(conn: Connection, action: str, *, user_id: int | None = None, username: str | None = None,
           alert_id: str | None = None, grid_cell_id: str | None = None, from_state: str | None = None,
           to_state: str | None = None, note: str | None = None, data: dict[str, Any] | None = None,
           remote: str | None = None, at: float | None = None) -> dict[str, Any]:
    """Append one row and return it as the page shows it."""
    row = {"time": time.time() if at is None else at, "alert_id": alert_id, "grid_cell_id": grid_cell_id,
           "user_id": user_id, "username": username, "action": action, "from_state": from_state,
           "to_state": to_state, "note": note, "data": json.dumps(data, ensure_ascii=False) if data else None,
           "remote": (remote or "")[:64] or None}
    res = conn.execute(actions.insert().values(**row))
    row["id"] = res.inserted_primary_key[0] if res.inserted_primary_key else None
    return as_dict(row)


def as_dict(row: Any) -> dict[str, Any]:
    m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    m.pop("remote", None)
    m["data"] = json.loads(m["data"]) if m.get("data") else None
    return m


def timeline(conn: Connection, alert_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(actions).where(actions.c.alert_id == alert_id).order_by(actions.c.id))
    return [as_dict(r) for r in rows]
