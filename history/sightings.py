"""Sightings in the history database: store, search (研判), follow a plate across cameras, expire.

The worker's sightings stage (:mod:`pipeline.analyse.sightings`) makes one record per confirmed
track; :func:`store` writes it (an upsert on ``sighting_id``: a track that lasts is written again
every ``every_s`` and when it ends) and :func:`save_crop` its best view as a JPEG under
``<data_dir>/sightings/<camera>/<yyyymmdd>/``.

How the searches stay fast at a million rows (figures in docs/benchmarks.md):

* every filter has an index that ends in ``first_time``, and results come newest first with a
  limit, so the database walks one index backwards and stops at ``limit`` rows;
* **plate, exact**: ``(plate, first_time)``; **prefix**: a range on the same index
  (``plate >= p AND plate < p + U+10FFFF``: binary order on SQLite; ``LIKE 'p%'`` on PostgreSQL);
* **plate, one wrong character** (the province is the character the reader gets wrong most, see
  :mod:`pipeline.analyse.plates`): one difference lies either in the first four characters or
  in the rest, so a plate one character away from the query shares its ``plate_front`` or its
  ``plate_back`` exactly: two index lookups, then the Hamming distance is checked here.  A ``?``
  in the query is a character not known (a witness saw ``藏D?5022``), matching any;
* **colour**: the main colour of each part has its own index (``upper_colour``, ``lower_colour``,
  ``body_colour``); "any part" is their union, which SQLite and PostgreSQL both answer from the
  three indexes.

Times overlap the query's range: a sighting from ``first_time`` to ``last_time`` is found by a
range that touches it.  No record spans more than an hour (the stage closes a longer track's record
and goes on in a new one), which bounds ``first_time`` from below as well.

SQLite plans better with statistics: :func:`purge` (run regularly) ends with ``ANALYZE`` (sampled,
tens of ms at a million rows); and where a few cameras or cells are asked for, the search keeps the
label and colour indexes out of the planner's choice (``+column``) so it takes the camera or cell one.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, delete, func, literal_column, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from history.consumer import CLAIM_IDLE_MS, StreamConsumer
from history.consumer import text as _text
from history.schema import sightings
from pipeline.analyse.colours import PALETTE
from pipeline.analyse.plates import compact
from pipeline.analyse.sightings import MAX_SPAN_S, STREAM, Sighting

log = logging.getLogger("sharpeye.sightings")
FRONT = 4  # characters of a compact plate in plate_front; the rest in plate_back
MAX_LIMIT = 1000
_ZH_TO_EN = {zh: en for en, zh in PALETTE.items()}
_PLATE_CHARS = re.compile(r"[·.\s\-_]")
PlateMatch = Literal["exact", "prefix", "fuzzy"]
Part = Literal["any", "upper", "lower", "body"]


def plate_key(text: str) -> str:
    """The stored form of a plate as typed or read: compact, upper case (``藏d·t5022`` → ``藏DT5022``)."""
    return _PLATE_CHARS.sub("", compact(text)).upper()


def colour_name(name: str) -> str:
    """A palette colour as its English name, from English (any case) or Chinese (红 or 红色)."""
    n = name.strip().lower()
    if n in PALETTE:
        return n
    zh = name.strip().removesuffix("色")
    if zh in _ZH_TO_EN:
        return _ZH_TO_EN[zh]
    if n == "gray":
        return "grey"
    raise ValueError(f"colour {name!r}: not in the palette ({', '.join(f'{en} {zh}' for en, zh in PALETTE.items())})")


def row_from_message(msg: Mapping[str, Any]) -> dict[str, Any]:
    """The table row of a sighting message (``Sighting.to_dict()`` plus ``grid_cell`` and ``crop_path``)."""
    colours = msg.get("colours") or {}

    def top(part: str) -> str | None:
        shares = colours.get(part) or []
        return str(shares[0]["name"]) if shares else None

    p = msg.get("plate") or None
    plate = plate_key(p["plate"]) if p else None
    return {
        "sighting_id": str(msg["sighting_id"]), "camera_id": str(msg["camera"]), "grid_cell_id": msg.get("grid_cell"),
        "track_id": int(msg["track_id"]), "label": str(msg["label"]), "first_time": float(msg["first_t"]),
        "last_time": float(msg["last_t"]), "best_time": float(msg["best_t"]), "direction": str(msg["direction"]),
        "upper_colour": top("upper"), "lower_colour": top("lower"), "body_colour": top("body"),
        "colours": json.dumps(colours, ensure_ascii=False),
        "plate": plate, "plate_front": plate[:FRONT] if plate else None, "plate_back": plate[FRONT:] if plate else None,
        "plate_confidence": float(p["confidence"]) if p else None, "plate_colour": p.get("colour") if p else None,
        "crop_path": msg.get("crop_path"), "box": json.dumps(msg.get("box")) if msg.get("box") else None,
        "hits": int(msg.get("hits") or 0), "final": bool(msg.get("final")),
    }


def row_of(s: Sighting, grid_cell: str | None = None, crop_path: str | None = None) -> dict[str, Any]:
    """The table row of a sighting."""
    return row_from_message({**s.to_dict(), "grid_cell": grid_cell, "crop_path": crop_path})


def save_crop(root: str | Path, s: Sighting, quality: int = 85) -> str:
    """Write the sighting's best view as a JPEG under ``root``; returns its path relative to ``root``."""
    rel = s.crop_name()
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(s.crop_jpeg(quality))
    tmp.replace(path)
    return rel


