"""Multi-object tracking by detection, in the style of ByteTrack.

Why a tracker at all: the detector sees every frame in isolation, but the
command room needs "the same person for the last 40 seconds", counts that do
not double when someone is briefly hidden, and events keyed by a stable id.

Why ByteTrack: it needs nothing but boxes and scores (no re-identification
network, so no extra GPU work per camera), and its second association stage
uses *low-score* detections to keep tracks alive through partial occlusion,
which is exactly when a plain score threshold would drop them.

Design choices, all documented where they live below:

* Time, not frames. Cameras are sampled at ~5 fps but frames get dropped and
  RTSP timestamps jitter, so every interval (prediction step, track expiry) is
  computed from the caller's timestamps in seconds.
* Motion model: a constant-velocity Kalman filter per track, on the box
  centre and size (cx, cy, w, h). At 5 fps an object can move a third of its
  width between frames; without prediction the IoU with its own next box is
  only ~0.5 and two people crossing would swap ids. The filter is run as four
  independent 2-state filters (position, velocity) because the full 8-state
  filter has block-diagonal matrices anyway, and the scalar form is both
  shorter and faster.
* Assignment: greedy, highest IoU first. With motion-predicted boxes the IoU
  matrix is nearly diagonal, so greedy and Hungarian agree in practice, and
  greedy keeps this module numpy-only.
* Noise is expressed as fractions of box size, so the tracker works the same
  with pixel or normalised coordinates.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

__all__ = ["Track", "TrackState", "Tracker", "TrackerConfig"]


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Tuning knobs; the defaults suit 5 fps surveillance video.

    Attributes:
        high_thresh: detections at or above this score take part in the first
            association stage. Below it a box is too unreliable to steer a
            track on its own, but may still continue one (see ``low_thresh``).
        low_thresh: detections below this are discarded outright; between
            ``low_thresh`` and ``high_thresh`` they are only used in the second
            stage, to keep an already-tracked object alive through occlusion.
        new_track_thresh: minimum score to start a new (tentative) track. Set
            a little above ``high_thresh`` (as ByteTrack does) so that marginal
            detections can extend tracks but not create them.
        match_iou: minimum IoU between a track's predicted box and a high-score
            detection (first stage, and tentative tracks). Low (0.2) because
            prediction at 5 fps is imperfect when objects turn or stop.
        low_match_iou: minimum IoU for the second stage. Stricter (0.5) because
            low-score boxes are often background clutter; only a box that sits
            right where the track is expected is trusted.
        max_age_s: how long a confirmed track that has lost its detection is
            kept for re-association, in seconds. 1.5 s bridges a person passing
            behind a pillar or a few missed detections without letting an id
            jump onto a different object that later walks into the same spot.
        min_hits: matched detections (in consecutive frames) needed before a
            track is confirmed and reported. 2 suppresses single-frame
            flicker at a cost of reporting new objects 1 frame (0.2 s) late.
            1 confirms on first sight. A high first score does not bypass
            this: false positives from detectors are very often confident.
        meas_std: detector box noise, as a fraction of box width (for cx, w)
            or height (for cy, h). Deliberately a little above typical
            detector jitter (3-5 %): it smooths the velocity of young tracks,
            whose noisy first velocity otherwise sends a briefly lost track
            off in the wrong direction.
        accel_std: how quickly an object may change its velocity, in box sizes
            per second squared (white-noise acceleration). On synthetic 5 fps
            scenes 1.0 sits between two failure modes: at 2.0 jitter leaks into
            the velocity and lost tracks drift away, at 0.25 a stop or a turn
            during a missed frame loses the track.
        size_accel_std: the same for box width and height, which change far
            more slowly than position (walking towards the camera).
        init_vel_std: prior uncertainty of the velocity of a new track, in box
            sizes per second; broad so the second detection sets the velocity.
    """

    high_thresh: float = 0.5
    low_thresh: float = 0.1
    new_track_thresh: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    max_age_s: float = 1.5
    min_hits: int = 2
    meas_std: float = 0.08
    accel_std: float = 1.0
    size_accel_std: float = 0.25
    init_vel_std: float = 2.0

    def __post_init__(self) -> None:
        """Reject settings that would silently break association."""
        if not 0.0 <= self.low_thresh <= self.high_thresh:
            raise ValueError("need 0 <= low_thresh <= high_thresh")
        if self.new_track_thresh < self.high_thresh:
            raise ValueError("new_track_thresh below high_thresh could start tracks no stage can match")
        # IoU 0 must never count as a match: class masking relies on it.
        if not (0.0 < self.match_iou <= 1.0 and 0.0 < self.low_match_iou <= 1.0):
            raise ValueError("match_iou and low_match_iou must be in (0, 1]")
        if self.max_age_s < 0:
            raise ValueError("max_age_s must be >= 0")
        if self.min_hits < 1:
            raise ValueError("min_hits must be >= 1")
        if min(self.meas_std, self.accel_std, self.size_accel_std, self.init_vel_std) <= 0:
            raise ValueError("noise parameters must be positive")


