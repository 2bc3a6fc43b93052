"""Per-camera analytics after detection: tracker → rules → alert lifecycle.

Pure (no Redis, no I/O): the live worker and ``sharpeye replay`` run exactly this code, so
what an engineer tunes against recorded footage is what runs on the live camera.
One clock: every time is the frame's capture time in epoch seconds (the wall clock when the
live decoder produced the frame; replay makes it from START + the video's pts), so dwell times,
inertia, alert ends and the times in messages all agree.  A frame's ``pts`` (stream time) is kept
on the frame for the recorder and overlays, never used for analysis.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.analyse.alerts import AlertTracker, AlertUpdate
from pipeline.analyse.detect import Detections
from pipeline.analyse.motion import MotionGate, TrackView
from pipeline.analyse.rules import CameraRules, TrackedObject
from pipeline.analyse.track import Tracker
from pipeline.config import AlertsConfig, CameraConfig

_BORDER_EPS = 1e-3  # relative: a zone edge drawn "on" the border is within a pixel of it


def _on_border(seg: np.ndarray) -> bool:
    """Both ends of a relative segment on the same side of the picture (x or y at 0 or 1)."""
    return any(bool(np.all(np.abs(seg[:, k] - edge) <= _BORDER_EPS)) for k in (0, 1) for edge in (0.0, 1.0))


@dataclass
class FrameResult:
    objects: list[TrackedObject]
    updates: list[AlertUpdate]
    interesting: bool  # objects of a watched label are in view (keeps motion gating open)
    track_s: float = 0.0  # time spent in the tracker (per-stage timing)
    rules_s: float = 0.0  # time spent in the rules and the alert lifecycle


@dataclass
class CameraAnalytics:
    camera_id: str
    cam: CameraConfig
    alerts_cfg: AlertsConfig
    names: list[str]
    tz: dt.tzinfo | None = None
    tracker: Tracker = field(default_factory=Tracker)

    def __post_init__(self) -> None:
        self.rules = CameraRules(self.cam, tz=self.tz)
        self.alerts = AlertTracker(self.camera_id, self.alerts_cfg)
        self.watched = {lab for r in self.cam.effective_rules().values() for lab in r.labels}
        self.gate = MotionGate(self.cam.motion, self.cam.idle, self.cam.idle_enabled())
        self._last_t: float | None = None

    def wants_detection(self, image: np.ndarray, t: float, limited_range: bool = False) -> bool:
        """The motion gate's decision for a sampled frame (cheap: a downscaled grey difference).

        ``image`` is BGR or a grey/luma plane; ``limited_range`` for a video Y plane (16-235).
        """
        return self.gate.decide(image, t, limited_range).detect

    def skip(self, t: float) -> list[AlertUpdate]:
        """A sampled frame the gate kept from the detector: only time moves on for the alerts."""
        return self.alerts.update([], t, t)

    @property
    def idle(self) -> bool:
        """Nothing moved or was seen for idle.after_s: the source may decode keyframes only."""
        return self.gate.idle

    def process(self, dets: Detections, t: float, frame_wh: tuple[int, int]) -> FrameResult:
        if self._last_t is not None and t < self._last_t:
            self.tracker.reset()  # the clock went back (a replay restarted): tracks cannot carry over
        self._last_t = t
        t0 = time.perf_counter()
        tracks = self.tracker.update(dets.xyxy, dets.score, dets.class_id, t)
        t1 = time.perf_counter()
        objects = [TrackedObject(tr.track_id, self.names[tr.class_id], float(tr.score), tuple(tr.box))  # type: ignore[arg-type]
                   for tr in tracks]
        when = dt.datetime.fromtimestamp(t, tz=self.tz) if self.tz else dt.datetime.fromtimestamp(t).astimezone()
        hits = self.rules.evaluate(objects, t, frame_wh, when=when)
        updates = self.alerts.update(hits, t, t)
        interesting = any(o.label in self.watched for o in objects) or any(
            self.names[c] in self.watched and sc >= self.cam.min_score
            for c, sc in zip(dets.class_id.tolist(), dets.score.tolist()))
        self.gate.note_objects(interesting, t)
        self.gate.note_tracks(self.track_view(t, frame_wh))
        t2 = time.perf_counter()
        return FrameResult(objects, updates, interesting, t1 - t0, t2 - t1)

    def track_view(self, t: float, frame_wh: tuple[int, int]) -> TrackView:
        """What the tracker and the rules know now, as arrays for the motion gate.

        Every held track (any label: a tracked car moving as predicted explains its own motion),
        which of them a rule watches, which are settled or lost, the armed rules' lines and
        zone edges with the labels they apply to, and their pending timers.  Edges along the
        picture's border are left out: an object is never seen beyond it, so crossing one is
        leaving the picture (the track ends) or entering it (a new track, detected anyway).
        """
        st = self.tracker.state()
        labels = [self.names[c] for c in st.class_id.tolist()]
        watched = np.array([lab in self.watched for lab in labels], dtype=bool)
        settled = st.confirmed & (t - st.first_seen >= self.cam.motion.tracked_settle_s - 1e-6)
        segs: list[np.ndarray] = []
        bands: list[float] = []
        rule_labels: list[frozenset[str]] = []
        for w in self.rules.watches():
            for seg in w.segments:
                if not _on_border(seg):
                    segs.append(seg)
                    bands.append(w.band)
                    rule_labels.append(w.labels)
        segments = np.array(segs, dtype=np.float64).reshape(len(segs), 2, 2)
        applies = np.array([[lab in rl for rl in rule_labels] for lab in labels],
                           dtype=bool).reshape(len(labels), len(segs))
        return TrackView(t=t, frame_wh=frame_wh, valid_s=self.tracker.cfg.max_age_s, boxes=st.box,
                         velocity=st.velocity, watched=watched, settled=settled,
                         lost=st.confirmed & ~st.matched, segments=segments,
                         bands=np.array(bands, dtype=np.float64), applies=applies,
                         due=tuple(self.rules.due_times()))

    def tick(self, now: float) -> list[AlertUpdate]:
        """Advance the lifecycle without a frame (a camera that went quiet still ends its alerts)."""
        return self.alerts.update([], now, now)

    def flush(self, now: float) -> list[AlertUpdate]:
        return self.alerts.flush(now)