def store(conn: Connection, row: Mapping[str, Any]) -> bool:
    """Insert or update one sighting row (keyed by ``sighting_id``); True when a new row was added."""
    values = dict(row)
    sid = values["sighting_id"]
    changes = {k: v for k, v in values.items() if k not in ("sighting_id", "crop_path") or v is not None}
    res = conn.execute(update(sightings).where(sightings.c.sighting_id == sid).values(**changes))
    if res.rowcount:
        return False
    try:
        with conn.begin_nested():
            conn.execute(sightings.insert().values(**values))
    except IntegrityError:  # another writer added it between the two statements
        conn.execute(update(sightings).where(sightings.c.sighting_id == sid).values(**changes))
        return False
    return True


@dataclass(frozen=True)
class SightingQuery:
    """A search of the sightings; every field narrows it, none given finds the newest."""

    plate: str | None = None
    plate_match: PlateMatch = "exact"
    labels: tuple[str, ...] = ()
    colour: str | None = None
    part: Part = "any"
    cameras: tuple[str, ...] = ()
    cells: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None
    limit: int = 100
    before: tuple[float, int] | None = None  # (first_time, id) of the last row of the previous page
    extra: dict[str, Any] = field(default_factory=dict)  # not searched: kept for the audit record

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1-{MAX_LIMIT}, got {self.limit}")
        if self.plate_match not in ("exact", "prefix", "fuzzy"):
            raise ValueError(f"plate_match must be exact, prefix or fuzzy, got {self.plate_match!r}")
        if self.part not in ("any", "upper", "lower", "body"):
            raise ValueError(f"part must be any, upper, lower or body, got {self.part!r}")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.plate is not None and not plate_key(self.plate):
            raise ValueError("plate is empty")

    def describe(self) -> dict[str, Any]:
        """The query as plain data (for the audit log: each search is recorded with what was asked)."""
        return {k: v for k, v in {
            "plate": self.plate, "plate_match": self.plate_match if self.plate else None,
            "labels": list(self.labels) or None, "colour": self.colour, "part": self.part if self.colour else None,
            "cameras": list(self.cameras) or None, "cells": list(self.cells) or None, "start": self.start,
            "end": self.end, "limit": self.limit}.items() if v is not None}


def plate_distance(a: str, b: str) -> float:
    """Characters that differ between a stored plate and a query (``?`` in the query matches any); inf if the
    lengths differ."""
    if len(a) != len(b):
        return math.inf
    return sum(1 for x, y in zip(a, b) if y != "?" and x != y)


def _plate_filter(conn: Connection, q: SightingQuery) -> tuple[list[ColumnElement[bool]], int | None]:
    """SQL conditions for the plate part of a query, and the most mismatches the rows may have."""
    assert q.plate is not None
    key = plate_key(q.plate)
    col: Any = sightings.c.plate
    pg = conn.dialect.name == "postgresql"
    if q.plate_match == "prefix":
        if pg:
            esc = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return [col.like(esc + "%", escape="\\")], None
        if len(key) <= 2:  # a province (and letter) matches most plates: newest first by time, not by plate
            col = literal_column("+sightings.plate", col.type)
        return [col >= key, col < key + "\U0010ffff"], None
    front, back = key[:FRONT], key[FRONT:]
    if q.plate_match == "exact":
        if "?" not in key:
            return [col == key], None
        # unknown characters: the half without one must match exactly (both halves have one: the length)
        conds = [c == v for c, v in ((sightings.c.plate_front, front), (sightings.c.plate_back, back)) if "?" not in v]
        return conds or [func.length(col) == len(key)], 0
    # fuzzy: a row at most one character away shares the front or the back exactly
    conds = []
    if "?" not in front:
        conds.append(sightings.c.plate_front == front)
    if "?" not in back:
        conds.append(sightings.c.plate_back == back)
    if not conds:  # unknown characters in both halves: only the length narrows it
        return [func.length(col) == len(key)], 1
    return [or_(*conds) if len(conds) > 1 else conds[0]], 1


