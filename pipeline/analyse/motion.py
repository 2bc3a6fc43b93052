"""Motion gating: a cheap check that decides whether the detector runs on a sampled frame.

The detector costs 15-20 ms per frame on CPU; the check below costs well under 1 ms, so skipping
the detector on still frames is what lets one machine carry many cameras.

How the check works, and why:

* The picture is shrunk to ``cfg.width`` by nearest-neighbour sampling (in effect a stride
  subsample).  Measured on this machine, ``INTER_AREA`` costs 0.54 ms from 768x432 and 0.58 ms
  from 1920x1080 (1.1 ms from BGR, converting first), nearest costs 0.025 ms from grey and
  0.07-0.08 ms from BGR (shrink first, then convert the small picture).  The Gaussian blur that
  follows averages the sensor noise that area averaging would have removed.  Shrinking BGR first
  and converting afterwards picks exactly the pixels a grey input would, so a BGR frame and its
  grey plane give the same decision.  A decoder's Y plane is usually limited ("TV") range,
  16-235, where the same change of light is 219/255 as large as in BGR: pass
  ``limited_range=True`` with it and the threshold is scaled to match (on the real test clips the
  unscaled threshold changed 6-34 % of the gate's decisions, the scaled one 1 %).
* The grey picture is compared against a running float background
  (``cv2.accumulateWeighted`` with ``cfg.alpha``); pixels differing by ``cfg.threshold`` or more
  count as changed, pixels under a motion mask never do.
* Motion is ``changed share of the unmasked pixels >= cfg.min_area``.
* No background yet (first frame, or a new resolution): report motion, so a camera's first frame is
  always detected.  Over ``SCENE_CHANGE`` of the pixels changing at once (lights switched on,
  auto-exposure, the camera moved): adopt the new picture as background at once and report motion
  once, instead of reporting motion for the many seconds the running average would need.

`MotionGate` turns those results into "detect or skip" decisions.  In a busy scene every sampled
frame has motion, so "is there motion?" is the wrong question there: while the tracker holds
tracks, the gate asks "is there anything the tracker cannot predict?" (change outside the
tracks' predicted boxes, tracks too young or just lost, a track about to reach a line or a zone
edge, a rule timer about to fire) and otherwise refreshes the tracks every
``tracked_interval_s``.  Without tracks it keeps a hold after motion, a periodic detection so a
still object is never lost, a hold while the detector still sees objects, and the "idle" signal
that lets the source decode keyframes only.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from pipeline.config import IdleConfig, MotionConfig

SCENE_CHANGE = 0.6
"""Share of unmasked pixels changing at once that is taken as a new scene, not as motion."""

BLUR_KSIZE = (5, 5)
"""Gaussian kernel on the small picture: hides sensor noise and compression speckle."""

_DILATE = np.ones((5, 5), np.uint8)  # joins the pieces of one object into one region
_EPS = 1e-6  # sampled timestamps like 0.2 * 10 land just under 2.0

Box = tuple[int, int, int, int]
Reset = Literal["first", "resolution", "scene"]
Reason = Literal["motion", "hold", "periodic", "first", "disabled", "still", "tracked", "tracked_wait",
                 "fruitless", "fruitless_wait", "unsettled", "lost", "approach"]


@dataclass(frozen=True)
class MotionResult:
    """The outcome of one motion check.

    ``boxes`` are changed regions in source pixels (x1, y1, x2, y2), filled only when ``moving``;
    ``reset`` says why the background was (re)started on this frame, if it was.  ``fresh`` is the
    small picture's mask (255 = changed) against the *previous checked frame* rather than the
    background: it shows what moved since then and nothing of the "ghosts" a slow background
    keeps where somebody stood; None on a reset.
    """

    moving: bool
    fraction: float
    boxes: list[Box] = field(default_factory=list)
    ms: float = 0.0
    reset: Reset | None = None
    fresh: np.ndarray | None = field(default=None, repr=False)


def _merge_boxes(boxes: list[list[int]]) -> list[list[int]]:
    """Union overlapping or touching boxes until none overlap (few boxes: quadratic is fine)."""
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        out: list[list[int]] = []
        for b in boxes:
            for o in out:
                if b[0] <= o[2] and o[0] <= b[2] and b[1] <= o[3] and o[1] <= b[3]:
                    o[0], o[1] = min(o[0], b[0]), min(o[1], b[1])
                    o[2], o[3] = max(o[2], b[2]), max(o[3], b[3])
                    merged = True
                    break
            else:
                out.append(list(b))
        boxes = out
    return boxes


class MotionDetector:
    """Frame difference against a running background on a shrunk grey picture (pure, no I/O)."""

    def __init__(self, cfg: MotionConfig) -> None:
        self.cfg = cfg
        self._src_hw: tuple[int, int] | None = None
        self._small_wh: tuple[int, int] = (0, 0)
        self._bg: np.ndarray | None = None  # float32, small size
        self._prev: np.ndarray | None = None  # the previous checked frame, small grey
        self._masks: dict[tuple[int, int], tuple[np.ndarray | None, int]] = {}
        # (full range, limited range): a BGR step of 25 is a Y step of 21.5, so >= 22 in Y.
        self._thresholds = (cfg.threshold, max(1, math.ceil(cfg.threshold * 219 / 255 - 1e-9)))

    def reset(self) -> None:
        """Forget the background: the next frame reports motion and starts a new one."""
        self._bg = None
        self._prev = None
        self._src_hw = None

    def _allowed(self, wh: tuple[int, int]) -> tuple[np.ndarray | None, int]:
        """The counted-pixel mask (255 = counts) for a small size, rasterised once and cached.

        None means no masks: skip the AND altogether.
        """
        hit = self._masks.get(wh)
        if hit is None:
            w, h = wh
            if not self.cfg.masks:
                hit = (None, w * h)
            else:
                allowed = np.full((h, w), 255, np.uint8)
                shift = 4  # fixed-point sub-pixel corners: small masks keep their shape
                polys = [np.round(np.asarray(p, np.float64) * (w, h) * (1 << shift)).astype(np.int32)
                         for p in self.cfg.masks]
                cv2.fillPoly(allowed, polys, 0, lineType=cv2.LINE_8, shift=shift)
                hit = (allowed, cv2.countNonZero(allowed))
            self._masks[wh] = hit
        return hit

    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        """Shrink (nearest, i.e. a stride subsample), convert to grey if needed, and blur."""
        small = cv2.resize(image, self._small_wh, interpolation=cv2.INTER_NEAREST)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(small, BLUR_KSIZE, 0)

    def update(self, image: np.ndarray, t: float, limited_range: bool = False) -> MotionResult:
        """Check one frame (BGR ``(H, W, 3)`` or grey / Y plane ``(H, W)``, uint8, any size).

        ``limited_range``: the grey input is a Y plane in limited range (16-235; PyAV's
        ``frame.color_range`` is not 2/JPEG); ignored for BGR.  A Y plane with padded rows can be
        passed as a view: ``np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:h, :w]``.
        ``t`` is accepted for symmetry with the gate; the background moves per checked frame.
        """
        t0 = time.perf_counter()
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"motion: expected (H, W) grey or (H, W, 3) BGR, got shape {image.shape}")
        hw = (int(image.shape[0]), int(image.shape[1]))
        reset: Reset | None = None
        if hw != self._src_hw:
            reset = "first" if self._src_hw is None else "resolution"
            self._src_hw = hw
            w = min(self.cfg.width, hw[1])
            self._small_wh = (w, max(1, round(hw[0] * w / hw[1])))
            self._bg = None
        grey = self._small_grey(image)
        allowed, n_allowed = self._allowed(self._small_wh)

        prev, self._prev = self._prev, grey
        if self._bg is None or prev is None:
            self._bg = grey.astype(np.float32)
            return self._whole_frame(reset or "first", t0)

        threshold = self._thresholds[1 if limited_range and image.ndim == 2 else 0]
        changed = self._changed(cv2.absdiff(grey, cv2.convertScaleAbs(self._bg)), threshold, allowed)
        fraction = cv2.countNonZero(changed) / n_allowed if n_allowed else 0.0

        if fraction > SCENE_CHANGE:
            self._bg = grey.astype(np.float32)
            return self._whole_frame("scene", t0, fraction)

        cv2.accumulateWeighted(grey, self._bg, self.cfg.alpha)
        moving = n_allowed > 0 and fraction >= self.cfg.min_area
        boxes = self._boxes(changed) if moving else []
        fresh = self._changed(cv2.absdiff(grey, prev), threshold, allowed)
        return MotionResult(moving, fraction, boxes, (time.perf_counter() - t0) * 1000.0, fresh=fresh)

    @staticmethod
    def _changed(diff: np.ndarray, threshold: int, allowed: np.ndarray | None) -> np.ndarray:
        _, changed = cv2.threshold(diff, threshold - 1, 255, cv2.THRESH_BINARY)
        return changed if allowed is None else cv2.bitwise_and(changed, allowed)

    def unexplained(self, result: MotionResult, boxes: np.ndarray) -> float:
        """Share of the counted pixels that changed since the previous checked frame outside ``boxes``.

        ``boxes`` (N, 4) in source pixels: where the tracker expects its objects, so change
        inside them is explained.  A reset frame (no previous frame) is all unexplained: 1.0.
        """
        if result.fresh is None or self._src_hw is None:
            return 1.0
        _, n_allowed = self._allowed(self._small_wh)
        if not n_allowed:
            return 0.0
        rest = result.fresh.copy()
        if len(boxes):
            sh, sw = self._src_hw
            fx, fy = self._small_wh[0] / sw, self._small_wh[1] / sh
            for x1, y1, x2, y2 in np.asarray(boxes, np.float64).tolist():
                c1, r1 = max(0, int(x1 * fx)), max(0, int(y1 * fy))
                c2, r2 = int(np.ceil(x2 * fx)), int(np.ceil(y2 * fy))
                if c2 > c1 and r2 > r1:
                    rest[r1:r2, c1:c2] = 0
        return cv2.countNonZero(rest) / n_allowed

    def _whole_frame(self, reset: Reset, t0: float, fraction: float = 1.0) -> MotionResult:
        assert self._src_hw is not None
        h, w = self._src_hw
        return MotionResult(True, fraction, [(0, 0, w, h)], (time.perf_counter() - t0) * 1000.0, reset)

    def _boxes(self, changed: np.ndarray) -> list[Box]:
        """Bounding boxes of the dilated changed pixels, merged, in source pixels."""
        # External contours: 10x cheaper here than connectedComponentsWithStats (0.02 vs 0.2 ms).
        contours, _ = cv2.findContours(cv2.dilate(changed, _DILATE), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        rects = [[x, y, x + bw, y + bh] for x, y, bw, bh in map(cv2.boundingRect, contours)]
        assert self._src_hw is not None
        sh, sw = self._src_hw
        fx, fy = sw / self._small_wh[0], sh / self._small_wh[1]
        return [(int(x1 * fx), int(y1 * fy), min(sw, int(np.ceil(x2 * fx))), min(sh, int(np.ceil(y2 * fy))))
                for x1, y1, x2, y2 in _merge_boxes(rects)]


@dataclass(frozen=True)
class GateDecision:
    """Whether to run the detector on this frame, and why."""

    detect: bool
    reason: Reason
    motion: MotionResult | None


def _empty(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float64)


@dataclass(frozen=True)
class TrackView:
    """What the tracker and the rules knew after the last detection: the gate's model of the scene.

    Built by `CameraAnalytics` after every detection (pure arrays; boxes in source pixels,
    times in seconds).  Between detections the gate extrapolates it to the time of each sampled
    frame, so it can tell motion the tracker predicts from motion it cannot.

    Attributes:
        t: time of the detection the boxes and velocities refer to.
        frame_wh: frame size the boxes are in (lines and zones are relative to it).
        valid_s: how long after ``t`` the tracks still exist (the tracker's max_age_s).
        boxes: (N, 4) filtered boxes of every held track, any label, x1 y1 x2 y2.
        velocity: (N, 4) how fast each box edge moves, pixels per second.
        watched: (N,) true where a rule watches the track's label.
        settled: (N,) true for confirmed tracks followed for ``tracked_settle_s`` or longer.
        lost: (N,) true for confirmed tracks no detection matched on the last detected frame.
        segments: (K, 2, 2) lines and zone edges of the armed rules, relative 0-1.
        bands: (K,) half-width of each segment's ambiguous band (a line's debounce; 0 for edges).
        applies: (N, K) true where segment k's rule watches track i's label.
        due: times at which pending rule timers fire (dwell, crowding, intrusion inertia).
    """

    t: float
    frame_wh: tuple[int, int]
    valid_s: float = 1.5
    boxes: np.ndarray = field(default_factory=lambda: _empty(0, 4))
    velocity: np.ndarray = field(default_factory=lambda: _empty(0, 4))
    watched: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    settled: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    lost: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    segments: np.ndarray = field(default_factory=lambda: _empty(0, 2, 2))
    bands: np.ndarray = field(default_factory=lambda: _empty(0))
    applies: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    due: tuple[float, ...] = ()

    def predict(self, t: float) -> np.ndarray:
        """(N, 4) boxes at ``t``, at the velocities of the last detection."""
        return self.boxes + self.velocity * (t - self.t)

    def in_picture(self, t: float) -> np.ndarray:
        """(N,) true where at least half of the box predicted at ``t`` lies inside the picture."""
        box = self.predict(t)
        w, h = self.frame_wh
        inside = (np.clip(box[:, 2], 0, w) - np.clip(box[:, 0], 0, w)) * (np.clip(box[:, 3], 0, h)
                                                                          - np.clip(box[:, 1], 0, h))
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
        return inside >= 0.5 * np.maximum(area, 1e-9)


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points ``p`` from segments a-b (broadcast over leading axes, last axis 2)."""
    ab = b - a
    den = np.sum(ab * ab, axis=-1)
    u = np.clip(np.sum((p - a) * ab, axis=-1) / np.where(den > 0, den, 1.0), 0.0, 1.0)
    return np.hypot(*np.moveaxis(p - (a + u[..., None] * ab), -1, 0))


