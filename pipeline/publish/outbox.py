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

With replicas and Redis Sentinel (docs/ha.md) a primary can also fail over: Sentinel promotes a
replica, which holds only what replication had sent it (asynchronous).  With ``bus.wait_replicas``
N > 0 an alarm row is kept after delivery until ``WAIT N timeout`` reports that N replicas hold it;
only then is it dropped (at once: a replica has it, the ``CONFIRM_S`` rule is not used).  If ``WAIT``
reports fewer (a replica down or lagging, the primary cut off), the rows stay and later rounds ask
again (at most every ``WAIT_RETRY_S``: later batches are not held up meanwhile); the replication
stream is ordered, so one later confirmation covers every earlier row.  If the primary changes first
(the client reaches a server with another ``run_id``: the promoted replica) every unconfirmed row is
sent again, so the new primary confirms them; consumers de-duplicate on the message ``id``.  Alert
updates are not waited for (the next update or the end supersedes them); messages held in memory
while the disk refuses the outbox are delivered without ``WAIT``.

With ``cluster.enabled`` every message carries its camera's fence (``{owner, token}``: the worker held
the camera's lease under that token when it stamped it).  A worker cut off from Redis fences itself,
but what it stamped before that waits here and reaches Redis when the link heals, after another
worker has taken the camera.  So a batch holding fenced messages is written by one Lua script
(:func:`bus.add_events_fenced`) that compares each token with the camera's token counter and refuses
the lower ones atomically with the write: those rows are dropped as ``fenced`` (counted in
``stats.fenced``, logged once per camera, never sent again) and never reach the stream or ``P:open``.
A batch without fences (one machine) goes out as plain XADD/HSET commands, as it always did.

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
RETRY_MAX_S = 1.0  # a failover is over in seconds: retry at least this often (one connect attempt a second)
ALERT_SEQ_MAX = 50_000  # alerts whose last delivered seq is remembered (resend order, see deliver_once)
WAIT_RETRY_S = 1.0  # after a WAIT that found too few replicas, ask again no sooner than this

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
    replica_confirmed: int = 0  # alarm messages WAIT confirmed on bus.wait_replicas replicas
    replica_waits_short: int = 0  # WAITs that found too few replicas (the rows stayed)
    fenced: int = 0  # stamped under a token lower than the camera's current one: refused by Redis, dropped
    last_error: str = ""
    connected: bool = False