def search(engine: Engine | Connection, q: SightingQuery) -> list[dict[str, Any]]:
    """The sightings matching ``q``, newest first, at most ``q.limit``."""
    if isinstance(engine, Connection):
        return _search(engine, q)
    with engine.connect() as conn:
        return _search(conn, q)


def _search(conn: Connection, q: SightingQuery) -> list[dict[str, Any]]:
    t = sightings.c
    where: list[ColumnElement[bool]] = []
    max_diff: int | None = None
    if q.plate is not None:
        conds, max_diff = _plate_filter(conn, q)
        where += conds
    # SQLite's planner prefers the label or colour index even when a few cameras or cells narrow far
    # more (a white car in 3 of 500 cameras: 1.4 s against 27 ms at a million rows): there, the label
    # and colour columns are written ``+column``, which SQLite never looks up in an index
    steer = conn.dialect.name == "sqlite" and q.plate is None and (
        0 < len(q.cameras) <= 50 or 0 < len(q.cells) <= 50)

    def col(c: Any) -> Any:
        return literal_column(f"+sightings.{c.name}", c.type) if steer else c

    if q.labels:
        where.append(col(t.label).in_(q.labels) if len(q.labels) > 1 else col(t.label) == q.labels[0])
    if q.colour is not None:
        c = colour_name(q.colour)
        parts = {"upper": [col(t.upper_colour)], "lower": [col(t.lower_colour)], "body": [col(t.body_colour)],
                 "any": [col(t.upper_colour), col(t.lower_colour), col(t.body_colour)]}[q.part]
        where.append(or_(*[p == c for p in parts]) if len(parts) > 1 else parts[0] == c)
    if q.cameras:
        where.append(t.camera_id.in_(q.cameras))
    if q.cells:
        where.append(t.grid_cell_id.in_(q.cells))
    if q.end is not None:
        where.append(t.first_time <= q.end)
    if q.start is not None:
        # no record spans more than MAX_SPAN_S (the stage splits longer tracks): a bound for the index
        where += [t.last_time >= q.start, t.first_time >= q.start - MAX_SPAN_S]
    if q.before is not None:
        bt, bid = q.before
        where.append(or_(t.first_time < bt, and_(t.first_time == bt, t.id < bid)))
    stmt = select(sightings).where(*where).order_by(t.first_time.desc(), t.id.desc())
    if max_diff is None:
        rows = conn.execute(stmt.limit(q.limit)).mappings().all()
        return [_result(r) for r in rows]
    key = plate_key(q.plate or "")
    out: list[dict[str, Any]] = []
    for r in conn.execute(stmt).mappings():  # candidates from the index; distance checked here
        if r["plate"] is not None and plate_distance(r["plate"], key) <= max_diff:
            res = _result(r)
            res["plate_distance"] = int(plate_distance(r["plate"], key))
            out.append(res)
            if len(out) >= q.limit:
                break
    return out


def _result(r: Any) -> dict[str, Any]:  # a RowMapping
    d = dict(r)
    d["colours"] = json.loads(d["colours"] or "{}")
    d["box"] = json.loads(d["box"]) if d.get("box") else None
    if d.get("plate"):
        d["plate_text"] = f"{d['plate'][:2]}·{d['plate'][2:]}"
    return d


def plate_path(engine: Engine, plate: str, start: float | None = None, end: float | None = None,
               fuzzy: bool = False, limit: int = 500) -> list[dict[str, Any]]:
    """A vehicle's path: every sighting of one plate across cameras, in time order (oldest first)."""
    rows = search(engine, SightingQuery(plate=plate, plate_match="fuzzy" if fuzzy else "exact", start=start,
                                        end=end, limit=limit))
    return sorted(rows, key=lambda r: (r["first_time"], r["id"]))


