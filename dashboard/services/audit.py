"""The audit log, read (审计日志): who did what, when, from where, on which camera and cell.

Every row the dashboard writes through ``history.audit.record`` (log-ins, refused log-ins, live
views, clip and snapshot views, downloads, exports, cases, workflow actions, escalations) is read
here, newest first, filtered by user, action, camera, cell and time, one page at a time or as CSV.

Who may read it: an admin reads every row; an engineer (the room's supervisor) reads the rows of
their own cells only (rows without a cell, such as log-ins, are the admin's); an operator reads none.
The table is append-only: the database refuses UPDATE and DELETE on it (triggers), and nothing in the
code writes it but ``history.audit.record``; this module only selects.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, or_, select

from dashboard.users import User
from history.schema import actions, alerts

MAX_PAGE = 1000
CSV_MAX_ROWS = 100_000
CSV_FIELDS = ("id", "time", "username", "action", "camera", "grid_cell_id", "alert_id", "from_state", "to_state",
              "note", "remote", "data")


class AuditDenied(Exception):
    """This user may not read the audit log (an operator)."""


@dataclass(frozen=True)
class AuditFilter:
    user: str | None = None
    action: str | None = None
    camera: str | None = None
    cell: str | None = None
    since: float | None = None
    until: float | None = None
    before_id: int | None = None  # paging: rows older than this id

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be a finite time")


def may_read(user: User) -> bool:
    return user.has_role("engineer")


def _query(user: User, f: AuditFilter) -> Any:
    if not may_read(user):
        raise AuditDenied
    q = (select(actions, alerts.c.camera_id.label("camera"))
         .select_from(actions.outerjoin(alerts, alerts.c.id == actions.c.alert_id)))
    if not user.all_cells():
        q = q.where(actions.c.grid_cell_id.in_(user.cells))  # a supervisor: their own cells only
    if f.user:
        q = q.where(actions.c.username == f.user)
    if f.action:
        q = q.where(actions.c.action == f.action)
    if f.cell:
        q = q.where(actions.c.grid_cell_id == f.cell)
    if f.camera:  # the alert's camera, or a camera the row's details name (live views, exports)
        cam = json.dumps(f.camera)
        q = q.where(or_(alerts.c.camera_id == f.camera, actions.c.data.contains(f'"camera": {cam}'),
                        actions.c.data.contains(f'"cameras": [{cam}'), actions.c.data.contains(f', {cam}')))
    if f.since is not None:
        q = q.where(actions.c.time >= f.since)
    if f.until is not None:
        q = q.where(actions.c.time <= f.until)
    if f.before_id is not None:
        q = q.where(actions.c.id < f.before_id)
    return q.order_by(actions.c.id.desc())


def _row(r: Any) -> dict[str, Any]:
    m = dict(r._mapping)
    try:
        m["data"] = json.loads(m["data"]) if m.get("data") else None
    except ValueError:
        pass  # kept as written
    if m.get("camera") is None and isinstance(m.get("data"), dict):
        c = m["data"].get("camera")
        m["camera"] = c if isinstance(c, str) else None
    return m


def read(engine: Engine, user: User, f: AuditFilter, limit: int = 200) -> dict[str, Any]:
    """One page of rows, newest first, with the id to ask for the next page (``before``)."""
    limit = max(1, min(limit, MAX_PAGE))
    with engine.connect() as conn:
        rows = [_row(r) for r in conn.execute(_query(user, f).limit(limit + 1))]
        actions_seen = sorted({a for (a,) in conn.execute(select(actions.c.action).distinct().limit(200))})
    more = len(rows) > limit
    rows = rows[:limit]
    return {"rows": rows, "next_before": rows[-1]["id"] if more and rows else None, "actions": actions_seen}


def csv_lines(engine: Engine, user: User, f: AuditFilter) -> Iterator[str]:
    """The filtered rows as CSV (a header, then newest first), up to ``CSV_MAX_ROWS``.

    Cells that a spreadsheet would run as a formula (starting with = + - @) are prefixed with a quote."""
    q = _query(user, f).limit(CSV_MAX_ROWS)
    buf = io.StringIO()
    w = csv.writer(buf)

    def flush() -> str:
        out = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return out

    w.writerow(CSV_FIELDS)
    yield flush()
    with engine.connect() as conn:
        for i, r in enumerate(conn.execution_options(yield_per=500).execute(q)):
            m = _row(r)
            vals = []
            for k in CSV_FIELDS:
                v = m.get(k)
                s = json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else ("" if v is None else str(v))
                vals.append("'" + s if s[:1] in ("=", "+", "-", "@") and k != "time" else s)
            w.writerow(vals)
            if i % 200 == 199:
                yield flush()
    yield flush()