@dataclass(frozen=True, slots=True)
class Track:
    """Immutable snapshot of a confirmed track, safe to keep across frames.

    Attributes:
        track_id: unique per tracker, starting at 1, assigned on confirmation
            (so flicker never consumes ids and the numbers stay small).
        class_id: detector class; a track never changes class.
        box: last matched detection, (x1, y1, x2, y2). The raw detection
            rather than the filtered box, so overlays sit on what the detector
            saw.
        score: score of that detection.
        first_seen: timestamp of the first detection, including the tentative
            frames before confirmation.
        last_seen: timestamp of the last matched detection.
        hits: number of detections matched so far.
        det_index: index into the ``update`` input that this track matched in
            the most recent update, or -1 if it was not matched there.
    """

    track_id: int
    class_id: int
    box: tuple[float, float, float, float]
    score: float
    first_seen: float
    last_seen: float
    hits: int
    det_index: int


@dataclass(frozen=True)
class TrackState:
    """The motion model of every held track as of the last update: what a scheduler may predict.

    Why: the motion gate asks "is there anything the tracker cannot predict?" between
    detections, which needs each track's filtered box and velocity, not only the last raw
    detection.  Arrays, one row per track (tentative ones included, id 0):

    Attributes:
        t: time the state refers to (the last ``update``), or None before the first.
        track_id: (N,) ids; 0 for tentative tracks.
        class_id: (N,) detector classes.
        box: (N, 4) Kalman-filtered boxes x1 y1 x2 y2 at ``t``.
        velocity: (N, 4) how fast each box edge moves, per second (x1 y1 x2 y2).
        confirmed: (N,) true for confirmed tracks (tracked or lost).
        matched: (N,) true for tracks matched by a detection in the last update.
        first_seen: (N,) time of each track's first detection.
    """

    t: float | None
    track_id: np.ndarray
    class_id: np.ndarray
    box: np.ndarray
    velocity: np.ndarray
    confirmed: np.ndarray
    matched: np.ndarray
    first_seen: np.ndarray

    def __len__(self) -> int:
        return len(self.track_id)

    def predict(self, t: float) -> np.ndarray:
        """(N, 4) boxes extrapolated to ``t`` at constant velocity (what the tracker will expect)."""
        if self.t is None or len(self) == 0:
            return self.box.copy()
        return self.box + self.velocity * (t - self.t)


class _State(enum.Enum):
    TENTATIVE = enum.auto()  # seen, not yet min_hits: dropped on its first miss
    TRACKED = enum.auto()  # confirmed and matched in the last update
    LOST = enum.auto()  # confirmed, unmatched, waiting up to max_age_s


def _xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dtype=np.float64)


