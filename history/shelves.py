"""Shelves (屏蔽): a camera, or one rule of a camera, put aside for a while with a reason.

A flapping camera, building work in front of a lens, a known test: the room shelves it instead of
closing alert after alert.  While a shelf holds, the camera's alerts are still stored (the archiver
does not know about shelves) and still listed, marked "屏蔽中", but they do not ring, notify or
escalate.  An alert counts as shelved when a shelf of its camera (and its rule, or every rule) holds
now, or held when the alert started: an alert raised during a shelf stays quiet after it ends, while
one raised before it rings again once it is over.

A shelf ends by itself at ``expires_at`` (a time compared with the clock, no job), or earlier when a
supervisor lifts it.  Both the shelving and the lifting are rows of the audit log (``shelve``,
``unshelve``).  Entry points: :func:`create`, :func:`lift`, :func:`listing` and :class:`Cover` (which
alerts are shelved, for the escalation check).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, or_, select, update

from history.audit import record
from history.refusal import Refused
from history.schema import shelves

MIN_S = 5 * 60.0  # the shortest shelf: less is a click, not a decision
MAX_S = 7 * 86400.0  # the longest: a shelf nobody remembers must end by itself
MAX_REASON = 500
RECENT_S = 12 * 3600.0  # ended shelves listed this long (a shift): alerts they covered stay marked


class ShelfError(Refused):
    """A shelf request that cannot be done; ``code`` is translated by the page."""


def _end(row: Any) -> float:
    return float(min(row.expires_at, row.lifted_at) if row.lifted_at is not None else row.expires_at)


def as_dict(row: Any, now: float) -> dict[str, Any]:
    m = dict(row._mapping)
    m["ends_at"] = _end(row)
    m["active"] = row.created_at <= now < m["ends_at"]
    return m


def create(conn: Connection, *, camera_id: str, grid_cell_id: str, rule_id: str | None, reason: str,
           duration_s: float, user_id: int | None, username: str, display_name: str, remote: str | None = None,
           now: float | None = None) -> dict[str, Any]:
    """Shelve a camera (``rule_id`` None) or one of its rules for ``duration_s``; audited.  The shelf as listed."""
    now = time.time() if now is None else now
    reason = (reason or "").strip()
    if not reason:
        raise ShelfError("reason_required", 400, field="reason")
    if len(reason) > MAX_REASON:
        raise ShelfError("reason_too_long", 400, field="reason", max=MAX_REASON)
    if not MIN_S <= duration_s <= MAX_S:
        raise ShelfError("bad_duration", 400, field="minutes", min=MIN_S / 60, max=MAX_S / 60)
    values = {"camera_id": camera_id, "grid_cell_id": grid_cell_id, "rule_id": rule_id or None, "reason": reason,
              "created_at": now, "created_by": username, "created_by_name": display_name,
              "expires_at": now + duration_s}
    shelf_id = conn.execute(shelves.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
    record(conn, "shelve", user_id=user_id, username=username, grid_cell_id=grid_cell_id, note=reason, remote=remote,
           at=now, data={"shelf": shelf_id, "camera": camera_id, "rule": rule_id or None,
                         "expires_at": values["expires_at"], "by": display_name})
    row = conn.execute(select(shelves).where(shelves.c.id == shelf_id)).one()
    return as_dict(row, now)


def get(conn: Connection, shelf_id: int) -> Any:
    return conn.execute(select(shelves).where(shelves.c.id == shelf_id)).first()


def lift(conn: Connection, shelf_id: int, *, user_id: int | None, username: str, display_name: str,
         remote: str | None = None, now: float | None = None) -> dict[str, Any]:
    """End a shelf now (a supervisor; the caller checks role and cell); audited.  Refused when it has ended."""
    now = time.time() if now is None else now
    row = get(conn, shelf_id)
    if row is None:
        raise ShelfError("not_found", 404)
    if _end(row) <= now:
        raise ShelfError("shelf_ended", 409, ended_at=_end(row))
    res = conn.execute(update(shelves).where(shelves.c.id == shelf_id, shelves.c.lifted_at.is_(None))
                       .values(lifted_at=now, lifted_by=username))
    if res.rowcount != 1:
        raise ShelfError("shelf_ended", 409)
    record(conn, "unshelve", user_id=user_id, username=username, grid_cell_id=row.grid_cell_id, remote=remote, at=now,
           data={"shelf": shelf_id, "camera": row.camera_id, "rule": row.rule_id, "by": display_name,
                 "expires_at": row.expires_at})
    return as_dict(get(conn, shelf_id), now)


def listing(conn: Connection, cells: Iterable[str] | None, now: float | None = None,
            since_s: float = RECENT_S) -> list[dict[str, Any]]:
    """Shelves of these cells (None: every cell) that hold now or ended within ``since_s``, newest first."""
    now = time.time() if now is None else now
    q = select(shelves).where(shelves.c.expires_at >= now - since_s,
                              or_(shelves.c.lifted_at.is_(None), shelves.c.lifted_at >= now - since_s))
    if cells is not None:
        q = q.where(shelves.c.grid_cell_id.in_(list(cells)))
    return [as_dict(r, now) for r in conn.execute(q.order_by(shelves.c.created_at.desc(), shelves.c.id.desc()))]


@dataclass(frozen=True)
class Cover:
    """The shelves that can cover an alert now: those holding now or ended within the shift."""

    rows: tuple[dict[str, Any], ...]
    now: float

    @classmethod
    def load(cls, conn: Connection, now: float | None = None, since_s: float = RECENT_S) -> Cover:
        now = time.time() if now is None else now
        return cls(tuple(listing(conn, None, now, since_s)), now)

    def of(self, camera_id: str, rule_id: str | None, start_time: float | None) -> dict[str, Any] | None:
        """The shelf covering an alert of this camera and rule that started then, or None."""
        for s in self.rows:
            if s["camera_id"] != camera_id or (s["rule_id"] is not None and s["rule_id"] != rule_id):
                continue
            if s["active"] or (start_time is not None and s["created_at"] <= start_time < s["ends_at"]):
                return s
        return None
