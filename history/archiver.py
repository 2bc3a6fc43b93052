"""``python -m history.archiver --config FILE --redis-url-file FILE``: keep every bus message in the history database.

The events stream is capped (``XADD MAXLEN ~``), so the history lives in the database.  The
archiver reads the stream as a member of the Redis consumer group ``archiver``: Redis keeps
the group's position, so whatever was published while the archiver (or the dashboard) was
down is read when it is back.  A batch is written in one transaction and only then
acknowledged (XACK); if the archiver dies in between, the entries stay pending and are read
again at start (its own pending list, ``XREADGROUP ... 0``) or claimed from a dead consumer
of another name (``XAUTOCLAIM``).  A new alert joins the open incident of its camera and zone or
line, or opens one (history/incidents.py).  Storing is idempotent: a message is keyed by its ``id``
(or ``msg_id``) when it carries one, else by ``(alert_id, phase, time)``, so a redelivered
entry is stored once.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Connection, Engine, select, update

from history import audit
from history.catalogue import CatalogArchiver
from history.consumer import CLAIM_IDLE_MS, StreamConsumer
from history.db import insert_ignore, open_database
from history.incidents import Grouping, assign, grouping_for, touch
from history.schema import alert_messages, alerts, camera_events
from history.sightings import SightingArchiver
from pipeline.config import load_config
from pipeline.config.secrets import install_log_scrubber
from pipeline.publish import bus
from pipeline.publish.fencing import FenceFilter

log = logging.getLogger("sharpeye.archiver")


def dedupe_key(msg: dict[str, Any]) -> str:
    """The message's own id when the publisher gave one, else what identifies it by content."""
    mid = msg.get("id") or msg.get("msg_id")
    if mid:
        return f"id:{mid}"
    if msg.get("type") == "alert":
        return f"{msg['alert_id']}|{msg['phase']}|{msg['time']}"
    return f"camera:{msg['camera']['id']}|{msg['phase']}|{msg['time']}"


def _labels(labels: list[str]) -> str:
    return "," + ",".join(sorted(set(labels))) + "," if labels else ","


def store_alert(conn: Connection, sid: str | None, msg: dict[str, Any], grouping: Grouping | None = None) -> bool:
    """Record one alert message and fold it into the alert's row and its incident; False for a duplicate.

    A new alert joins the open incident of its camera and zone or line, or opens one (history/incidents.py);
    ``grouping`` defaults to the one configured for the engine (``history.incidents.configure``)."""
    raw = json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
    t = float(msg["time"])
    if not insert_ignore(conn, alert_messages, {
            "dedupe_key": dedupe_key(msg), "alert_id": msg["alert_id"], "phase": msg["phase"], "time": t,
            "stream_id": sid, "message": raw}):
        return False
    cell = msg.get("grid_cell") or {}
    officer = cell.get("officer") or {}
    snap = (msg.get("snapshot") or {}).get("path")
    detection = {
        "camera_id": msg["camera"]["id"], "camera_name": msg["camera"].get("name") or msg["camera"]["id"],
        "grid_cell_id": cell.get("id") or "", "grid_cell_name": cell.get("name") or cell.get("id") or "",
        "officer_name": officer.get("name"), "officer_phone": officer.get("phone"),
        "rule_id": msg["rule"]["id"], "kind": msg["rule"]["kind"], "severity": msg["rule"]["severity"],
        "labels": _labels(msg.get("labels") or []), "score": float(msg.get("score") or 0.0),
        "start_time": float(msg.get("start_time") or t), "end_time": msg.get("end_time"),
        "phase": msg["phase"], "updated_at": t, "message": raw,
    }
    row = conn.execute(select(alerts.c.updated_at, alerts.c.phase, alerts.c.snapshot_path, alerts.c.incident_id)
                       .where(alerts.c.id == msg["alert_id"])).first()
    if row is None:
        incident_id, workflow = assign(conn, msg["alert_id"], msg, grouping or grouping_for(conn))
        conn.execute(alerts.insert().values(id=msg["alert_id"], snapshot_path=snap, incident_id=incident_id,
                                            **workflow, **detection))
        if detection["kind"] == "watchlist":
            _audit_watchlist_hit(conn, msg, detection, t)
        return True
    touch(conn, row.incident_id, msg)
    if t < row.updated_at or (row.phase == "end" and msg["phase"] != "end"):
        return True  # an older message reclaimed after a newer one: kept in alert_messages, the row stays newer
    conn.execute(update(alerts).where(alerts.c.id == msg["alert_id"])
                 .values(snapshot_path=snap or row.snapshot_path, **detection))
    return True


