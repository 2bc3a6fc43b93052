"""The stream worker's own threads, each a small class with its own stop event.

:class:`Loop` is one thread that runs :meth:`Loop.turn` until its stop event is set; a turn that
raises is logged (the traceback once, then a line now and then while it keeps failing) and the loop
goes on after ``retry_s``, so one failing loop never takes the others with it.  The worker
(:mod:`pipeline.runtime.worker`) only wires them: it builds its loops in one list, starts and stops
them; adding a subsystem is one class here and one line there.

The loops of a worker:

- :class:`DetectLoop` owns every camera's alert lifecycle: it takes the waiting frames of all
  cameras, runs them through the detector as one batch, then tracker → rules → alerts, and hands
  every update to the worker's publisher; it moves the alert clock of gated frames, ends the alerts
  of cameras that went quiet, runs the jobs other threads post to it, and stamps the heartbeat after
  every turn that completed (a supervisor restarts a worker whose detect loop died, hangs or keeps
  failing);
- :class:`StatusLoop` writes every camera's status every ``STATUS_PERIOD_S`` and soon after a
  state change;
- :class:`ConfigLoop` reloads the config on SIGHUP or when the file changes;
- :class:`LiveAnnounceLoop` (cluster) refreshes this worker's live seam in ``P:cluster:live``;
- :class:`ModelLoop` (only while the model cannot be loaded) tries again every ``model_retry_s``:
  a model file installed later heals the worker without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.analyse.detect import Detections

if TYPE_CHECKING:
    from pipeline.ingest.source import SampledFrame
    from pipeline.runtime.worker import CameraRuntime, Worker

log = logging.getLogger(__name__)
STATUS_PERIOD_S = 2.0
CONFIG_POLL_S = 2.0
LIVE_ANNOUNCE_S = 10.0  # cluster: the live seam's entry in P:cluster:live refreshed this often (a flushed Redis)
QUIET_TICK_S = 1.0  # a camera without frames this long still moves its alert clock (its alerts end)
TAKE_TIMEOUT_S = 0.5  # the detect loop waits at most this long for work, so its heartbeat keeps coming
FAILURE_LOG_EVERY = 60  # a loop that keeps failing says so once per this many failed turns


class Loop:
    """One thread running :meth:`turn` until :attr:`stop_event` is set.

    A subclass writes :meth:`turn` (one round of work, which may wait: on :attr:`stop_event`, or on
    its own event or condition, then :meth:`wake` must interrupt that wait) and sets :attr:`name`.
    """

    name = "loop"
    retry_s = 1.0  # pause after a failed turn

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.failures = 0  # consecutive failed turns
        self.turns = 0  # turns completed

    def turn(self) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        """Interrupt whatever :meth:`turn` waits on (called by :meth:`stop`)."""

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Ask the loop to end after its current turn (:meth:`join` waits for it)."""
        self.stop_event.set()
        self.wake()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run(self) -> None:
        """The thread's body."""
        while not self.stop_event.is_set():
            try:
                self.turn()
            except Exception:
                self.failures += 1
                if self.failures == 1:
                    log.exception("%s loop: a turn failed; it goes on in %.1f s", self.name, self.retry_s)
                elif self.failures % FAILURE_LOG_EVERY == 0:
                    log.error("%s loop: still failing (%d turns in a row)", self.name, self.failures)
                self.stop_event.wait(self.retry_s)
            else:
                if self.failures:
                    log.info("%s loop: working again after %d failed turns", self.name, self.failures)
                self.failures = 0
                self.turns += 1