def purge(engine: Engine, retain_days: Mapping[str, float], default_days: float, now: float | None = None,
          crops_root: str | Path | None = None, batch: int = 5000) -> int:
    """Delete sightings that ended before their camera's retention (and their crops); returns rows deleted."""
    now = time.time() if now is None else now
    t = sightings.c
    deleted = 0
    with engine.begin() as conn:
        cams = [r[0] for r in conn.execute(select(t.camera_id).distinct())]
    for cam in cams:
        cutoff = now - retain_days.get(cam, default_days) * 86400.0
        while True:
            with engine.begin() as conn:
                rows = conn.execute(select(t.id, t.crop_path).where(t.camera_id == cam, t.last_time < cutoff)
                                    .limit(batch)).all()
                if not rows:
                    break
                conn.execute(delete(sightings).where(t.id.in_([r[0] for r in rows])))
            deleted += len(rows)
            if crops_root is not None:
                _remove_files(Path(crops_root), (r[1] for r in rows if r[1]))
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")  # sampled: ~30 ms at a million rows
            conn.exec_driver_sql("ANALYZE sightings")  # the planner's statistics
    return deleted


def _remove_files(root: Path, rels: Iterable[str]) -> None:
    for rel in rels:
        p = (root / rel).resolve()
        if root.resolve() in p.parents:
            p.unlink(missing_ok=True)


class SightingArchiver(StreamConsumer):
    """One consumer of the ``archiver`` group on ``{prefix}:sightings``: stores each sighting (upsert).

    The delivery rules of every history consumer (history/consumer.py): a batch per transaction,
    acknowledged after the commit, its own pending entries first at start, a dead consumer's claimed.
    An entry is one field ``json``: ``Sighting.to_dict()`` plus ``grid_cell`` and ``crop_path``.
    """

    what = "sightings"

    def __init__(self, engine: Engine, r: Any, prefix: str, consumer: str | None = None,
                 claim_idle_ms: int = CLAIM_IDLE_MS, retain_days: Mapping[str, float] | None = None,
                 default_days: float = 3.0, crops_root: str | Path | None = None, purge_every_s: float = 3600.0):
        super().__init__(engine, r, f"{prefix}:{STREAM}", consumer, claim_idle_ms)
        self.malformed = 0
        self.retain_days = dict(retain_days or {})
        self.default_days = default_days
        self.crops_root = crops_root
        self.purge_every_s = purge_every_s
        self.next_purge = time.monotonic() + 60.0  # the first soon after start, then every purge_every_s
        self.purged = 0

    @classmethod
    def for_config(cls, engine: Engine, r: Any, cfg: Any, consumer: str | None = None,
                   claim_idle_ms: int = CLAIM_IDLE_MS) -> SightingArchiver:
        """The archiver of a config: its bus prefix, each camera's ``sightings.retain_days``, its crops folder."""
        days = {cid: cam.sightings.retain_days for cid, cam in cfg.cameras.items()}
        return cls(engine, r, cfg.bus.prefix, consumer, claim_idle_ms, days,
                   min(days.values(), default=3.0), cfg.data_path() / "sightings")

    def step(self, block_ms: int = 1000) -> int:
        if time.monotonic() >= self.next_purge:
            self.next_purge = time.monotonic() + self.purge_every_s
            try:
                self.purged += purge(self.engine, self.retain_days, self.default_days, crops_root=self.crops_root)
            except Exception:
                log.exception("expiring sightings failed; tried again in %.0f s", self.purge_every_s)
        return super().step(block_ms)

    def store_entry(self, conn: Connection, sid: str, fields: dict[Any, Any]) -> bool | None:
        try:
            row = row_from_message(json.loads(_text(fields.get(b"json", fields.get("json")))))
        except (TypeError, KeyError, ValueError) as e:
            self.malformed += 1
            log.warning("skipping malformed sighting %s: %s", sid, e)
            return None
        return store(conn, row)  # False: an update of a track's row, or a redelivery


def scoped_search(conn: Connection, cfg: Any, actor: Any, q: SightingQuery, remote: str | None = None
                  ) -> list[dict[str, Any]]:
    """A user's search: only the grid cells they see (``actor.sees_cell``), and recorded in the audit log
    with what was asked and how many rows came back (searches of people and plates are reviewed)."""
    from history.audit import record

    if not actor.all_cells():
        allowed = [c for c in cfg.grid_cells if actor.sees_cell(c)]
        q = replace(q, cells=tuple(c for c in (q.cells or allowed) if c in allowed))
    rows = search(conn, q) if q.cells or actor.all_cells() else []
    record(conn, "sightings_search", user_id=actor.id, username=actor.username,
           data={**q.describe(), "results": len(rows)}, remote=remote)
    return rows