def _audit_watchlist_hit(conn: Connection, msg: dict[str, Any], detection: dict[str, Any], t: float) -> None:
    """A watchlist hit (布控命中) is audited once, by the system, when its alert row is first written (a redelivered
    or later message of the alert finds the row and writes none): camera, cell, entry and plate read; never the
    entry's reason, which the hit does not carry and the cell's operators may not read."""
    hit = msg.get("watchlist") or {}
    audit.record(conn, "watchlist_hit", alert_id=msg["alert_id"], grid_cell_id=detection["grid_cell_id"] or None,
                 at=t, note=hit.get("plate"),
                 data={"camera": detection["camera_id"], "camera_name": detection["camera_name"],
                       "cell": detection["grid_cell_id"], "alert_id": msg["alert_id"],
                       "entry_id": hit.get("entry_id"), "pattern": hit.get("pattern"), "plate": hit.get("plate"),
                       "confidence": hit.get("confidence")})


def store_camera(conn: Connection, sid: str | None, msg: dict[str, Any]) -> bool:
    cell = msg.get("grid_cell") or {}
    return insert_ignore(conn, camera_events, {
        "dedupe_key": dedupe_key(msg), "camera_id": msg["camera"]["id"],
        "camera_name": msg["camera"].get("name") or msg["camera"]["id"], "grid_cell_id": cell.get("id") or "",
        "phase": msg["phase"], "time": float(msg["time"]), "state": msg.get("state"),
        "detail": msg.get("detail"), "stream_id": sid})


def store(conn: Connection, sid: str | None, msg: dict[str, Any], grouping: Grouping | None = None) -> bool:
    """Store one bus message of any type; unknown types are skipped (a newer publisher)."""
    kind = msg.get("type")
    if kind == "alert":
        return store_alert(conn, sid, msg, grouping)
    if kind == "camera":
        return store_camera(conn, sid, msg)
    log.debug("skipping message %s of type %r", sid, kind)
    return False


class Archiver(StreamConsumer):
    """One consumer of the ``archiver`` group on the events stream; ``step()`` handles one batch."""

    what = "archiver"

    def __init__(self, engine: Engine, r: redis.Redis[bytes], keys: bus.BusKeys,
                 consumer: str | None = None, claim_idle_ms: int = CLAIM_IDLE_MS, grouping: Grouping | None = None):
        super().__init__(engine, r, keys.events, consumer, claim_idle_ms)
        self.keys = keys
        self.grouping = grouping  # the config's incident keys and windows (None: the engine's, if configured)
        self.fences = FenceFilter()  # cluster: a message of a camera's former owner (lower token) is stale

    def store_entry(self, conn: Connection, sid: str, fields: dict[Any, Any]) -> bool | None:
        decoded = bus.decode_entries([(sid, fields)])
        if not decoded:
            return None  # not one of ours
        msg = decoded[0][1]
        if not self.fences.accept(msg):
            log.info("dropped stale message %s (fence %s: the camera has a newer owner)", sid, msg.get("fence"))
            return None
        return store(conn, sid, msg, self.grouping)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sharpeye-archiver", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    bus_arg = ap.add_mutually_exclusive_group(required=True)
    bus_arg.add_argument("--redis", help="URL of the bus (shown by ps: use --redis-url-file if it holds a password)")
    bus_arg.add_argument("--redis-url-file", help="a file holding the bus URL (sharpeye run writes one, mode 0600)")
    ap.add_argument("--consumer", help="consumer name in the group (default archiver@HOSTNAME)")
    ap.add_argument("--claim-idle-ms", type=int, default=CLAIM_IDLE_MS,
                    help="take over entries another consumer has held unacknowledged this long (it crashed); "
                         f"default {CLAIM_IDLE_MS}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s archiver %(levelname)s: %(message)s")
    cfg = load_config(args.config)
    install_log_scrubber(cfg)
    url = args.redis or Path(args.redis_url_file).read_text().strip()
    engine = open_database(cfg)
    arch = Archiver(engine, bus.connect(url), bus.BusKeys(cfg.bus.prefix), args.consumer, args.claim_idle_ms,
                    Grouping(cfg))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # incident windows are read at start; the rest is config-free
    log.info("archiving %s into %s", arch.keys.events, engine.url.render_as_string(hide_password=True))
    # the recording catalogue (P:segments, its own stream: the events' consumers never see it)
    catalog = CatalogArchiver(engine, arch.r, cfg.bus.prefix, args.consumer, args.claim_idle_ms)
    catalog_thread = threading.Thread(target=catalog.run, args=(stop,), name="segment-catalog", daemon=True)
    catalog_thread.start()
    # sightings (P:sightings, their own stream too), expired per camera with their crops
    sightings = SightingArchiver.for_config(engine, arch.r, cfg, args.consumer, args.claim_idle_ms)
    threading.Thread(target=sightings.run, args=(stop,), name="sightings", daemon=True).start()
    arch.run(stop)
    catalog_thread.join(5)
    log.info("stopped: %d messages stored, %d duplicates skipped", arch.stored, arch.duplicates)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
