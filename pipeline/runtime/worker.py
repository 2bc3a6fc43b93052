"""The stream worker: many cameras, one detector, one publisher.

Threads, and what each may do:

- one ``CameraSource`` thread per camera (PyAV decodes with the GIL released) runs the motion gate
  and queues: a frame the gate wants goes to a bounded per-camera slot (when the detector falls
  behind the oldest frame is dropped and counted, so memory never grows and the newest picture
  wins); a frame it turns away only marks the camera's alert clock.  It never publishes, never
  touches Redis, so a slow bus can never stall a camera (or leave a gap in its recording);
- the worker's own loops (:mod:`pipeline.runtime.loops`, one class each, each with its own stop
  event): the detect loop owns every camera's alert lifecycle (detector batch → tracker → rules →
  alerts, handed to the one :class:`~pipeline.publish.publisher.Publisher`) and publishes what the
  other threads post to it (a camera going offline), stamping ``on_heartbeat`` after every turn so
  a supervisor sees a dead, stuck or failing detect loop; the status loop writes every camera's
  :class:`~pipeline.publish.status.CameraStatus` (a status that stops being refreshed reads as
  offline); the config loop reloads on SIGHUP or when the file changes; the live-announce loop
  (cluster) and the model loop (while the model is unavailable) do one thing each.
  :meth:`Worker.loops` lists them: this module only wires them.

Recording never depends on the detector: when the model cannot be resolved or loaded the worker
still starts, its cameras record and stream live, analysis is skipped, every camera's status says
``detector: unavailable`` with the reason, and the model loop tries again every ``model_retry_s``.

A failure in one camera (its source, its rules) is logged and counted, never fatal to the others.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import logging
import os
import signal
import statistics
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.analyse.alerts import AlertUpdate
from pipeline.analyse.camera import CameraAnalytics
from pipeline.analyse.detect import Detector
from pipeline.analyse.models import model_classes
from pipeline.analyse.sightings import SightingsStage
from pipeline.analyse.tamper import TamperDetector, TamperEvent
from pipeline.cluster.coordinator import Coordinator
from pipeline.config import Config, load_config, reload_config
from pipeline.config.secrets import install_log_scrubber
from pipeline.ingest.reader import input_options, set_reader_nice
from pipeline.ingest.record_input import RecordInput
from pipeline.ingest.source import Backoff, CameraSource, SampledFrame, State
from pipeline.live import protocol as live_protocol
from pipeline.live.server import LiveService
from pipeline.publish import bus
from pipeline.publish.events import orphan_end_message
from pipeline.publish.fencing import FencedSink
from pipeline.publish.outbox import CameraBacklog, Outbox
from pipeline.publish.publisher import Publisher, PublishStats
from pipeline.publish.status import CameraStatus
from pipeline.record.announce import STREAM_MAXLEN as ANNOUNCE_MAXLEN
from pipeline.record.announce import SegmentAnnouncer
from pipeline.record.announce import stream_key as announce_stream
from pipeline.record.ring import PacketRing
from pipeline.record.segments import SegmentWriter
from pipeline.record.serve import SegmentServer, advertised_host, bind_address, key_path, load_or_create_key
from pipeline.runtime.loops import ConfigLoop, DetectLoop, LiveAnnounceLoop, Loop, ModelLoop, StatusLoop
from pipeline.runtime.sightings import SightingsLoop

log = logging.getLogger(__name__)
LIVE_STALE_S = 600.0  # an entry not refreshed this long is a dead worker's: removed by the next announcement
SLOT_DEPTH = 2
MODEL_RETRY_S = 30.0  # while the model cannot be loaded: how often the worker tries again


@dataclass
class CameraRuntime:
    """Everything the worker keeps for one camera."""

    camera_id: str
    source: CameraSource
    analytics: CameraAnalytics
    writer: SegmentWriter | None = None  # continuous recording of the record input
    ring: PacketRing | None = None  # the last recordings.pre_event_s of record packets, for pre-roll
    record_input: RecordInput | None = None  # a separate record URL (main stream), demuxed only
    tamper: TamperDetector | None = None  # dark/covered/blur/moved checks: source thread only (flushed once stopped)
    sightings: SightingsStage | None = None  # tracks → sighting records: detect thread only
    gate_lock: threading.Lock = field(default_factory=threading.Lock)  # motion gate: source vs detect thread
    pending: collections.deque[SampledFrame] = field(default_factory=lambda: collections.deque(maxlen=SLOT_DEPTH))
    gated_frame: SampledFrame | None = None  # newest frame the gate kept from the detector, not yet ticked
    analysed_t: float = 0.0  # capture time of the newest frame the detect thread analysed or ticked
    skipped: int = 0
    gated: int = 0
    detected: int = 0
    state_since: float = field(default_factory=time.time)
    was_streaming: bool = False
    inference_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=100))
    latency_s: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=100))
    errors: int = 0
    last_frame_time: float = 0.0
    rates: dict[str, float] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("gray", "gate", "queue_wait", "convert", "detect", "track", "rules", "tamper", "sightings"), 0.0))
    _last_counts: tuple[float, dict[str, int]] | None = None

    def counters(self) -> dict[str, int]:
        st = self.source.stats
        return {"packets": st.packets, "decoded": st.decoded, "sampled": st.sampled,
                "detected": self.detected, "skipped": self.skipped, "gated": self.gated}

    def update_rates(self, now: float) -> dict[str, float]:
        """Per-second rates since the previous call (input, decoded, detected, skipped fps)."""
        counts = self.counters()
        if self._last_counts is not None:
            t0, c0 = self._last_counts
            dt_s = max(1e-3, now - t0)
            self.rates = {f"{k}_fps": round((counts[k] - c0[k]) / dt_s, 2) for k in counts}
        self._last_counts = (now, counts)
        return self.rates

    def status(self, published: PublishStats, backlog: CameraBacklog,
               detector_error: str | None = None) -> CameraStatus:
        st = self.source.stats
        inf = list(self.inference_ms)
        lat = list(self.latency_s)
        w = self.writer.stats if self.writer else None
        r = self.rates
        return CameraStatus(
            camera=self.camera_id, state=self.source.state.value, since=self.state_since,
            width=st.width, height=st.height, packets=st.packets, decoded=st.decoded, sampled=st.sampled,
            detected=self.detected, skipped=self.skipped, gated=self.gated,
            packets_fps=r.get("packets_fps"), decoded_fps=r.get("decoded_fps"), sampled_fps=r.get("sampled_fps"),
            detected_fps=r.get("detected_fps"), skipped_fps=r.get("skipped_fps"), gated_fps=r.get("gated_fps"),
            queue_depth=len(self.pending), decode_errors=st.decode_errors, reconnects=st.reconnects,
            stalls=st.stalls, last_error=st.last_error, events=published.published,
            publish_errors=published.failed + published.snapshot_errors, errors=self.errors,
            outbox_depth=backlog.depth, outbox_age_s=backlog.age_s,
            recorded_bytes=w.bytes if w else None, recorded_segments=w.segments if w else None,
            record_gaps=w.gaps if w else None, disk_full=w.disk_full if w else None,
            record_errors=w.errors if w else None,
            record_state=self.record_input.state.value if self.record_input else None,
            pre_event_s=round(self.ring.duration, 1) if self.ring else None,
            idle=self.analytics.idle, idle_skipped=st.idle_skipped,
            inference_ms_p50=round(statistics.median(inf), 2) if inf else None,
            inference_ms_p99=round(float(np.percentile(inf, 99)), 2) if inf else None,
            alert_latency_s_p50=round(statistics.median(lat), 3) if lat else None,
            alert_latency_s_p99=round(float(np.percentile(lat, 99)), 3) if lat else None,
            last_frame_time=self.last_frame_time,
            detector="unavailable" if detector_error else "ok", detector_error=detector_error or "",
            stage_s={"decode": round(st.decode_s, 4), **{k: round(v, 4) for k, v in self.stage_s.items()},
                     "snapshot": round(published.snapshot_s, 4), "publish": round(published.send_s, 4)},
        )


def shard_of(camera_id: str, shards: int) -> int:
    """Stable camera → worker assignment (the same on every restart and in every process)."""
    return zlib.crc32(camera_id.encode()) % shards


class Worker:
    """The cameras of one shard of a config, with one detector."""

    def __init__(self, cfg: Config, redis_url: str, camera_ids: list[str] | None = None,
                 detector: Detector | None = None, shard: tuple[int, int] = (0, 1),
                 model_retry_s: float = MODEL_RETRY_S):
        self.cfg = cfg
        self.keys = bus.BusKeys(cfg.bus.prefix)
        self.redis = bus.connect(redis_url)
        set_reader_nice(cfg.reader_nice)  # readers below the detect thread (docs/benchmarks.md, the stall hunt)
        self.stop_event = threading.Event()  # the whole worker: run_forever returns; each loop has its own
        self.reload_event = threading.Event()
        self.status_due = threading.Event()  # a state changed: publish statuses now, not at the next period
        self.wake = threading.Condition()  # guards cameras, their pending slots and the mailbox
        self.mailbox: collections.deque[Callable[[], object]] = collections.deque()  # work for the detect loop
        self.cameras: dict[str, CameraRuntime] = {}
        self.started = False
        # no model (missing and not fetchable, or failing to load) is no reason not to record: the worker
        # runs without a detector, says why in every camera's status, and the model loop tries again
        self.detector: Detector | None = detector
        self.detector_error: str | None = None
        self.model_retry_s = model_retry_s
        self.class_names: list[str] = list(detector.names) if detector is not None else []
        if detector is None:
            self.load_detector()
        self.data_dir = cfg.data_path()
        # every message goes through the on-disk outbox: a slow or dead Redis never blocks a camera
        self.outbox = Outbox(self.data_dir / "outbox" / f"shard{shard[0]}.db", self.redis, self.keys,
                             cfg.bus.events_maxlen, cfg.bus.outbox_max_messages, cameras=lambda: list(self.cameras),
                             wait_replicas=cfg.bus.wait_replicas, wait_timeout_ms=cfg.bus.wait_timeout_ms)
        # cluster.enabled: cameras run only while this worker holds their lease (pipeline/cluster); every
        # message is stamped with the lease's fencing token, and refused once the lease is lost or fenced
        self.coordinator: Coordinator | None = None
        self._lease_lock = threading.RLock()  # the coordinator's apply thread vs config reloads
        if cfg.cluster.enabled:
            self.coordinator = Coordinator(self.redis, cfg.bus.prefix, cfg.cluster, lambda: self._mine(self.cfg),
                                           on_acquire=self._lease_acquired, on_release=self._lease_lost)
        sink = FencedSink(self.outbox, self.coordinator.fence) if self.coordinator else self.outbox
        self.publisher = Publisher(cfg, sink, self.data_dir)
        self.backlog: dict[str, CameraBacklog] = {}  # outbox depth per camera, read by the status loop
        self._status_failing = False
        self.only = set(camera_ids) if camera_ids else None
        self.shard = shard
        # called from the detect loop at least once a second: a supervisor that stops hearing it
        # restarts the worker (a dead, deadlocked or stopped detect thread is caught, not hidden)
        self.on_heartbeat: Callable[[], None] | None = None
        self.live = self._live_service(cfg, shard[0])  # live view of the cameras' own packets (docs/live.md)
        self.segment_server: SegmentServer | None = None  # cluster: finished segments for other machines
        self.announcer: SegmentAnnouncer | None = None  # cluster: the catalogue (docs/recording-cluster.md)
        if self.coordinator is not None and cfg.recordings.enabled:
            self.segment_server = SegmentServer(self.data_dir / cfg.recordings.dir, key_path(cfg),
                                                cfg.cluster.segment_listen, cfg.cluster.advertise_host, shard[0])
            key = announce_stream(cfg.bus.prefix)
            self.announcer = SegmentAnnouncer(
                lambda f: self.redis.xadd(key, f, maxlen=ANNOUNCE_MAXLEN, approximate=True), self.coordinator.id, "")
        for cid in self._mine(cfg) if self.coordinator is None else ():  # leased cameras start when acquired
            self._add_camera(cid)
        self.running: list[Loop] = []  # the loops started by start()
        self.sightings_out = SightingsLoop(self)  # plates, crop files and the bus, off the detect thread

    def loops(self, watch_config: bool) -> list[Loop]:
        """The worker's own threads, one small class each (pipeline/runtime/loops.py)."""
        return [
            DetectLoop(self),
            StatusLoop(self),
            *([ConfigLoop(self)] if watch_config and self.cfg.path is not None else []),
            *([LiveAnnounceLoop(self)] if self.coordinator is not None else []),
            *([ModelLoop(self)] if self.detector is None else []),
            self.sightings_out,
        ]

    @property
    def threads(self) -> list[threading.Thread]:
        return [loop.thread for loop in self.running if loop.thread is not None]

    # ---------------------------------------------------------------- the detector
    def load_detector(self) -> bool:
        """Build the config's detector; on failure keep running without one (the reason in every camera's
        status, one log line per new reason).  The class names still come from the model's manifest when
        it can be read, so the rules are checked as usual.  True once a detector is loaded."""
        cfg = self.cfg
        try:
            detector = Detector.from_config(cfg)
        except Exception as e:  # missing and not fetchable, a bad checksum, a file onnxruntime cannot load
            first = (str(e).splitlines() or [""])[0] or type(e).__name__  # one line, never a traceback
            error = first if first.startswith("model ") else f"model {cfg.model.name!r}: {first}"
            if error != self.detector_error:
                log.error("detector unavailable (%s): cameras record and stream live, analysis is off; "
                          "trying again every %.0f s", error, self.model_retry_s)
                self.detector_error = error
                self.status_due.set()
            if not self.class_names:
                try:
                    self.class_names = model_classes(cfg.model.name)
                except Exception:
                    self.class_names = []  # rules are checked again once the model loads
            return False
        names = list(detector.names)
        if self.detector_error is not None:
            log.info("detector loaded (model %r): analysis starts", cfg.model.name)
        self.class_names = names
        self.detector, self.detector_error = detector, None
        self._post(lambda: self._set_names(names))  # cameras built without it take the model's class names
        self.status_due.set()
        return True

    def _set_names(self, names: list[str]) -> None:
        for rt in list(self.cameras.values()):
            rt.analytics.names = names

    def _live_service(self, cfg: Config, index: int) -> LiveService:
        """One machine: loopback and the endpoint file's token.  Cluster: ``cluster.live_listen``, and
        requests signed with the site key for this worker's id taken too (dashboards of other machines)."""
        if self.coordinator is None:
            return LiveService(self.data_dir, index)
        key = None
        try:
            key = load_or_create_key(key_path(cfg))
        except (OSError, ValueError) as e:
            log.error("live view: site key %s unreadable (%s): no dashboard of another machine can watch",
                      key_path(cfg), e)
        host, port = bind_address(cfg.cluster.live_listen, index)
        return LiveService(self.data_dir, index, bind=(host, port),
                           advertise_host=advertised_host(host, cfg.cluster.advertise_host), key=key,
                           worker_id=self.coordinator.id)

    def announce_live(self, withdraw: bool = False) -> None:
        """Cluster: this worker's live seam in ``P:cluster:live`` (docs/events.md), refreshed every
        ``LIVE_ANNOUNCE_S``; entries not refreshed for ``LIVE_STALE_S`` (dead workers) are removed."""
        if self.coordinator is None or self.live.address is None:
            return
        key, me = live_protocol.cluster_key(self.cfg.bus.prefix), self.coordinator.id
        try:
            if withdraw:
                self.redis.hdel(key, me)
                return
            now = time.time()
            self.redis.hset(key, me, live_protocol.announcement(*self.live.address, self.shard[0], os.getpid(), now))
            stale = [w for w, raw in self.redis.hgetall(key).items()
                     if (json.loads(raw).get("at") or 0) < now - LIVE_STALE_S]
            if stale:
                self.redis.hdel(key, *stale)
        except Exception as e:  # Redis down: announced again at the next refresh
            log.warning("live view: not announced in Redis: %s", e)

    def _mine(self, cfg: Config) -> list[str]:
        index, count = self.shard
        return [cid for cid in cfg.enabled_cameras()
                if (self.only is None or cid in self.only)
                and (self.coordinator is not None or shard_of(cid, count) == index)]  # leases replace shards

    def _add_camera(self, cid: str) -> CameraRuntime:
        cam = self.cfg.cameras[cid]
        rec = self.cfg.recordings
        analytics = CameraAnalytics(cid, cam, self.cfg.camera_alerts(cid), self.class_names,
                                    self.cfg.tzinfo())
        writer = ring = record_input = None
        if rec.enabled and cam.record:
            writer = SegmentWriter(cid, self.data_dir / rec.dir, segment_s=rec.segment_s, fmt=rec.format)
            ring = PacketRing(rec.pre_event_s) if rec.pre_event_s > 0 else None
            if cam.record_source:
                url = cam.resolved(self.cfg.base_dir(), cam.record_source)
                opts = (input_options(cam.rtsp_transport, cam.watchdog.stall_s)
                        if not cam.is_file_source(cam.record_source) else {})
                record_input = RecordInput(cid, url, opts, writer, ring,
                                           backoff=Backoff(cam.watchdog.backoff_initial_s, cam.watchdog.backoff_max_s),
                                           open_timeout_s=cam.timeout_s, read_timeout_s=cam.watchdog.stall_s,
                                           loop=cam.loop)

        live = self.live.camera(cid, has_main=record_input is not None)
        live.recorder = writer.finish_soon if writer is not None else None  # an open alert's clip reaches now
        if record_input is not None:
            record_input.on_stored = live.record_packets  # the main stream, for an enlarged live tile

        def on_packet(packet: object, stream: object) -> None:
            stored = writer.feed(packet, stream) if shared_input else None  # type: ignore[union-attr, arg-type]
            for sp in stored or ():
                if ring is not None:
                    ring.add(sp)
            live.source_packet(packet, stream, src.pts_offset, stored)  # type: ignore[arg-type]

        shared_input = writer is not None and record_input is None
        src = CameraSource(cid, cam, self.cfg.base_dir(), on_frame=self._on_frame, on_state=self._on_state,
                           idle=lambda: analytics.idle,
                           on_packet=on_packet,  # the recorder (shared input) and live view
                           on_disconnect=writer.mark_gap if shared_input and writer else None)
        rt = CameraRuntime(cid, src, analytics, writer=writer, ring=ring, record_input=record_input,
                           tamper=TamperDetector(cid, cam.tamper) if cam.tamper.enabled else None,
                           sightings=SightingsStage(cid, cam.sightings, defer_plates=True, early_plates=True)
                           if cam.sightings.enabled else None)
        with self.wake:
            self.cameras[cid] = rt
        if self.started:
            self._start_camera(rt)
        return rt

    def _start_camera(self, rt: CameraRuntime) -> None:
        self.publish_status(rt)
        if rt.record_input:
            rt.record_input.start()
        rt.source.start()

    def _stop_camera(self, rt: CameraRuntime) -> None:
        rt.source.stop()
        if rt.record_input:
            rt.record_input.stop()
        if rt.writer:
            rt.writer.close()

    def _remove_camera(self, cid: str, forget: bool, lost: bool = False) -> None:
        with self.wake:
            rt = self.cameras.pop(cid)
        self._stop_camera(rt)
        self.live.drop(cid)
        if lost:  # its lease is gone: nothing more may be published; the next owner ends its open alerts
            return
        # its open alerts end on the detect thread, which owns every alert lifecycle
        self._post(lambda: self.end_alerts(rt, rt.analytics.flush(time.time())))
        if rt.sightings is not None:  # its tracks end: their sightings are written
            stage = rt.sightings
            self._post(lambda: self.sightings_out.put(rt, stage.flush(time.time())))
        if rt.tamper is not None:  # the source thread has stopped: nothing else touches it now
            ended = rt.tamper.flush(time.time())
            self._post(lambda: self._emit_tamper(rt, ended, None))
        if forget:
            self.redis.hdel(self.keys.cameras, cid)
        else:
            self.publish_status(rt)

    def _post(self, job: Callable[[], object]) -> None:
        """Run ``job`` on the detect thread (or now, when the worker is not running)."""
        if not self.started or self.stop_event.is_set():
            job()
            return
        with self.wake:
            self.mailbox.append(job)
            self.wake.notify()

    # ---------------------------------------------------------------- live reconfiguration
    def apply_config(self, new: Config) -> dict[str, list[str]]:
        """Reconcile running cameras with a new config; untouched cameras keep running as they are."""
        old = self.cfg
        if new.model != old.model:
            if self.detector is None:
                log.warning("model settings changed: tried at the next attempt to load the model")
            else:
                log.warning("model settings changed: they apply after a restart of the worker")
        if new.bus != old.bus or new.data_dir != old.data_dir:
            log.warning("bus or data_dir changed: they apply after a restart")
            new = new.model_copy(update={"bus": old.bus, "data_dir": old.data_dir})
        wanted = set(self._mine(new))
        if self.coordinator is not None:  # only leased cameras run; the coordinator releases removed ones
            wanted &= set(self.coordinator.owned())
        running = set(self.cameras)

        def changed(cid: str) -> bool:
            return (old.cameras[cid] != new.cameras[cid]
                    or old.camera_alerts(cid) != new.camera_alerts(cid)
                    or old.grid_cells.get(old.cameras[cid].grid_cell) != new.grid_cells.get(new.cameras[cid].grid_cell)
                    or old.timezone != new.timezone)

        removed = sorted(running - wanted)
        restarted = sorted(cid for cid in running & wanted if changed(cid))
        added = sorted(wanted - running)
        for cid in removed:
            self._remove_camera(cid, forget=cid not in new.cameras)
        for cid in restarted:
            self._remove_camera(cid, forget=False)
        self.cfg = new
        self.publisher.cfg = new
        for cid in restarted + added:
            self._add_camera(cid)
        if removed or restarted or added:
            log.info("config applied: added %s, changed %s, removed %s", added, restarted, removed)
        return {"added": added, "changed": restarted, "removed": removed}

    def reload(self) -> list[str]:
        """Re-read the config file; invalid cameras are refused with a clear error, the rest apply."""
        assert self.cfg.path is not None
        new, problems = reload_config(self.cfg.path, self.cfg, self.class_names)
        for line in problems:
            log.error("config reload: %s", line)
        if new is not self.cfg:
            with self._lease_lock:
                self.apply_config(new)
        try:
            self.redis.hset(self.keys.prefix_key("config"), f"shard{self.shard[0]}",
                            json.dumps({"time": time.time(), "problems": problems}))
        except Exception as e:
            log.warning("reload result not published: %s", e)
        return problems

    # ---------------------------------------------------------------- source threads: gate and queue
    def _on_frame(self, frame: SampledFrame) -> None:
        rt = self.cameras.get(frame.camera_id)
        if rt is None:
            return  # a camera being removed
        rt.last_frame_time = frame.capture_time
        analysed = self.detector is not None  # no model: the tamper checks only (recording is not on this path)
        if not analysed and rt.tamper is None:
            return
        t0 = time.perf_counter()
        luma, limited = frame.gray()
        t1 = time.perf_counter()
        wanted = False
        if analysed:
            with rt.gate_lock:
                wanted = rt.analytics.wants_detection(luma, frame.capture_time, limited)
        rt.stage_s["gray"] += t1 - t0
        t2 = time.perf_counter()
        rt.stage_s["gate"] += t2 - t1
        if rt.tamper is not None:  # on the luma already at hand: 0.16 ms a check (tests/unit/analyse/test_tamper.py)
            try:
                tampered = rt.tamper.check(luma, frame.capture_time, limited)
            except Exception:  # never let the checks stop the camera: off until it restarts
                rt.errors += 1
                rt.tamper, tampered = None, []
                log.exception("camera %s: tamper checks failed; off for this camera", rt.camera_id)
            rt.stage_s["tamper"] += time.perf_counter() - t2
            if tampered:  # published by the detect thread, like every message
                self._post(lambda: self._emit_tamper(rt, tampered, frame))
        if not analysed:
            return
        with self.wake:
            if wanted:
                if len(rt.pending) == rt.pending.maxlen:
                    rt.skipped += 1  # the oldest waiting frame is dropped by the deque
                rt.pending.append(frame)
            else:
                rt.gated += 1  # nothing new moved: the detector is spared, only the alert clock moves on
                rt.gated_frame = frame
            self.wake.notify()

    def _on_state(self, camera_id: str, state: State, detail: str) -> None:
        rt = self.cameras.get(camera_id)
        if rt is None:
            return
        rt.state_since = time.time()
        self.status_due.set()
        if state in (State.STALLED, State.BACKOFF) and rt.was_streaming:
            rt.was_streaming = False
            self._post(lambda: self.publisher.camera(camera_id, state.value, detail, online=False))
        elif state == State.STREAMING:
            if not rt.was_streaming and rt.source.stats.reconnects > 0:
                self._post(lambda: self.publisher.camera(camera_id, state.value, detail, online=True))
            rt.was_streaming = True

    # ---------------------------------------------------------------- status (written by the status loop)
    def status_of(self, rt: CameraRuntime) -> CameraStatus:
        return rt.status(self.publisher.stats.get(rt.camera_id) or PublishStats(),
                         self.backlog.get(rt.camera_id) or CameraBacklog(), self.detector_error)

    def publish_status(self, rt: CameraRuntime) -> None:
        if self.coordinator is not None and self.coordinator.fence(rt.camera_id) is None:
            return  # not (or no longer) this worker's camera: its owner publishes its status
        try:
            bus.set_camera_status(self.redis, self.keys, self.status_of(rt))
            if self._status_failing:
                self._status_failing = False
                log.info("statuses are published again")
        except Exception as e:
            if not self._status_failing:  # once per outage, not every camera every 2 s
                self._status_failing = True
                log.warning("statuses not published (alerts wait in the outbox): %s", e)

    # ---------------------------------------------------------------- messages (sent from the detect loop)
    def end_alerts(self, rt: CameraRuntime, updates: list[AlertUpdate], frame: SampledFrame | None = None) -> None:
        for upd in updates:
            self.emit(rt, upd, frame)

    def _emit_tamper(self, rt: CameraRuntime, events: list[TamperEvent], frame: SampledFrame | None) -> None:
        for ev in events:
            self.publisher.tamper(rt.camera_id, ev, frame)

    def emit(self, rt: CameraRuntime, upd: AlertUpdate, frame: SampledFrame | None) -> None:
        self.publisher.alert(rt.camera_id, upd, frame)
        if frame is not None:
            rt.latency_s.append(time.time() - frame.capture_time)

    # ---------------------------------------------------------------- camera leases (cluster.enabled)
    def _lease_acquired(self, cid: str, token: int) -> None:
        """This worker now owns ``cid``: end what a previous owner left open, then start its pipeline."""
        with self._lease_lock:
            if cid in self.cameras or cid not in self.cfg.cameras or self.stop_event.is_set():
                return
            try:
                left = [m for m in bus.open_alerts(self.redis, self.keys).values()
                        if (m.get("camera") or {}).get("id") == cid]
            except Exception as e:
                left = []
                log.warning("camera %s: open alerts of its previous owner not read: %s", cid, e)
            for last in left:  # stamped with the new token: consumers take it over the old owner's late messages
                self._post(functools.partial(self._send_orphan_end, cid, last))
            rt = self._add_camera(cid)
            if rt.writer is not None and self.coordinator is not None:
                rt.writer.index_extra = {"fence": self.coordinator.fence(cid)}
                rt.writer.on_segment = self.announcer.announce if self.announcer is not None else None
            log.info("camera %s: started under lease token %d", cid, token)

    def _send_orphan_end(self, cid: str, last: dict[str, Any]) -> None:
        try:
            self.publisher.sink.send(orphan_end_message(last, "camera moved"))
        except Exception as e:
            log.warning("camera %s: end of alert %s left open by its previous owner not published: %s",
                        cid, last.get("alert_id"), e)

    def _lease_lost(self, cid: str, reason: str) -> None:
        """``cid``'s lease is gone (handed over, lost, self-fenced): stop its pipeline, publish nothing more."""
        with self._lease_lock:
            if cid in self.cameras:
                self._remove_camera(cid, forget=False, lost=True)
                log.info("camera %s: stopped (%s)", cid, reason)

    # ---------------------------------------------------------------- lifecycle
    def start(self, watch_config: bool = False) -> None:
        self.started = True
        self.outbox.start()
        self.live.start()
        self.announce_live()
        if self.segment_server is not None and self.announcer is not None:
            try:
                self.announcer.address = self.segment_server.start()
            except OSError as e:  # other machines cannot fetch this one's segments; recording goes on
                log.error("segment server not started: %s", e)
            self.announcer.key = self.segment_server.key
            self.announcer.start()
        for rt in list(self.cameras.values()):
            self._start_camera(rt)
        if self.coordinator is not None:
            self.coordinator.start()
        self.running = self.loops(watch_config)
        for loop in self.running:
            loop.start()

    def stop(self) -> None:
        self.stop_event.set()
        for loop in self.running:
            loop.stop()
        for rt in list(self.cameras.values()):
            self._stop_camera(rt)
        self.announce_live(withdraw=True)
        self.live.stop()
        for loop in self.running:
            loop.join(5)
        with self.wake:  # the detect loop is gone: what was posted to it runs here
            jobs = list(self.mailbox)
            self.mailbox.clear()
        for job in jobs:
            job()
        now = time.time()
        for rt in list(self.cameras.values()):
            try:
                self.end_alerts(rt, rt.analytics.flush(now))
                if rt.tamper is not None:
                    self._emit_tamper(rt, rt.tamper.flush(now), None)
                self.publish_status(rt)
            except Exception as e:
                log.warning("camera %s: final messages not published: %s", rt.camera_id, e)
        if self.announcer is not None:  # the writers are closed: their last segments are queued
            self.announcer.stop()
        if self.segment_server is not None:
            self.segment_server.stop()
        if self.coordinator is not None:  # after the final messages (stamped while the leases were held)
            self.coordinator.on_release = None
            self.coordinator.stop(release=True)
        self.outbox.stop()

    def run_forever(self) -> None:
        self.start(watch_config=True)
        try:
            while not self.stop_event.wait(0.5):
                pass
        finally:
            self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sharpeye-worker", description="Run the stream workers of a config.")
    ap.add_argument("--config", required=True)
    bus_arg = ap.add_mutually_exclusive_group(required=True)
    bus_arg.add_argument("--redis", help="redis:// URL of the bus (shown by ps: use --redis-url-file if it "
                         "holds a password)")
    bus_arg.add_argument("--redis-url-file", help="a file holding the bus URL, so no password is on the "
                         "command line (sharpeye run writes one, mode 0600)")
    ap.add_argument("--heartbeat", help="file the detect loop stamps at most once a second; the supervisor "
                    "restarts a worker whose stamp goes stale")
    ap.add_argument("--camera", action="append", help="only these camera ids (repeatable)")
    ap.add_argument("--shard", default="0/1", help="I/N: run the cameras whose id hashes to I of N (default 0/1)")
    ap.add_argument("--worker-id", help="with cluster.enabled: this worker's id in leases and fences "
                    "(default cluster.worker_id, else <hostname>-<pid>)")
    ap.add_argument("--capacity", type=float, help="with cluster.enabled: this worker's weight in the rendezvous "
                    "hash, overriding cluster.capacity of the shared config (e.g. 4 on a GPU host)")
    ap.add_argument("--max-cameras", type=int, help="with cluster.enabled: most cameras this worker runs, "
                    "overriding cluster.max_cameras of the shared config")
    ap.add_argument("--advertise-host", help="with cluster.enabled: the host name or address other machines "
                    "dial for this worker's segment server and live seam, overriding cluster.advertise_host")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    index, count = (int(x) for x in args.shard.split("/"))
    cfg = load_config(args.config)
    worker_id = args.worker_id or cfg.cluster.worker_id
    if worker_id and not args.worker_id and count > 1:
        worker_id = f"{worker_id}-{index}"  # several worker processes of one machine: one id each
    host_only = {k: v for k, v in (("worker_id", worker_id), ("capacity", args.capacity),
                                   ("max_cameras", args.max_cameras), ("advertise_host", args.advertise_host))
                 if v}
    if host_only:  # per-host settings of a shared config, checked by the same schema as the file
        from pydantic import ValidationError

        from pipeline.config.schema import ClusterConfig
        try:
            cluster = ClusterConfig.model_validate({**cfg.cluster.model_dump(), **host_only})
        except ValidationError as e:
            ap.error("; ".join(f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']}"
                               for err in e.errors()))
        cfg = cfg.model_copy(update={"cluster": cluster})
    install_log_scrubber(cfg)  # logs and tracebacks of this process never show a secret
    if args.redis_url_file:
        from pipeline.runtime.redis_server import read_url_file
        url = read_url_file(args.redis_url_file)
    else:
        url = args.redis
    worker = Worker(cfg, url, args.camera, shard=(index, count))
    if args.heartbeat:
        from pipeline.runtime.heartbeat import Heartbeat
        worker.on_heartbeat = Heartbeat(args.heartbeat)

    def _stop(signum: int, _frame: Any) -> None:
        worker.stop_event.set()
        worker.reload_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, lambda *_: worker.reload_event.set())
    worker.run_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
