"""The worker's sightings loop: reads deferred plates, writes crops, sends sightings on the bus.

The detect thread runs each camera's :class:`~pipeline.analyse.sightings.SightingsStage` (cheap:
a crop, a sharpness and a colour measure at most every ``sample_s`` per track) and hands what it
emits to :meth:`SightingsLoop.put`; everything slow happens here, off the detect thread:

* a vehicle's plate views (cameras with ``sightings.plates`` on) are read, a few hundred ms each on a
  CPU (the reader is loaded when the loop starts if a camera reads plates, else at the first view:
  loading takes about a second, which a watchlist hit must not wait for);
* each plate read is matched against the watchlists' active entries (布控, mirrored by the dashboard
  under ``{prefix}:watchlist``, :mod:`pipeline.analyse.watchlist`): a hit on an entry covering the
  camera's cell is published as a high-severity ``alert`` at once (through the detect thread, like
  every alert), once per track and entry.  The stage reads a vehicle's first whole view early
  (``early_plates``), so a hit comes a second or two after the vehicle is in view;
* the best view is written as a JPEG under ``<data_dir>/sightings/`` (beside the snapshots);
* the record goes on ``{prefix}:sightings`` (capped), which the archiver stores in the history
  database (:class:`history.sightings.SightingArchiver`).

A full queue (the bus or the disk far behind) drops the oldest record and counts it; a record that
cannot be sent (Redis down) is kept and retried, up to the queue's bound.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from pipeline.analyse.sightings import STREAM, STREAM_MAXLEN, PlateReading, Sighting, complete
from pipeline.analyse.watchlist import MIRROR_KEY, WatchlistHit, alert_id, from_mirror, match
from pipeline.runtime.loops import Loop

if TYPE_CHECKING:
    from pipeline.runtime.worker import CameraRuntime, Worker

log = logging.getLogger(__name__)
QUEUE_MAX = 5000
RETRY_S = 1.0
HITS_KEPT = 10_000  # (sighting, entry) pairs already alerted, remembered so a track alerts once per entry


class SightingsLoop(Loop):
    """One thread per worker: the slow half of the sightings (plates, crop files, the bus)."""

    name = "sightings"

    def __init__(self, worker: Worker):
        super().__init__()
        self.w = worker
        self.cond = threading.Condition()
        self.queue: collections.deque[tuple[str | None, Sighting]] = collections.deque()
        self.reader: PlateReading | None = None
        self.sent = 0
        self.dropped = 0
        self.plate_reads = 0
        self.watch_hits = 0
        self.plate_read_s = 0.0  # wall time reading plates (a hit waits for its read)
        self._alerted: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()

    def put(self, rt: CameraRuntime, sightings: list[Sighting]) -> None:
        """Queue what a camera's stage emitted (detect thread; never blocks)."""
        if not sightings:
            return
        cell = self.w.cfg.cameras[rt.camera_id].grid_cell if rt.camera_id in self.w.cfg.cameras else None
        with self.cond:
            for s in sightings:
                if len(self.queue) >= QUEUE_MAX:
                    self.queue.popleft()
                    self.dropped += 1
                self.queue.append((cell, s))
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _watch(self, s: Sighting, cell: str | None, view: Any) -> None:
        """Match a plate just read against the watchlists' active entries; publish each new hit."""
        assert s.plate is not None
        try:
            entries = from_mirror(self.w.redis.get(f"{self.w.cfg.bus.prefix}:{MIRROR_KEY}"))
        except Exception as e:  # the bus is down: the record waits for it, the match cannot
            log.warning("camera %s: watchlist not read (%s); plate %s not matched", s.camera, e, s.plate.text)
            return
        for entry in match(entries, s.plate.text, cell, now=time.time()):
            key = (s.sighting_id, entry.id)
            if key in self._alerted:
                continue
            self._alerted[key] = None
            while len(self._alerted) > HITS_KEPT:
                self._alerted.popitem(last=False)
            hit = WatchlistHit(alert_id=alert_id(s.camera, entry.id, s.last_t), entry_id=entry.id,
                               pattern=entry.pattern, plate=s.plate.text, confidence=s.plate.confidence,
                               camera_id=s.camera, track_id=s.track_id, label=s.label, box=s.box,
                               first_t=s.first_t, seen_t=s.last_t)
            self.watch_hits += 1
            log.info("camera %s: watchlist entry %d hit by plate %s (track %d)", s.camera, entry.id, s.plate.text,
                     s.track_id)
            if s.camera in self.w.cfg.cameras:
                self.w._post(functools.partial(self.w.publisher.watchlist, hit, view))

    def _reader(self) -> PlateReading:
        if self.reader is None:
            from pipeline.analyse.plates import PlateReader

            self.reader = PlateReader(threads=1)
        return self.reader

    def turn(self) -> None:
        if self.reader is None and any(c.enabled and c.sightings.enabled and c.sightings.plates
                                       for c in self.w.cfg.cameras.values()):
            self._reader()  # now, not at the first vehicle
        with self.cond:
            if not self.queue:
                self.cond.wait(0.5)
            if not self.queue:
                return
            cell, s = self.queue[0]
        if s.pending is not None:
            self.plate_reads += len(s.pending.views)
            views = s.pending.views
            t0 = time.perf_counter()
            s = complete(s, self._reader())
            self.plate_read_s += time.perf_counter() - t0
            with self.cond:
                if self.queue and self.queue[0][1].sighting_id == s.sighting_id:
                    self.queue[0] = (cell, s)  # read once even if sending fails below
            if s.plate is not None:
                self._watch(s, cell, views[0] if views else None)
        msg: dict[str, Any] = {**s.to_dict(), "grid_cell": cell, "crop_path": None}
        try:
            root = self.w.data_dir / "sightings"
            path = root / s.crop_name()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(s.crop_jpeg())
            tmp.replace(path)
            msg["crop_path"] = s.crop_name()
        except (OSError, ValueError) as e:  # no crop is no reason to lose the record
            log.warning("camera %s: sighting crop not written: %s", s.camera, e)
        try:
            self.w.redis.xadd(f"{self.w.cfg.bus.prefix}:{STREAM}", {"json": json.dumps(msg, ensure_ascii=False)},
                              maxlen=STREAM_MAXLEN, approximate=True)
        except Exception as e:  # the bus is down: keep it, try again
            log.warning("sightings: not sent (%s); retrying in %.0f s", e, RETRY_S)
            self.stop_event.wait(RETRY_S)
            return
        with self.cond:
            if self.queue and self.queue[0][1].sighting_id == s.sighting_id:
                self.queue.popleft()
        self.sent += 1
