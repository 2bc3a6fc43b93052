"""The recording catalogue: which worker holds which segment, stored from ``P:segments`` and looked up for exports.

Workers announce every finished segment on the capped stream ``P:segments``
(``pipeline/record/announce.py``).  :class:`CatalogArchiver` stores them in ``segment_catalog``
as the archiver stores alerts: a member of the consumer group ``archiver`` of that stream, a batch
per transaction, acknowledged after the commit, its own pending entries first at start and a dead
consumer's entries claimed; a row is keyed by ``worker|camera|name``, so a redelivered entry is
stored once.  The alert stream and its consumers are untouched.

No fencing filter here, unlike alerts: a segment a former owner finished under its (lower) token
before it lost the camera is good recording, and may be announced after the new owner's first
one.  A worker that lost its lease stops recording before the lease can expire elsewhere, so two
owners never record the same time; should they (a clock jump), the fetcher prefers the higher
token where rows overlap.

:func:`fetcher` builds the export library's :class:`~pipeline.export.fetch.SegmentFetcher` on this
table: the dashboard's clips and exports and ``sharpeye export`` use it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Connection, Engine, and_, select

from history.consumer import CLAIM_IDLE_MS, StreamConsumer
from history.consumer import text as _text
from history.db import insert_ignore
from history.schema import segment_catalog
from pipeline.export.fetch import RemoteSegment, SegmentFetcher
from pipeline.record.announce import stream_key
from pipeline.record.serve import key_path

log = logging.getLogger("sharpeye.catalog")
LOOKBACK_S = 3600.0  # the longest a segment lasts (recordings.segment_s is at most 600 s)


def store_segment(conn: Connection, sid: str | None, fields: dict[Any, Any]) -> bool:
    """One announcement into ``segment_catalog``; False for a duplicate (or a malformed entry, logged)."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    try:
        row = {"camera_id": f["camera"], "start": float(f["start"]), "end": float(f["end"]),
               "bytes": int(f["bytes"]), "name": f["name"], "sha256": f.get("sha256") or None,
               "worker": f["worker"], "token": int(f["token"]) if f.get("token") else None,
               "address": f.get("address", ""), "sig": f.get("sig") or None,
               "announced_at": float(f.get("time") or time.time()),
               "stream_id": sid}
    except (KeyError, ValueError) as e:
        log.warning("skipping malformed segment announcement %s: %s", sid, e)
        return False
    row["dedupe_key"] = f"{row['worker']}|{row['camera_id']}|{row['name']}"
    return insert_ignore(conn, segment_catalog, row)


class CatalogArchiver(StreamConsumer):
    """One consumer of the ``archiver`` group on the recording catalogue's stream."""

    what = "segment catalogue"

    def __init__(self, engine: Engine, r: redis.Redis[bytes], prefix: str, consumer: str | None = None,
                 claim_idle_ms: int = CLAIM_IDLE_MS):
        super().__init__(engine, r, stream_key(prefix), consumer, claim_idle_ms)

    def store_entry(self, conn: Connection, sid: str, fields: dict[Any, Any]) -> bool | None:
        return store_segment(conn, sid, fields)


def lookup(engine: Engine, camera: str, start: float, end: float) -> list[RemoteSegment]:
    """Catalogue rows of ``camera`` overlapping [start, end], oldest first."""
    c = segment_catalog.c
    with engine.connect() as conn:
        rows = conn.execute(select(segment_catalog).where(and_(
            c.camera_id == camera, c.start >= start - LOOKBACK_S, c.start < end, c.end > start))
            .order_by(c.start)).all()
    return [RemoteSegment(r.camera_id, r.start, r.end, r.name, int(r.bytes), r.worker, r.address, r.sha256, r.token,
                          r.sig) for r in rows]


def recorded_anywhere(engine: Engine, cameras: list[str], start: float, end: float) -> bool:
    """Whether the catalogue knows any segment of these cameras in the range (a request is not empty)."""
    return any(lookup(engine, c, start, end) for c in cameras)


def fetcher(data_dir: str | Path, engine: Engine, key_file: str | Path) -> SegmentFetcher:
    """The export library's fetcher over this database's catalogue; ``key_file``: the config's site key
    (``pipeline.record.serve.key_path``)."""
    return SegmentFetcher(data_dir, lambda cam, s, e: lookup(engine, cam, s, e), key_file=key_file)


def dashboard_fetcher(d: Any) -> SegmentFetcher | None:
    """The fetcher of a dashboard (its data directory and database) when the cluster is on, else None."""
    cfg = d.config()
    return fetcher(d.data_dir, d.engine, key_path(cfg)) if cfg.cluster.enabled else None