class Outbox:
    """On-disk queue in front of the events stream; ``send`` is the publisher's sink."""

    def __init__(self, path: Path, redis: Any, keys: bus.BusKeys, maxlen: int, max_messages: int = 100_000,
                 cameras: Callable[[], Iterable[str]] | None = None, wait_replicas: int = 0,
                 wait_timeout_ms: int = 1000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen
        self.max_messages = max_messages
        self.cameras = cameras  # the cameras this worker owns (for ending a predecessor's open alerts)
        self.wait_replicas = wait_replicas  # bus.wait_replicas: alarm rows stay until this many replicas hold them
        self.wait_timeout_ms = wait_timeout_ms
        self._next_wait = 0.0  # monotonic time before which no WAIT is tried again (the last one came short)
        self._last_wait_log = -1e9
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
        self._fenced_logged: set[str] = set()  # cameras whose refused messages were logged (once each)
        self._spill: collections.deque[tuple[str, bool, float, str, str]] = collections.deque()
        self._own_alerts: set[str] = set()  # alert ids this process opened: never orphans
        # alert id -> highest seq delivered: a row sent again after a failover behind a newer message of its
        # alert (the new primary took the newer one first) must not reopen the alert in P:open
        self._alert_seq: collections.OrderedDict[str, int] = collections.OrderedDict()
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

    def unconfirmed(self) -> int:
        """Alarm messages Redis took that are still kept: not yet confirmed on replicas (or, without
        ``wait_replicas``, not yet ``CONFIRM_S`` old)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NOT NULL").fetchone()[0])

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
                self._drop_idle_connections()
                if self.stats.connected or not self.stats.last_error:
                    log.warning("outbox: delivery failed (%s); retrying, messages stay on disk", e)
                self.stats.connected = False
                self.stats.delivery_errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
                if self._stop.wait(delay):
                    return
                delay = min(RETRY_MAX_S, delay * 2)

    def _drop_idle_connections(self) -> None:
        """After a failure, idle connections may still lead to an old primary (one that refuses writes,
        NOREPLICAS, without being down): close them, so the next one asks Sentinel where the primary is."""
        try:
            self.redis.connection_pool.disconnect(inuse_connections=False)
        except Exception as e:  # never let clean-up stop the retry loop
            log.debug("outbox: closing idle connections failed: %s", e)

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
            if not self.wait_replicas:
                self._db.execute("DELETE FROM outbox WHERE delivered IS NOT NULL AND delivered < ? AND run_id = ?",
                                 (now - CONFIRM_S, self._run_id))  # confirmed: on the server's disk by now
            rows = self._db.execute("SELECT seq, alarm, body FROM outbox WHERE delivered IS NULL ORDER BY seq "
                                    "LIMIT ?", (BATCH,)).fetchall()
        if not rows:
            moved = self._deliver_spill()
            if self.wait_replicas and not moved:
                self._confirm_on_replicas()
            return moved
        msgs = [json.loads(body) for _, _, body in rows]
        items = []
        for (seq, _, _), msg in zip(rows, msgs):
            aid = msg.get("alert_id") if msg.get("type") == "alert" else None
            newer = self._alert_seq.get(aid, -1) if aid else -1
            items.append((msg, seq >= newer))
        # which server took the batch, in the same transaction: the client reconnects by itself (a restarted
        # Redis, a new primary after a failover), so the server of the last round may not be this one
        refused, info = self._transmit(items, with_info=True)  # raises on any failure: the rows stay, sent again
        run_id = self._observe(info)
        taken = [(row, msg) for row, msg, cur in zip(rows, msgs, refused) if cur is None]
        gone = [row[0] for row, cur in zip(rows, refused) if cur is not None or not row[1]]
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in gone])
            self._db.executemany("UPDATE outbox SET delivered = ?, run_id = ? WHERE seq = ?",
                                 [(now, run_id, seq) for (seq, alarm, _), _ in taken if alarm])
            self._db.execute("COMMIT")
        for (seq, _, _), msg in taken:
            aid = msg.get("alert_id") if msg.get("type") == "alert" else None
            if aid:
                self._alert_seq[aid] = max(seq, self._alert_seq.get(aid, -1))
                self._alert_seq.move_to_end(aid)
        while len(self._alert_seq) > ALERT_SEQ_MAX:
            self._alert_seq.popitem(last=False)
        self.stats.delivered += len(taken)
        self._count_fenced(msgs, refused)
        if self.wait_replicas and any(alarm for (_, alarm, _), _ in taken):
            self._confirm_on_replicas()
        return len(rows)

    def _transmit(self, items: list[tuple[dict[str, Any], bool]], with_info: bool) -> tuple[list[int | None], Any]:
        """Write ``items`` ((message, index_open), in order) in one MULTI/EXEC, with ``INFO server`` after them
        when ``with_info``: per message None (taken) or the camera's current token (refused: stamped under
        a lower one), and the INFO reply.  A batch with no fenced message is the plain commands (no
        script, nothing to compare); one with any goes through :func:`bus.add_events_fenced` as a whole,
        so the order of the batch holds."""
        pipe = self.redis.pipeline(transaction=True)
        fenced = any(bus.fence_of(msg) is not None for msg, _ in items)
        if fenced:
            bus.add_events_fenced(pipe, self.keys, items, self.maxlen)
        else:
            for msg, index_open in items:
                bus.add_event(pipe, self.keys, msg, self.maxlen, index_open=index_open)
        if with_info:
            pipe.info("server")
        res = pipe.execute()
        refused: list[int | None] = bus.fenced_replies(res[0]) if fenced else [None] * len(items)
        return refused, (res[-1] if with_info else None)

    def _count_fenced(self, msgs: list[dict[str, Any]], refused: list[int | None]) -> None:
        """Count the refused messages; log once per camera (a healed link may bring hundreds of them)."""
        for msg, cur in zip(msgs, refused):
            if cur is None:
                continue
            self.stats.fenced += 1
            fence = bus.fence_of(msg)
            cam = fence[0] if fence else "?"
            if cam not in self._fenced_logged:
                self._fenced_logged.add(cam)
                log.warning("outbox: camera %s: message %s stamped under fence token %s dropped: the camera's token "
                            "is now %d (another worker took it while this one was cut off or paused); later ones "
                            "of this camera are only counted", cam, msg.get("id"), fence[1] if fence else "?", cur)

    def _confirm_on_replicas(self) -> None:
        """Drop the delivered alarm rows once ``WAIT`` says ``wait_replicas`` replicas hold them.

        WAIT counts the replicas that acknowledged the *calling connection's* last write, and a pooled
        client may hand it another connection than the one that delivered: so a tiny write precedes it on
        the same connection (a non-transactional pipeline), and since that write comes after the rows
        in the one replication stream, its acknowledgement covers them all.
        """
        if time.monotonic() < self._next_wait:
            return
        with self._lock:
            (waiting,) = self._db.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NOT NULL").fetchone()
        if not waiting:
            return
        pipe = self.redis.pipeline(transaction=False)  # one connection, in this order
        pipe.info("server")  # rows delivered to another server (run_id) are not covered: they are sent again
        pipe.set(self.keys.prefix_key("outbox:wait"), str(time.time()), px=60_000)
        pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        info, _, acked = pipe.execute()
        run_id = self._observe(info)
        acked = int(acked)
        with self._lock:
            row = self._db.execute("SELECT MAX(seq), COUNT(*) FROM outbox WHERE delivered IS NOT NULL AND run_id = ?",
                                   (run_id,)).fetchone()
        if not row[1]:
            return
        upto, waiting = int(row[0]), int(row[1])
        if acked < self.wait_replicas:
            self._next_wait = time.monotonic() + WAIT_RETRY_S
            self.stats.replica_waits_short += 1
            now = time.monotonic()
            if now - self._last_wait_log >= 10.0:
                self._last_wait_log = now
                log.warning("outbox: %d of %d replicas confirmed within %d ms; %d alarm messages stay in the "
                            "outbox until they do (or are sent again to a new primary)", acked,
                            self.wait_replicas, self.wait_timeout_ms, waiting)
            return
        with self._lock:
            cur = self._db.execute("DELETE FROM outbox WHERE delivered IS NOT NULL AND run_id = ? AND seq <= ?",
                                   (run_id, upto))
        self.stats.replica_confirmed += max(cur.rowcount, 0)

    def _deliver_spill(self) -> int:
        """Deliver what waits in memory (only once the rows on disk are all delivered: order)."""
        with self._lock:
            batch = list(self._spill)[:BATCH]
        if not batch:
            return 0
        msgs = [json.loads(body) for *_, body in batch]
        refused, _ = self._transmit([(msg, True) for msg in msgs], with_info=False)
        with self._lock:
            for item in batch:
                try:
                    self._spill.remove(item)
                except ValueError:  # dropped meanwhile by the bound
                    pass
        self.stats.delivered += sum(cur is None for cur in refused)
        self._count_fenced(msgs, refused)
        return len(batch)

    def _check_server(self) -> None:
        """Learn which Redis server this is; after a restart, resend what it may not have kept."""
        self._observe(self.redis.info("server"))

    def _observe(self, info: dict[str, Any]) -> str:
        """``INFO server`` of the server just talked to; if it is another one than before (a restart, a new
        primary after a failover), the alarm rows the old one took and did not confirm are sent again."""
        run_id = str(info.get("run_id", ""))
        if run_id == self._run_id:
            return run_id
        with self._lock:
            cur = self._db.execute("UPDATE outbox SET delivered = NULL, run_id = NULL "
                                   "WHERE delivered IS NOT NULL AND run_id != ?", (run_id,))
            resent = cur.rowcount
        if resent > 0:
            self.stats.resent_after_redis_restart += resent
            log.warning("outbox: Redis restarted or failed over; sending again the %d alarm messages it may "
                        "have lost", resent)
        self._run_id = run_id
        return run_id

    def _end_orphans(self) -> None:
        """End the open alerts of this worker's cameras that a dead predecessor left behind."""
        if self.cameras is None:
            return
        mine = set(self.cameras())
        for alert_id, last in bus.open_alerts(self.redis, self.keys).items():
            if bus.fence_of(last) is not None:
                # cluster.enabled: the worker ends these when it takes the camera's lease, stamped with its
                # own token; this copy would carry the predecessor's (lower) token and be refused as fenced
                continue
            if last.get("camera", {}).get("id") in mine and alert_id not in self._own_alerts:
                self.send(orphan_end_message(last, "worker restarted"))
                self.stats.orphans_ended += 1
                log.warning("alert %s of camera %s was left open by a previous worker: ended", alert_id,
                            last["camera"]["id"])
