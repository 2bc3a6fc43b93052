"""One reader of a Redis stream into the history database, shared by the archiver's three streams (events,
the recording catalogue, sightings).

A consumer group ``archiver`` per stream: several archivers may run side by side (each entry goes to one of
them), an entry is acknowledged only after its batch is committed, so nothing is lost when an archiver dies
mid-batch; its unacknowledged entries are read again on restart (``pending_first``) or taken over by another
archiver after ``claim_idle_ms`` (``claim``).  A stream deleted under it (Redis restarted empty) recreates
the group; a bus that is down is waited for; a batch that fails to store stays pending and is retried.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import redis
from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)

GROUP = "archiver"
BATCH = 500
CLAIM_IDLE_MS = 30_000


def text(v: Any) -> str:
    """A stream id or field as ``str`` (redis-py gives ``bytes``)."""
    return v.decode() if isinstance(v, bytes) else str(v)


class StreamConsumer:
    """One consumer of the ``archiver`` group on ``stream``; subclasses say how one entry is stored."""

    what = "stream"  # for the log: what this consumer archives

    def __init__(self, engine: Engine, r: redis.Redis[bytes], stream: str, consumer: str | None = None,
                 claim_idle_ms: int = CLAIM_IDLE_MS):
        self.engine = engine
        self.r = r
        self.stream = stream
        self.consumer = consumer or f"archiver@{socket.gethostname()}"
        self.claim_idle_ms = claim_idle_ms
        self.pending_first = True  # start with our own unacknowledged entries
        self.stored = 0
        self.duplicates = 0

    def store_entry(self, conn: Connection, sid: str, fields: dict[Any, Any]) -> bool | None:
        """Store one entry in the open transaction: True stored, False already there, None skipped."""
        raise NotImplementedError

    def ensure_group(self) -> None:
        """Create the group at the stream's start: a first start archives what the stream still holds."""
        try:
            self.r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            log.info("created consumer group %s on %s", GROUP, self.stream)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def _handle(self, entries: list[Any]) -> int:
        """Store a batch in one transaction, then acknowledge it; the count of entries handled."""
        if not entries:
            return 0
        with self.engine.begin() as conn:
            for sid, fields in entries:
                if not fields:
                    continue  # trimmed before it was read: just acknowledge it
                done = self.store_entry(conn, text(sid), fields)
                if done:
                    self.stored += 1
                elif done is not None:
                    self.duplicates += 1
        self.r.xack(self.stream, GROUP, *[e[0] for e in entries])
        return len(entries)

    def claim(self) -> int:
        """Take over entries another consumer read but never acknowledged (it crashed)."""
        n, start = 0, "0-0"
        while True:
            nxt, claimed = self.r.xautoclaim(self.stream, GROUP, self.consumer, self.claim_idle_ms,
                                             start_id=start, count=BATCH)[:2]
            n += self._handle(claimed)
            if text(nxt) == "0-0":
                return n
            start = nxt

    def step(self, block_ms: int = 1000) -> int:
        """Read and store one batch: own pending entries first, then new ones."""
        if self.pending_first:
            res = self.r.xreadgroup(GROUP, self.consumer, {self.stream: "0"}, count=BATCH)
            entries = res[0][1] if res else []
            if not entries:
                self.pending_first = False
                return 0
            return self._handle(entries)
        res = self.r.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=BATCH, block=block_ms)
        return self._handle(res[0][1] if res else [])

    def run(self, stop: threading.Event, claim_every_s: float = 10.0) -> None:
        """Archive until ``stop`` is set, surviving a bus that goes away and a batch that fails."""
        next_claim = 0.0
        group_ready = False
        while not stop.is_set():
            try:
                if not group_ready:
                    self.ensure_group()
                    group_ready = True
                if time.monotonic() >= next_claim:
                    if n := self.claim():
                        log.info("%s: claimed %d entries left pending by another consumer", self.what, n)
                    next_claim = time.monotonic() + claim_every_s
                self.step()
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):  # the stream was deleted (Redis restarted empty): start over
                    group_ready = False
                    continue
                log.warning("%s: %s; retrying in 1 s", self.what, e)
                stop.wait(1.0)
            except (redis.ConnectionError, redis.TimeoutError) as e:
                group_ready = False
                log.warning("%s: bus unavailable (%s); retrying in 1 s", self.what, e)
                stop.wait(1.0)
            except Exception:
                log.exception("%s: storing a batch failed; it stays pending and is retried in 2 s", self.what)
                self.pending_first = True
                stop.wait(2.0)