class _Tracklet:
    """Internal mutable track with its Kalman state.

    The state per coordinate k in (cx, cy, w, h) is [pos_k, vel_k] with
    covariance [[paa_k, pav_k], [pav_k, pvv_k]]; the four coordinates are
    independent, so everything below is elementwise on 4-vectors.
    """

    __slots__ = ("box", "class_id", "det_index", "first_seen", "hits", "last_seen",
                 "paa", "pav", "pos", "pvv", "score", "state", "t", "track_id", "vel")

    def __init__(
        self, box: np.ndarray, score: float, class_id: int, t: float, cfg: TrackerConfig, det_index: int
    ) -> None:
        self.pos = _xyxy_to_cxcywh(box)
        self.vel = np.zeros(4)
        scale = self._scale()
        self.paa = (cfg.meas_std * scale) ** 2
        self.pav = np.zeros(4)
        self.pvv = (cfg.init_vel_std * scale) ** 2
        self.t = t  # time the Kalman state refers to
        self.box = box
        self.score = score
        self.class_id = class_id
        self.first_seen = t
        self.last_seen = t
        self.hits = 1
        self.det_index = det_index
        self.track_id = 0  # assigned on confirmation
        self.state = _State.TENTATIVE

    def _scale(self) -> np.ndarray:
        """Per-coordinate size scale (w, h, w, h): noise is relative to the box."""
        w, h = max(self.pos[2], 1e-9), max(self.pos[3], 1e-9)
        return np.array([w, h, w, h])

    def predict(self, t: float, cfg: TrackerConfig) -> None:
        """Advance to time ``t`` under constant velocity.

        Process noise is the continuous white-noise-acceleration model, whose
        dt^3/3, dt^2/2, dt terms make a long gap (dropped frames) grow the
        uncertainty correctly instead of pretending it was one frame.
        """
        dt = t - self.t
        if dt <= 0:
            return
        self.t = t
        accel = np.array([cfg.accel_std, cfg.accel_std, cfg.size_accel_std, cfg.size_accel_std])
        q = (accel * self._scale()) ** 2
        self.pos = self.pos + self.vel * dt
        self.pos[2:] = np.maximum(self.pos[2:], 1e-9)  # a shrinking box must not invert
        self.paa = self.paa + 2 * dt * self.pav + dt * dt * self.pvv + q * dt**3 / 3
        self.pav = self.pav + dt * self.pvv + q * dt**2 / 2
        self.pvv = self.pvv + q * dt

    def correct(self, box: np.ndarray, score: float, t: float, det_index: int, cfg: TrackerConfig) -> None:
        """Fold in a matched detection (Kalman update with H = [1, 0])."""
        z = _xyxy_to_cxcywh(box)
        r = (cfg.meas_std * self._scale()) ** 2
        s = self.paa + r
        k_pos = self.paa / s
        k_vel = self.pav / s
        innov = z - self.pos
        self.pos = self.pos + k_pos * innov
        self.vel = self.vel + k_vel * innov
        self.pvv = self.pvv - k_vel * self.pav
        self.paa = self.paa * (1 - k_pos)
        self.pav = self.pav * (1 - k_pos)
        self.box = box
        self.score = score
        self.last_seen = t
        self.hits += 1
        self.det_index = det_index

    def mark_missed(self) -> None:
        """Enter the lost state; freeze size change so the box keeps its size.

        Position keeps extrapolating (a person behind a pillar keeps walking),
        but a size trend extrapolated over a second of occlusion mostly
        produces nonsense boxes.
        """
        self.state = _State.LOST
        self.det_index = -1
        self.vel[2:] = 0.0

    def predicted_xyxy(self) -> np.ndarray:
        cx, cy, w, h = self.pos
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def snapshot(self) -> Track:
        return Track(
            track_id=self.track_id,
            class_id=self.class_id,
            box=(float(self.box[0]), float(self.box[1]), float(self.box[2]), float(self.box[3])),
            score=self.score,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            hits=self.hits,
            det_index=self.det_index,
        )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _greedy_match(score: np.ndarray, min_score: float) -> list[tuple[int, int]]:
    """Pair rows with columns, best pair first, each used at most once."""
    rows, cols = np.nonzero(score >= min_score)
    if rows.size == 0:
        return []
    order = np.argsort(-score[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


class Tracker:
    """ByteTrack-style tracker; feed it one frame of detections at a time.

    Not thread-safe; use one instance per camera.
    """

    def __init__(self, cfg: TrackerConfig | None = None) -> None:
        self.cfg = cfg or TrackerConfig()
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart ids at 1 (e.g. after a stream reconnect)."""
        self._tracks: list[_Tracklet] = []
        self._next_id = 1
        self._last_t: float | None = None

    @property
    def active_tracks(self) -> list[Track]:
        """Confirmed tracks still held: matched last update, or lost but within max_age_s.

        Lost ones have ``det_index == -1``; compare ``last_seen`` with the
        current time to see how long they have been unseen.
        """
        return sorted(
            (tr.snapshot() for tr in self._tracks if tr.state is not _State.TENTATIVE),
            key=lambda tr: tr.track_id,
        )

    def state(self) -> TrackState:
        """Every held track's filtered box and velocity as of the last update (see `TrackState`).

        Expired tracks (unseen for over ``max_age_s``) are dropped at the next update only;
        callers comparing with a later time drop them by ``first_seen``/age themselves.
        """
        trs = self._tracks
        n = len(trs)
        box = np.array([tr.predicted_xyxy() for tr in trs], dtype=np.float64).reshape(n, 4)
        # centre (cx, cy) and size (w, h) velocities to edge velocities
        v = np.array([tr.vel for tr in trs], dtype=np.float64).reshape(n, 4)
        vel = np.stack([v[:, 0] - v[:, 2] / 2, v[:, 1] - v[:, 3] / 2,
                        v[:, 0] + v[:, 2] / 2, v[:, 1] + v[:, 3] / 2], axis=1) if n else v
        return TrackState(
            t=self._last_t,
            track_id=np.array([tr.track_id for tr in trs], dtype=np.int64),
            class_id=np.array([tr.class_id for tr in trs], dtype=np.int64),
            box=box, velocity=vel,
            confirmed=np.array([tr.state is not _State.TENTATIVE for tr in trs], dtype=bool),
            matched=np.array([tr.det_index >= 0 and tr.last_seen == self._last_t for tr in trs], dtype=bool),
            first_seen=np.array([tr.first_seen for tr in trs], dtype=np.float64),
        )

    def update(self, xyxy: np.ndarray, score: np.ndarray, class_id: np.ndarray, t: float) -> list[Track]:
        """Associate one frame's detections and return the confirmed tracks matched in it.

        Args:
            xyxy: (N, 4) boxes, x1 y1 x2 y2.
            score: (N,) detection confidences.
            class_id: (N,) integer classes; tracks only match their own class.
            t: frame timestamp in seconds, non-decreasing across calls.

        Returns:
            Snapshots of confirmed tracks that matched a detection of this
            frame, sorted by id; ``det_index`` maps each back to the input.
        """
        xyxy = np.asarray(xyxy, dtype=np.float64)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)  # accept np.empty(0) for "no detections"
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must be (N, 4), got {xyxy.shape}")
        score = np.asarray(score, dtype=np.float64).reshape(-1)
        class_id = np.asarray(class_id).reshape(-1).astype(np.int64)
        if not (len(xyxy) == len(score) == len(class_id)):
            raise ValueError(
                f"length mismatch: {len(xyxy)} boxes, {len(score)} scores, {len(class_id)} classes"
            )
        t = float(t)
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"timestamp went backwards: {t} < {self._last_t}")
        self._last_t = t
        cfg = self.cfg

        # Expire first: a track unseen for over max_age_s may not grab this frame's boxes.
        # By age, whatever the state, so a stalled stream (no update calls) also expires them.
        self._tracks = [tr for tr in self._tracks if t - tr.last_seen <= cfg.max_age_s]
        for tr in self._tracks:
            tr.predict(t, cfg)

        usable = (
            np.isfinite(xyxy).all(axis=1)
            & np.isfinite(score)
            & (xyxy[:, 2] > xyxy[:, 0])
            & (xyxy[:, 3] > xyxy[:, 1])
            & (score >= cfg.low_thresh)
        )
        high = np.flatnonzero(usable & (score >= cfg.high_thresh))
        low = np.flatnonzero(usable & (score < cfg.high_thresh))

        confirmed = [tr for tr in self._tracks if tr.state is not _State.TENTATIVE]
        tentative = [tr for tr in self._tracks if tr.state is _State.TENTATIVE]
        matched: set[int] = set()  # id() of tracklets matched this frame

        def associate(
            tracks: list[_Tracklet], dets: np.ndarray, min_iou: float
        ) -> tuple[list[_Tracklet], np.ndarray]:
            """Match, apply the Kalman update, return the leftovers on both sides."""
            if not tracks or dets.size == 0:
                return tracks, dets
            pred = np.stack([tr.predicted_xyxy() for tr in tracks])
            iou = _iou(pred, xyxy[dets])
            same_class = np.array([tr.class_id for tr in tracks])[:, None] == class_id[dets][None, :]
            pairs = _greedy_match(np.where(same_class, iou, 0.0), min_iou)
            for r, c in pairs:
                d = int(dets[c])
                tracks[r].correct(xyxy[d], float(score[d]), t, d, cfg)
                matched.add(id(tracks[r]))
            used_r = {r for r, _ in pairs}
            used_c = {c for _, c in pairs}
            rest_tracks = [tr for i, tr in enumerate(tracks) if i not in used_r]
            rest_dets = np.array([d for j, d in enumerate(dets.tolist()) if j not in used_c], dtype=np.int64)
            return rest_tracks, rest_dets

        # Stage 1: every confirmed track, tracked or lost, against confident boxes.
        rest, high = associate(confirmed, high, cfg.match_iou)
        # Stage 2: tracks seen last frame may continue on a weak box (occlusion);
        # lost tracks may not be revived by one, it is too likely clutter.
        associate([tr for tr in rest if tr.state is _State.TRACKED], low, cfg.low_match_iou)
        # Stage 3: tentative tracks get only what confirmed ones left over, so a
        # duplicate newborn track cannot steal an established object's box.
        associate(tentative, high, cfg.match_iou)

        survivors: list[_Tracklet] = []
        for tr in self._tracks:
            if id(tr) in matched:
                if tr.state is _State.TENTATIVE and tr.hits >= cfg.min_hits:
                    self._confirm(tr)
                elif tr.state is _State.LOST:
                    tr.state = _State.TRACKED
                survivors.append(tr)
            elif tr.state is not _State.TENTATIVE:  # tentative tracks die on their first miss
                tr.mark_missed()
                survivors.append(tr)
        for d in high.tolist():
            if score[d] >= cfg.new_track_thresh:
                tr = _Tracklet(xyxy[d], float(score[d]), int(class_id[d]), t, cfg, d)
                if cfg.min_hits <= 1:
                    self._confirm(tr)
                survivors.append(tr)
        self._tracks = survivors

        # Every TRACKED track was matched in this very update (unmatched ones became LOST).
        out = [tr.snapshot() for tr in survivors if tr.state is _State.TRACKED]
        return sorted(out, key=lambda tr: tr.track_id)

    def _confirm(self, tr: _Tracklet) -> None:
        tr.state = _State.TRACKED
        tr.track_id = self._next_id
        self._next_id += 1
