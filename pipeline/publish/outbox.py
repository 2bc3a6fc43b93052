"""The durable outbox: every bus message is on disk before anything else happens to it.

A command room trusts that every alert reaches it, so a worker never hands a message straight to
Redis.  :meth:`Outbox.send` (called on the detect thread) appends it to a SQLite table in WAL mode
under ``data_dir`` and returns at once, fsync'd (``synchronous=FULL``); a delivery thread moves the
rows to the events stream in the order they were written (so per camera too) and deletes them only
once Redis has taken them.  A Redis that is down, frozen or restarting therefore never blocks a
camera, and nothing raised meanwhile is lost: it is delivered when Redis is back, even across a
restart of the worker (the file stays).  A message may reach the stream twice (delivered, then the
worker died before deleting the row): consumers de-duplicate on the message ``id``.

The same transaction that appends an alert to the stream keeps ``P:open`` (alert id → its last
message) up to date: ``new``/``update`` set it, ``end`` removes it.  When a worker starts, the open
alerts of its cameras that it did not open itself were left by a predecessor that died: once the
predecessor's own undelivered messages are on the stream, they are ended with
``end_reason: "worker restarted"``, so no alert stays open forever on the page.

Redis acknowledges a write before its append-only file is on disk (``appendfsync everysec``: a
Redis killed outright loses up to about a second of acknowledged writes).  So alarm-class rows are
kept, marked delivered with the Redis server's ``run_id``, for ``CONFIRM_S`` after delivery; when the
delivery thread finds a different ``run_id`` (Redis restarted) it sends the unconfirmed ones again.
Only then are they dropped: a command room loses no alarm to a Redis crash either.

A disk that refuses the row (full, failing) does not lose the message either: it waits in a bounded
queue in memory, delivered after the rows on disk, and later messages queue behind it until it is
empty, so the order holds.  Only a worker that dies while the disk is full loses what is in memory.

The outbox is bounded (``bus.outbox_max_messages``).  When it is full the oldest ``update`` is
dropped first (a later update or the end supersedes it); alarm-class messages (``new`` and ``end``
of an alert, a camera going offline or online) are dropped only when nothing else is left, counted
and logged as lost.
"""

from __future__ import annotations

import collections
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.publish import bus
from pipeline.publish.events import orphan_end_message

log = logging.getLogger(__name__)

