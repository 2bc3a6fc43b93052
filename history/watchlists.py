"""Watchlists (布控) in the history database: entries, who may see and change them, their audit, the mirror.

An entry is a plate pattern (exact, or one ``?`` for a character not known), why it is watched, the
investigator answerable for it, when it expires and the grid cells it covers (``*``: every cell).
Patterns are checked against the mainland plate grammar (:func:`pipeline.analyse.watchlist.parse_pattern`).

Scope, as everywhere: a user sees the entries covering one of their cells (all of them with every
cell), creates entries only for cells they have (``*`` only with every cell) and removes an entry
they created or whose cells are all theirs.  An entry out of sight answers exactly as an unknown one.
Every change is in the audit log (``watchlist_add``, ``watchlist_remove``) with the entry, a row per covered
cell so that each cell's supervisor reads it.

The workers never read this database: :func:`mirror` writes the active entries, without reason or
owner, under ``{prefix}:watchlist`` on the bus after every change (and the dashboard again every half
minute, so a restarted bus gets them back); the workers match each plate they read against it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, or_, select

from history import audit
from history.schema import watchlist_entries as wl
from pipeline.analyse.watchlist import ALL_CELLS, MIRROR_KEY, Entry, PatternError, display, mirror_json, parse_pattern

MAX_ENTRIES = 10_000  # a mirror the workers read whole at every plate: tens of kB at most


class WatchlistError(ValueError):
    """A request about watchlists that cannot be done: ``code`` for the page, ``status``, the ``field`` at fault."""

    def __init__(self, code: str, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.status, self.field = code, status, field


def _cells_of(actor: Any) -> tuple[bool, set[str]]:
    return bool(actor.all_cells()), set(actor.cells)


def _sees(actor: Any, cells: Iterable[str]) -> bool:
    every, mine = _cells_of(actor)
    return every or ALL_CELLS in cells or bool(mine & set(cells))


def _as_dict(row: Any, now: float) -> dict[str, Any]:
    cells = json.loads(row.cells)
    return {"id": row.id, "plate": display(row.pattern), "pattern": row.pattern, "reason": row.reason,
            "owner": row.owner, "cells": cells, "expires_at": row.expires_at, "created_at": row.created_at,
            "created_by": row.created_by, "active": row.expires_at is None or now < row.expires_at}


def create(conn: Connection, actor: Any, *, plate: str, reason: str, cells: list[str], known_cells: Iterable[str],
           owner: str | None = None, expires_at: float | None = None, remote: str | None = None,
           now: float | None = None) -> dict[str, Any]:
    """Add an entry (audited); :class:`WatchlistError` naming the field when it cannot be."""
    t = time.time() if now is None else now
    try:
        pattern = parse_pattern(plate)
    except PatternError as e:
        raise WatchlistError("bad_plate", 422, str(e), "plate") from None
    reason = reason.strip()
    if not reason:
        raise WatchlistError("no_reason", 422, "reason: say why the plate is watched", "reason")
    scope = sorted(set(cells))
    if not scope:
        raise WatchlistError("no_cells", 422, "cells: name the grid cells the entry covers (* for every cell)",
                             "cells")
    every, mine = _cells_of(actor)
    known = set(known_cells)
    for c in scope:
        if c == ALL_CELLS:
            if not every:
                raise WatchlistError("forbidden_scope", 403, "cells: * (every cell) needs a user of every cell",
                                     "cells")
        elif c not in known:
            raise WatchlistError("unknown_cell", 422, f"cells: no grid cell {c!r}", "cells")
        elif not every and c not in mine:
            raise WatchlistError("forbidden_scope", 403, f"cells: {c!r} is not one of yours", "cells")
    if ALL_CELLS in scope:
        scope = [ALL_CELLS]
    if expires_at is not None and expires_at <= t:
        raise WatchlistError("expired", 422, "expires_at: the expiry is in the past", "expires_at")
    n = conn.execute(select(wl.c.id).limit(MAX_ENTRIES)).all()
    if len(n) >= MAX_ENTRIES:
        raise WatchlistError("too_many", 409, f"the watchlists hold {MAX_ENTRIES} entries already")
    row = {"pattern": pattern, "reason": reason, "owner": (owner or actor.username).strip()[:64] or actor.username,
           "cells": json.dumps(scope), "expires_at": expires_at, "created_at": t, "created_by": actor.username}
    res = conn.execute(wl.insert().values(**row))
    entry_id = int(res.inserted_primary_key[0]) if res.inserted_primary_key else 0
    out = _as_dict(conn.execute(select(wl).where(wl.c.id == entry_id)).one(), t)
    _audit(conn, "watchlist_add", actor, out, remote, t)
    return out


def _audit(conn: Connection, action: str, actor: Any, entry: dict[str, Any], remote: str | None, t: float) -> None:
    """One audit row per grid cell the entry covers, so each cell's supervisor finds the change in their log
    (an every-cell entry: one row without a cell, which users of every cell read)."""
    data = {k: entry[k] for k in ("id", "plate", "reason", "owner", "cells", "expires_at")}
    for cell in [None] if ALL_CELLS in entry["cells"] else entry["cells"]:
        audit.record(conn, action, user_id=actor.id, username=actor.username, remote=remote, at=t,
                     grid_cell_id=cell, note=entry["plate"], data=data)


def visible(conn: Connection, actor: Any, now: float | None = None, include_expired: bool = True
            ) -> list[dict[str, Any]]:
    """The entries the actor sees (their cells' and every-cell ones), newest first."""
    t = time.time() if now is None else now
    q = select(wl).order_by(wl.c.id.desc())
    if not include_expired:
        q = q.where(or_(wl.c.expires_at.is_(None), wl.c.expires_at > t))
    return [_as_dict(r, t) for r in conn.execute(q) if _sees(actor, json.loads(r.cells))]


def remove(conn: Connection, actor: Any, entry_id: int, remote: str | None = None,
           now: float | None = None) -> dict[str, Any]:
    """Remove an entry (audited, with what it was): 404 out of sight, 403 when it is not the actor's to remove."""
    t = time.time() if now is None else now
    row = conn.execute(select(wl).where(wl.c.id == entry_id)).first()
    if row is None or not _sees(actor, json.loads(row.cells)):
        raise WatchlistError("not_found", 404, f"no watchlist entry {entry_id}")
    entry = _as_dict(row, t)
    every, mine = _cells_of(actor)
    if not (every or row.created_by == actor.username or (ALL_CELLS not in entry["cells"]
                                                           and set(entry["cells"]) <= mine)):
        raise WatchlistError("forbidden_scope", 403, f"watchlist entry {entry_id} covers cells that are not yours")
    conn.execute(delete(wl).where(wl.c.id == entry_id))
    _audit(conn, "watchlist_remove", actor, entry, remote, t)
    return entry


def active_entries(conn: Connection, now: float | None = None) -> list[Entry]:
    """Every entry not expired, as the workers match them."""
    t = time.time() if now is None else now
    rows = conn.execute(select(wl.c.id, wl.c.pattern, wl.c.cells, wl.c.expires_at)
                        .where(or_(wl.c.expires_at.is_(None), wl.c.expires_at > t)).order_by(wl.c.id))
    return [Entry(r.id, r.pattern, tuple(json.loads(r.cells)), r.expires_at) for r in rows]


def mirror(conn: Connection, r: Any, prefix: str, now: float | None = None) -> int:
    """Write the active entries under ``{prefix}:watchlist`` for the workers; how many."""
    entries = active_entries(conn, now)
    r.set(f"{prefix}:{MIRROR_KEY}", mirror_json(entries, now))
    return len(entries)