def segment_distance(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """(N, K) shortest distances between segments p0-p1 (N, 2) and q0-q1 (K, 2); 0 where they cross.

    Used to ask "does this anchor's path over the next second pass near that line or edge?";
    a path of length 0 (a still object) is a point.
    """
    p0, p1 = p0[:, None, :], p1[:, None, :]
    q0, q1 = q0[None, :, :], q1[None, :, :]

    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])

    crossing = ((cross(p0, p1, q0) * cross(p0, p1, q1) < 0) & (cross(q0, q1, p0) * cross(q0, q1, p1) < 0))
    d = np.minimum.reduce([_point_segment_distance(p0, q0, q1), _point_segment_distance(p1, q0, q1),
                           _point_segment_distance(q0, p0, p1), _point_segment_distance(q1, p0, p1)])
    return np.where(crossing, 0.0, d)


class MotionGate:
    """Decides per sampled frame whether the detector runs.

    The question is "is there anything the tracker cannot predict?".  Order of the rules:
    motion gating off → detect ('disabled'); no background yet (first frame, new resolution)
    → detect ('first').  Then, while the tracker holds tracks (`note_tracks`, refreshed after
    every detection), on each sampled frame:

    * a watched track that is unconfirmed or younger than ``tracked_settle_s`` → detect
      ('unsettled': its velocity is not known yet); a watched track the last detection missed,
      with change inside its predicted box → detect ('lost': something moves where the tracker
      expects an object it no longer sees; a lost track with nothing moving in its box has left,
      or stands still and is looked for at the tracked rate; one predicted mostly outside the
      picture has walked out of it);
    * change since the previous checked frame outside every track's predicted box (grown by
      ``track_margin``) covering ``min_area`` or more → detect ('motion': somebody new, or a
      track that did not move as predicted);
    * a watched track predicted to come within ``approach_margin`` of a line (plus its debounce)
      or a zone edge within ``lookahead_s``, or a rule timer due (loitering dwell, crowding,
      intrusion inertia) → detect ('approach');
    * else the tracks move as predicted: detect every ``tracked_interval_s`` ('tracked',
      'tracked_wait' between).

    Without tracks: motion → detect; while the detector still sees objects, or within ``hold_s``
    of the last motion or sighting → detect ('hold'); no detection for ``periodic_s`` → detect
    ('periodic'); else skip ('still').  Motion the detector keeps finding nothing in is
    detected every ``tracked_interval_s`` ('fruitless').  A first frame is not motion: it does
    not start a hold, so a still camera settles at the periodic rate at once.

    Idle mode: ``idle.enabled`` when set, else ``idle_enabled`` (the worker's default: true when
    the camera has a separate record stream).
    """

    def __init__(self, cfg: MotionConfig, idle: IdleConfig | None = None, idle_enabled: bool = False) -> None:
        self.cfg = cfg
        self.idle_cfg = idle or IdleConfig()
        enabled = self.idle_cfg.enabled if self.idle_cfg.enabled is not None else idle_enabled
        self.idle_enabled = bool(enabled) and cfg.enabled  # idle needs the motion check to wake up
        self.detector = MotionDetector(cfg)
        self.counts: Counter[str] = Counter()
        self._last_t: float | None = None
        self._last_motion: float | None = None  # last motion or sighting: anchors the hold
        self._last_active: float | None = None  # the same, or a (re)start: anchors idle
        self._last_detect: float | None = None
        self._objects = False
        self._view: TrackView | None = None  # the tracker's picture after the last detection
        self._fruitless = 0  # detections in a row that found nothing of interest

    # ----------------------------------------------------------------- counters

    @property
    def checked(self) -> int:
        return sum(self.counts.values())

    @property
    def skipped(self) -> int:
        return self.counts["still"] + self.counts["tracked_wait"] + self.counts["fruitless_wait"]

    @property
    def detected(self) -> int:
        return self.checked - self.skipped

    def stats(self) -> dict[str, int]:
        """Counters for metrics: checked, detected, skipped and one entry per reason."""
        return {"checked": self.checked, "detected": self.detected, "skipped": self.skipped,
                **{f"reason_{k}": v for k, v in sorted(self.counts.items())}}

    # ----------------------------------------------------------------- decisions

    def _active(self, t: float, motion: bool) -> None:
        self._last_active = t if self._last_active is None else max(self._last_active, t)
        if motion:
            self._last_motion = t if self._last_motion is None else max(self._last_motion, t)

    def decide(self, image: np.ndarray, t: float, limited_range: bool = False) -> GateDecision:
        """Check one sampled frame taken at ``t`` seconds and say whether to run the detector.

        ``image`` and ``limited_range`` are as for `MotionDetector.update`.
        """
        if self._last_t is not None and t < self._last_t:
            # The clock jumped back (reconnect, restarted stream): timers in the "future" would
            # suppress detection, so restart them as on a first frame.
            self._last_motion = self._last_detect = None
            self._last_active = t
            self._view = None
        self._last_t = t
        motion: MotionResult | None = None
        reason: Reason
        if not self.cfg.enabled:
            reason = "disabled"
        else:
            motion = self.detector.update(image, t, limited_range)
            view = self._view
            if view is not None and t - view.t > view.valid_s + _EPS:
                view = self._view = None  # every track it knew of has expired
            if motion.reset in ("first", "resolution"):
                self._active(t, motion=False)
                reason = "first"
            elif (view is not None and motion.reset is None and self.cfg.tracked_interval_s > 0
                  and (view.watched.any() or (motion.moving and len(view.boxes) > 0))):
                reason = self._scheduled(view, motion, t)
            elif (motion.moving and self.cfg.fruitless_after and self._fruitless >= self.cfg.fruitless_after
                  and self.cfg.tracked_interval_s > 0):
                # motion the detector keeps finding nothing in (cars the model cannot see from
                # above, trees, rain): look at it every tracked_interval_s, not every frame
                self._active(t, motion=True)
                reason = "fruitless" if self._tracked_due(t) else "fruitless_wait"
            elif motion.moving:
                self._active(t, motion=True)
                reason = "motion"
            elif self._objects or (self._last_motion is not None
                                   and t - self._last_motion <= self.cfg.hold_s + _EPS):
                reason = "hold"
            elif self._last_detect is None or t - self._last_detect >= self.cfg.periodic_s - _EPS:
                reason = "periodic"
            else:
                reason = "still"
        self.counts[reason] += 1
        detect = reason not in ("still", "tracked_wait", "fruitless_wait")
        if detect:
            self._last_detect = t
        return GateDecision(detect, reason, motion)

    def _scheduled(self, view: TrackView, motion: MotionResult, t: float) -> Reason:
        """The decision while the tracker holds tracks: detect what it cannot predict."""
        self._active(t, motion=motion.moving)
        watched = view.watched
        if (watched & ~view.settled).any():
            return "unsettled"
        expected = self.expected_boxes(view, t)
        lost = watched & view.lost & view.in_picture(t)
        if lost.any() and self._moving_in(motion, expected[lost]):
            return "lost"
        if self.detector.unexplained(motion, expected) >= self.cfg.min_area:
            self._active(t, motion=True)
            if self.cfg.fruitless_after and self._fruitless >= self.cfg.fruitless_after:
                return "fruitless" if self._tracked_due(t) else "fruitless_wait"
            return "motion"
        if self.approaching(view, t):
            return "approach"
        return "tracked" if self._tracked_due(t) else "tracked_wait"

    def _moving_in(self, motion: MotionResult, boxes: np.ndarray) -> bool:
        """Change of ``min_area`` or more inside any of ``boxes`` since the previous checked frame."""
        frame = self.detector.unexplained(motion, np.empty((0, 4)))
        return any(frame - self.detector.unexplained(motion, b[None]) >= self.cfg.min_area for b in boxes)

    def _tracked_due(self, t: float) -> bool:
        return self._last_detect is None or t - self._last_detect >= self.cfg.tracked_interval_s - _EPS

    def expected_boxes(self, view: TrackView, t: float) -> np.ndarray:
        """Where the tracks' change between the previous checked frame and ``t`` may lie.

        Each track's box at the last detection joined with its box predicted at ``t`` (the
        path it swept), grown by ``track_margin`` of its size on every side: limbs, shadows
        and a prediction that is a little off stay explained.
        """
        if not len(view.boxes):
            return view.boxes
        now = view.predict(t)
        lo = np.minimum(view.boxes[:, :2], now[:, :2])
        hi = np.maximum(view.boxes[:, 2:], now[:, 2:])
        size = np.abs(now[:, 2:] - now[:, :2])
        grow = size * self.cfg.track_margin
        return np.concatenate([lo - grow, hi + grow], axis=1)

    def approaching(self, view: TrackView, t: float) -> bool:
        """A watched track about to reach a line or zone edge, or a rule timer due.

        "About to": within ``lookahead_s`` of ``t`` at the track's velocity of the last
        detection; "reach": come within the line's debounce plus ``approach_margin`` (relative
        units) of the line or edge, and at least half the margin nearer than now (an anchor
        standing by an edge jitters, it does not approach), or still walking inside a line's
        debounce band (a crossing counts once the far side's band is left).  Such moments decide
        alerts, so they get every sampled frame.  A timer is due from its time on (the first sampled frame at or
        after it is detected, so it fires as it would without gating).
        """
        ahead = self.cfg.lookahead_s
        if ahead <= 0:
            return False
        if any(d <= t + _EPS for d in view.due):
            return True  # detect on the first sampled frame a timer is due: it fires as without gating
        sel = view.watched & ~view.lost
        if not len(view.segments) or not sel.any():
            return False
        w, h = view.frame_wh
        box = view.predict(t)[sel]
        vel = view.velocity[sel]
        scale = np.array([1.0 / w, 1.0 / h])
        anchor = np.stack([(box[:, 0] + box[:, 2]) / 2, box[:, 3]], axis=1) * scale
        step = np.stack([(vel[:, 0] + vel[:, 2]) / 2, vel[:, 3]], axis=1) * scale * ahead
        margin = self.cfg.approach_margin
        bands = view.bands[None, :]
        path = segment_distance(anchor, anchor + step, view.segments[:, 0], view.segments[:, 1])
        now = _point_segment_distance(anchor[:, None, :], view.segments[None, :, 0], view.segments[None, :, 1])
        moving = (np.hypot(step[:, 0], step[:, 1]) >= margin / 2)[:, None]
        # near, and getting nearer (someone standing by an edge is no news, someone walking at it
        # is), or walking inside a line's debounce band, where the crossing is not counted yet
        near = (path <= bands + margin) & ((path < now - margin / 2) | ((now < bands) & moving))
        return bool((near & view.applies[sel]).any())

    def note_tracks(self, view: TrackView | None) -> None:
        """What the tracker holds after a detection (None: forget it, e.g. after a reset).

        Tracks that move as predicted are then refreshed every ``tracked_interval_s``;
        anything they do not explain goes to the detector at once (see the class docstring).
        """
        self._view = view

    def note_objects(self, present: bool, t: float) -> None:
        """Tell the gate whether the detector saw objects of interest on the frame at ``t``.

        While it does and no track explains them, every sampled frame is detected (a person
        standing still in a zone is followed until they leave, even once the background has
        absorbed them), the hold runs from the last sighting (one missed detection does not
        drop to the periodic rate), and the camera does not go idle.
        """
        self._objects = present
        if present:
            self._active(t, motion=True)
            self._fruitless = 0
        else:
            self._fruitless += 1

    @property
    def idle(self) -> bool:
        """True when idle mode is on and nothing moved, nor was seen, for ``idle.after_s``."""
        if not self.idle_enabled or self._objects or self._last_t is None or self._last_active is None:
            return False
        return self._last_t - self._last_active >= self.idle_cfg.after_s - _EPS