class DetectLoop(Loop):
    """The alert lifecycle of every camera of a worker: detector batch → tracker → rules → alerts."""

    name = "detect"

    def __init__(self, worker: Worker):
        super().__init__()
        self.w = worker
        self.last_tick = time.monotonic()

    def wake(self) -> None:
        with self.w.wake:
            self.w.wake.notify_all()

    def take_work(self, timeout: float) -> tuple[list[SampledFrame], list[tuple[CameraRuntime, SampledFrame]],
                                                  list[Callable[[], object]]]:
        """Frames to detect (one per camera), gated frames to tick, and posted jobs."""
        w = self.w
        with w.wake:
            if not w.mailbox and not any(rt.pending or rt.gated_frame for rt in w.cameras.values()):
                w.wake.wait(timeout)
            batch: list[SampledFrame] = []
            gated: list[tuple[CameraRuntime, SampledFrame]] = []
            for rt in list(w.cameras.values()):
                if rt.pending:
                    batch.append(rt.pending.popleft())
                if rt.gated_frame is not None:
                    gated.append((rt, rt.gated_frame))
                    rt.gated_frame = None
            jobs = list(w.mailbox)
            w.mailbox.clear()
            return batch, gated, jobs

    def turn(self) -> None:
        w = self.w
        batch, gated, jobs = self.take_work(TAKE_TIMEOUT_S)
        for job in jobs:
            try:
                job()
            except Exception:
                log.exception("posted job failed")
        if batch:
            self.detect(batch)
        for rt, frame in gated:  # after the detections: a camera's clock never goes back
            if frame.capture_time > rt.analysed_t:
                rt.analysed_t = frame.capture_time
                w.end_alerts(rt, rt.analytics.skip(frame.capture_time), frame)
        if time.monotonic() - self.last_tick >= QUIET_TICK_S:  # end alerts of cameras that stopped sending frames
            self.last_tick = time.monotonic()
            now = time.time()
            for rt in list(w.cameras.values()):
                if now - rt.last_frame_time > QUIET_TICK_S:
                    w.end_alerts(rt, rt.analytics.tick(now))
        if w.on_heartbeat is not None:  # after a whole turn: a loop that keeps failing stops stamping it
            w.on_heartbeat()

    def detect(self, batch: list[SampledFrame]) -> None:
        w = self.w
        detector = w.detector
        if detector is None:  # the model is unavailable: nothing is analysed (frames are not queued then)
            return
        started = time.time()
        t0 = time.perf_counter()
        images = [f.image for f in batch]  # the BGR conversion happens here, for detected frames only
        t1 = time.perf_counter()
        try:
            results = detector.detect_batch(images)
        except Exception:
            log.exception("detector failed on a batch of %d", len(batch))
            results = [Detections.empty(detector.names) for _ in batch]
        per_frame_s = (time.perf_counter() - t1) / len(batch)
        convert_s = (t1 - t0) / len(batch)
        for frame, dets in zip(batch, results):
            rt = w.cameras.get(frame.camera_id)
            if rt is None:
                continue
            rt.detected += 1
            rt.inference_ms.append(per_frame_s * 1000)
            rt.stage_s["queue_wait"] += max(0.0, started - frame.capture_time)
            rt.stage_s["convert"] += convert_s
            rt.stage_s["detect"] += per_frame_s
            rt.analysed_t = max(rt.analysed_t, frame.capture_time)
            try:
                with rt.gate_lock:  # process() tells the motion gate what it found
                    result = rt.analytics.process(dets, frame.capture_time, frame.size)
            except Exception:
                rt.errors += 1
                log.exception("camera %s: analysis failed", rt.camera_id)
                continue
            rt.stage_s["track"] += result.track_s
            rt.stage_s["rules"] += result.rules_s
            if rt.sightings is not None:  # the cheap half here; plates, files and the bus on the sightings loop
                t2 = time.perf_counter()
                w.sightings_out.put(rt, rt.sightings.update(frame.image, result.objects, frame.capture_time))
                rt.stage_s["sightings"] += time.perf_counter() - t2
            for upd in result.updates:
                w.emit(rt, upd, frame)
            w.live.analysed(rt.camera_id, frame.pts, frame.capture_time, frame.size, result.objects)


class StatusLoop(Loop):
    """Every camera's status to the bus every ``STATUS_PERIOD_S``, and soon after a state change."""

    name = "status"

    def __init__(self, worker: Worker):
        super().__init__()
        self.w = worker
        self.last_rates = 0.0

    def wake(self) -> None:
        self.w.status_due.set()

    def turn(self) -> None:
        w = self.w
        w.status_due.wait(STATUS_PERIOD_S)
        w.status_due.clear()
        if self.stop_event.is_set():
            return  # the worker publishes the final statuses itself, once its cameras have stopped
        now = time.time()
        rates_due = now - self.last_rates >= STATUS_PERIOD_S * 0.9
        if rates_due:
            self.last_rates = now
        try:
            w.backlog = w.outbox.backlog()
        except Exception as e:
            log.warning("outbox backlog not read: %s", e)
        for rt in list(w.cameras.values()):
            if rates_due:
                rt.update_rates(now)
            w.publish_status(rt)


class ConfigLoop(Loop):
    """Reload the config on SIGHUP (the worker's ``reload_event``) or when the file changes on disk."""

    name = "config"

    def __init__(self, worker: Worker):
        super().__init__()
        self.w = worker
        self.mtime = self._mtime(None)

    def _mtime(self, default: float | None) -> float | None:
        path: Path | None = self.w.cfg.path
        try:
            return path.stat().st_mtime if path and path.exists() else None
        except OSError:
            return default

    def wake(self) -> None:
        self.w.reload_event.set()

    def turn(self) -> None:
        fired = self.w.reload_event.wait(CONFIG_POLL_S)
        if self.stop_event.is_set():
            return
        now_mtime = self._mtime(self.mtime)
        if fired or now_mtime != self.mtime:
            self.w.reload_event.clear()
            self.mtime = now_mtime
            try:
                self.w.reload()
            except Exception:
                log.exception("config reload failed; the running config stays")


class LiveAnnounceLoop(Loop):
    """Cluster: this worker's live seam in ``P:cluster:live``, refreshed every ``LIVE_ANNOUNCE_S``."""

    name = "live-announce"

    def __init__(self, worker: Worker):
        super().__init__()
        self.w = worker

    def turn(self) -> None:
        if not self.stop_event.wait(LIVE_ANNOUNCE_S):
            self.w.announce_live()


class ModelLoop(Loop):
    """While the worker has no detector: try to load the model again every ``model_retry_s``; ends once
    it loads (cameras kept recording meanwhile, and their analysis starts from then on)."""

    name = "model"

    def __init__(self, worker: Worker):
        super().__init__()
        self.w = worker

    def turn(self) -> None:
        if self.stop_event.wait(self.w.model_retry_s):
            return
        if self.w.detector is not None or self.w.load_detector():
            self.stop_event.set()
