"""Each finished segment announced on the bus, so the command room knows which machine holds which range.

When cameras move between machines (cluster ownership), a camera's recording is split over the workers
that owned it.  Each worker announces every segment it finishes (camera, start, end, bytes, name,
sha256, its worker id, the fencing token it recorded under, the address of its segment server)
on a dedicated capped stream ``P:segments``; the archiver stores them in the history database's
``segment_catalog`` table, and export and the alert clip look there for what the local disk lacks.

Why a dedicated stream, not the events stream: the alert stream's consumers (dashboard, archiver,
escalation) must not see, skip or count a message per camera every few seconds.  Why announce
from the writer rather than scan the folders: the writer knows the moment a segment is complete
and under which token it was written.

The writer's thread only queues (a dict); hashing and sending happen on this module's thread, so
recording never waits for the bus.  When the bus is down, announcements wait in a bounded queue
(the oldest go first when it is full; ``dropped`` counts them) and are sent when it is back.  A
lost announcement means the catalogue misses that segment: the file is still on its worker's
disk and in its ``index.jsonl``.  Imports no Redis: ``send`` is given by the worker.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.record.layout import SegmentInfo
from pipeline.record.serve import catalogue_signature

log = logging.getLogger(__name__)

STREAM = "segments"  # the key is f"{prefix}:segments"
STREAM_MAXLEN = 200_000  # ~23 days of 10 s segments of one camera, or a day of 23 cameras: the archiver keeps up
QUEUE_MAX = 10_000
RETRY_S = 1.0
HASH_CHUNK = 1 << 20

Send = Callable[[dict[str, str]], Any]


def stream_key(prefix: str) -> str:
    return f"{prefix}:{STREAM}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def announcement(info: SegmentInfo, worker: str, address: str, extra: dict[str, Any], sha256: str,
                 key: bytes = b"", now: float | None = None) -> dict[str, str]:
    """The stream entry of one finished segment (flat strings, as Redis stores them), signed with the site key."""
    fence = extra.get("fence") or {}
    token = fence.get("token")
    start, end = round(info.start, 3), round(info.end, 3)
    sig = catalogue_signature(key, info.camera, start, end, info.bytes, info.path.name, sha256, worker,
                              int(token) if token is not None else None, address) if key else ""
    return {"camera": info.camera, "start": f"{start:.3f}", "end": f"{end:.3f}",
            "bytes": str(info.bytes), "name": info.path.name, "sha256": sha256, "worker": worker,
            "token": "" if token is None else str(token), "address": address, "sig": sig,
            "time": f"{time.time() if now is None else now:.3f}"}


class SegmentAnnouncer:
    """Queue of finished segments to announce; ``announce`` is the writer's ``on_segment`` hook."""

    def __init__(self, send: Send, worker: str, address: str, key: bytes = b"", queue_max: int = QUEUE_MAX):
        self.send = send
        self.worker = worker
        self.address = address
        self.key = key  # the site key (pipeline/record/serve.py): fetchers take only rows signed with it
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self._queue: collections.deque[tuple[SegmentInfo, dict[str, Any]]] = collections.deque()
        self._queue_max = queue_max
        self._ready: collections.deque[dict[str, str]] = collections.deque()  # hashed, not yet sent
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def announce(self, info: SegmentInfo, extra: dict[str, Any]) -> None:
        """Called by the segment writer (under its lock) when a segment is stored: only queues."""
        with self._cv:
            if len(self._queue) + len(self._ready) >= self._queue_max:
                if self._ready:
                    self._ready.popleft()
                else:
                    self._queue.popleft()
                self.dropped += 1
            self._queue.append((info, dict(extra)))
            self._cv.notify()

    def pending(self) -> int:
        with self._cv:
            return len(self._queue) + len(self._ready)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="segment-announcer", daemon=True)
        self._thread.start()

    def stop(self, flush_s: float = 2.0) -> None:
        """Stop after sending what is queued (at most ``flush_s``): the last segments of a stopping worker count."""
        deadline = time.monotonic() + flush_s
        while self.pending() and time.monotonic() < deadline and self._thread is not None:
            time.sleep(0.05)
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while not self._queue and not self._ready and not self._stop.is_set():
                    self._cv.wait(1.0)
                item = self._queue.popleft() if self._queue else None
            if item is not None:
                self._hash(*item)
            if not self._flush():
                self._stop.wait(RETRY_S)

    def _hash(self, info: SegmentInfo, extra: dict[str, Any]) -> None:
        try:
            digest = file_sha256(info.path)
        except OSError as e:  # deleted already (retention under a full disk): nothing to announce
            log.warning("camera %s: segment %s not announced: %s", info.camera, info.path.name, e)
            return
        with self._cv:
            self._ready.append(announcement(info, self.worker, self.address, extra, digest, self.key))

    def _flush(self) -> bool:
        """Send the hashed announcements in order; False when the bus refused (they stay queued)."""
        while True:
            with self._cv:
                if not self._ready:
                    return True
                fields = self._ready[0]
            try:
                self.send(fields)
            except Exception as e:  # the bus is down or failing over: keep them, try again
                self.failures += 1
                if self.failures == 1 or self.failures % 60 == 0:
                    log.warning("segment announcements waiting (%d queued): %s", self.pending(), e)
                return False
            with self._cv:
                if self._ready and self._ready[0] is fields:
                    self._ready.popleft()
                self.sent += 1