BATCH = 200  # rows per delivery round trip (one MULTI/EXEC pipeline)
SPILL_MAX = 10_000  # messages held in memory while the disk refuses the outbox file
CONFIRM_S = 3.0  # delivered alarm rows are kept this long: longer than Redis's everysec AOF fsync
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    camera TEXT NOT NULL,
    alarm INTEGER NOT NULL,
    created REAL NOT NULL,
    body TEXT NOT NULL,
    delivered REAL,         -- NULL: waiting for Redis; else when Redis took it (alarm rows, until confirmed)
    run_id TEXT             -- the Redis server that took it
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered, seq);
"""


def is_alarm(message: dict[str, Any]) -> bool:
    """Alarm-class: what a command room must never miss (an alert beginning or ending, a camera lost)."""
    return message.get("type") != "alert" or message.get("phase") != "update"


@dataclass
class CameraBacklog:
    depth: int = 0  # messages waiting for Redis
    age_s: float = 0.0  # how long the oldest has waited


@dataclass
class OutboxStats:
    delivered: int = 0
    dropped: int = 0  # lost because the outbox was full
    redelivered_after_restart: int = 0
    resent_after_redis_restart: int = 0
    orphans_ended: int = 0
    disk_errors: int = 0  # messages the outbox file refused (held in memory instead)
    delivery_errors: int = 0
    last_error: str = ""
    connected: bool = False


class Outbox:
    """On-disk queue in front of the events stream; ``send`` is the publisher's sink."""

    def __init__(self, path: Path, redis: Any, keys: bus.BusKeys, maxlen: int, max_messages: int = 100_000,
                 cameras: Callable[[], Iterable[str]] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen
        self.max_messages = max_messages
        self.cameras = cameras  # the cameras this worker owns (for ending a predecessor's open alerts)
        self.stats = OutboxStats()
        # one process per outbox file: two delivering the same rows would duplicate every message
        self._lockfile = open(self.path.with_suffix(".lock"), "a+")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.seek(0)
            holder = self._lockfile.read().strip() or "?"
            self._lockfile.close()
            raise RuntimeError(f"outbox {self.path} is in use by another worker (pid {holder})") from None
        self._lockfile.truncate(0)
        self._lockfile.write(str(os.getpid()))
        self._lockfile.flush()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a row is on disk when send() returns
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_drop_log = -1e9
        self._spill: collections.deque[tuple[str, bool, float, str, str]] = collections.deque()
        self._own_alerts: set[str] = set()  # alert ids this process opened: never orphans
        # rows delivered to a Redis that may have lost them before its AOF was on disk: send again
        self._db.execute("UPDATE outbox SET delivered = NULL, run_id = NULL WHERE delivered IS NOT NULL")
        self._run_id: str | None = None
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM outbox").fetchone()
        self._predecessor_seq = int(row[0])  # rows up to here were written before this process started
        self.stats.redelivered_after_restart = int(row[1])
        self._orphans_done = False
        if row[1]:
            log.warning("outbox %s: %d messages from before the restart are waiting for Redis", self.path, row[1])

    # ------------------------------------------------------------------ the sink
    def send(self, message: dict[str, Any]) -> None:
        """Append to the outbox: on disk, or in memory while the disk refuses it. Never raises for a full disk."""
        if message.get("type") == "alert" and message.get("phase") == "new":
            self._own_alerts.add(message["alert_id"])
        camera = message.get("camera", {}).get("id", "")
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            if self._spill:  # older messages wait in memory: this one queues behind them
                self._spill_one(camera, message, body)
            else:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.execute("INSERT INTO outbox (id, camera, alarm, created, body) VALUES (?, ?, ?, ?, ?)",
                                     (message["id"], camera, int(is_alarm(message)), time.time(), body))
                    self._bound()
                    self._db.execute("COMMIT")
                except sqlite3.Error as e:  # disk full or failing: keep it in memory, never lose it here
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    self.stats.disk_errors += 1
                    self.stats.last_error = f"outbox file: {e}"
                    log.error("outbox %s refuses writes (%s): holding messages in memory", self.path, e)
                    self._spill_one(camera, message, body)
        self._wake.set()

    def _spill_one(self, camera: str, message: dict[str, Any], body: str) -> None:
        self._spill.append((camera, is_alarm(message), time.time(), message["id"], body))
        if len(self._spill) > SPILL_MAX:  # drop the oldest update, else the oldest of all
            victim = next((x for x in self._spill if not x[1]), self._spill[0])
            self._spill.remove(victim)
            self.stats.dropped += 1

    def _bound(self) -> None:
        (n,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        over = n - self.max_messages
        if over <= 0:
            return
        rows = self._db.execute("SELECT seq, id FROM outbox ORDER BY alarm, seq LIMIT ?", (over,)).fetchall()
        self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(r[0],) for r in rows])
        self.stats.dropped += len(rows)
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:  # a long outage must not flood the log as well
            self._last_drop_log = now
            log.error("outbox full (%d messages): %d dropped so far, oldest alert updates first (latest: %s)",
                      self.max_messages, self.stats.dropped, ", ".join(r[1] for r in rows[:5]))

    # ------------------------------------------------------------------ what status shows
    def backlog(self) -> dict[str, CameraBacklog]:
        now = time.time()
        with self._lock:
            rows = self._db.execute("SELECT camera, COUNT(*), MIN(created) FROM outbox WHERE delivered IS NULL "
                                    "GROUP BY camera").fetchall()
            spilled = list(self._spill)
        out = {cam: CameraBacklog(int(n), round(now - float(oldest), 2)) for cam, n, oldest in rows}
        for cam, _, created, _, _ in spilled:
            b = out.setdefault(cam, CameraBacklog(0, 0.0))
            b.depth += 1
            b.age_s = max(b.age_s, round(now - created, 2))
        return out

    def depth(self) -> int:
        """Messages Redis has not taken yet."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0]) + len(
                self._spill)

    # ------------------------------------------------------------------ delivery
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 3.0) -> None:
        """Stop delivering; what Redis did not take within ``drain_s`` stays on disk for the next start."""
        deadline = time.monotonic() + drain_s
        while self.depth() and time.monotonic() < deadline and self.stats.connected:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(1.0, drain_s))
        left = self.depth()
        if left:
            log.warning("outbox: %d messages kept in %s until the next start", left, self.path)
        with self._lock:
            self._db.close()
        self._lockfile.close()  # releases the flock

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything written so far is on the stream (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.depth() == 0:
                return True
            self._wake.set()
            time.sleep(0.02)
        return False

    def _run(self) -> None:
        delay = RETRY_INITIAL_S
        while not self._stop.is_set():
            try:
                moved = self.deliver_once()
                if not self._orphans_done and self._predecessor_done():
                    self._end_orphans()
                    self._orphans_done = True
                self.stats.connected = True
                delay = RETRY_INITIAL_S
                if not moved:
                    self._wake.wait(1.0)
                    self._wake.clear()
            except Exception as e:  # Redis down, frozen (socket timeout) or restarting: retry, keep the rows
                self._run_id = None  # it may come back as a new server: check before the next delivery
                if self.stats.connected or not self.stats.last_error:
                    log.warning("outbox: delivery failed (%s); retrying, messages stay on disk", e)
                self.stats.connected = False
                self.stats.delivery_errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
                if self._stop.wait(delay):
                    return
                delay = min(RETRY_MAX_S, delay * 2)

    def _predecessor_done(self) -> bool:
        with self._lock:
            row = self._db.execute("SELECT MIN(seq) FROM outbox WHERE delivered IS NULL").fetchone()
        return row[0] is None or int(row[0]) > self._predecessor_seq

    def deliver_once(self) -> int:
        """Move up to BATCH of the oldest rows to Redis in one transaction; returns how many."""
        if self._run_id is None:
            self._check_server()
        now = time.time()
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE delivered IS NOT NULL AND delivered < ? AND run_id = ?",
                             (now - CONFIRM_S, self._run_id))  # confirmed: on the server's disk by now
            rows = self._db.execute("SELECT seq, alarm, body FROM outbox WHERE delivered IS NULL ORDER BY seq "
                                    "LIMIT ?", (BATCH,)).fetchall()
        if not rows:
            return self._deliver_spill()
        pipe = self.redis.pipeline(transaction=True)
        for _, _, body in rows:
            bus.add_event(pipe, self.keys, json.loads(body), self.maxlen)
        pipe.execute()  # raises on any failure: the rows stay and are sent again
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq, alarm, _ in rows if not alarm])
            self._db.executemany("UPDATE outbox SET delivered = ?, run_id = ? WHERE seq = ?",
                                 [(now, self._run_id, seq) for seq, alarm, _ in rows if alarm])
            self._db.execute("COMMIT")
        self.stats.delivered += len(rows)
        return len(rows)

    def _deliver_spill(self) -> int:
        """Deliver what waits in memory (only once the rows on disk are all delivered: order)."""
        with self._lock:
            batch = list(self._spill)[:BATCH]
        if not batch:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        for *_, body in batch:
            bus.add_event(pipe, self.keys, json.loads(body), self.maxlen)
        pipe.execute()
        with self._lock:
            for item in batch:
                try:
                    self._spill.remove(item)
                except ValueError:  # dropped meanwhile by the bound
                    pass
        self.stats.delivered += len(batch)
        return len(batch)

    def _check_server(self) -> None:
        """Learn which Redis server this is; after a restart, resend what it may not have kept."""
        run_id = str(self.redis.info("server").get("run_id", ""))
        with self._lock:
            cur = self._db.execute("UPDATE outbox SET delivered = NULL, run_id = NULL "
                                   "WHERE delivered IS NOT NULL AND run_id != ?", (run_id,))
            resent = cur.rowcount
        if resent > 0:
            self.stats.resent_after_redis_restart += resent
            log.warning("outbox: Redis restarted; sending again the %d alarm messages it may have lost", resent)
        self._run_id = run_id

    def _end_orphans(self) -> None:
        """End the open alerts of this worker's cameras that a dead predecessor left behind."""
        if self.cameras is None:
            return
        mine = set(self.cameras())
        for alert_id, last in bus.open_alerts(self.redis, self.keys).items():
            if last.get("camera", {}).get("id") in mine and alert_id not in self._own_alerts:
                self.send(orphan_end_message(last, "worker restarted"))
                self.stats.orphans_ended += 1
                log.warning("alert %s of camera %s was left open by a previous worker: ended", alert_id,
                            last["camera"]["id"])
