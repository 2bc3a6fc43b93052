"""The worker's sightings loop: reads deferred plates, writes crops, sends sightings on the bus.

The detect thread runs each camera's :class:`~pipeline.analyse.sightings.SightingsStage` (cheap:
a crop, a sharpness and a colour measure at most every ``sample_s`` per track) and hands what it
emits to :meth:`SightingsLoop.put`; everything slow happens here, off the detect thread:

* a vehicle's plate views (cameras with ``sightings.plates`` on) are read, a few hundred ms each on a
  CPU (the reader is loaded at the first one, once per worker);
* the best view is written as a JPEG under ``<data_dir>/sightings/`` (beside the snapshots);
* the record goes on ``{prefix}:sightings`` (capped), which the archiver stores in the history
  database (:class:`history.sightings.SightingArchiver`).

A full queue (the bus or the disk far behind) drops the oldest record and counts it; a record that
cannot be sent (Redis down) is kept and retried, up to the queue's bound.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from pipeline.analyse.sightings import STREAM, STREAM_MAXLEN, PlateReading, Sighting, complete
from pipeline.runtime.loops import Loop

if TYPE_CHECKING:
    from pipeline.runtime.worker import CameraRuntime, Worker

log = logging.getLogger(__name__)
QUEUE_MAX = 5000
RETRY_S = 1.0


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

    def _reader(self) -> PlateReading:
        if self.reader is None:
            from pipeline.analyse.plates import PlateReader

            self.reader = PlateReader(threads=1)
        return self.reader

    def turn(self) -> None:
        with self.cond:
            if not self.queue:
                self.cond.wait(0.5)
            if not self.queue:
                return
            cell, s = self.queue[0]
        if s.pending is not None:
            self.plate_reads += len(s.pending.views)
            s = complete(s, self._reader())
            with self.cond:
                if self.queue and self.queue[0][1].sighting_id == s.sighting_id:
                    self.queue[0] = (cell, s)  # read once even if sending fails below
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
