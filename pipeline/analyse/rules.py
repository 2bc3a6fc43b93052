"""Rule evaluation: which tracked objects satisfy which of a camera's rules, frame by frame.

This module is pure (no I/O, no Redis) so every decision that can page an officer is
unit-testable with synthetic tracks.  The flow per frame is:

1. object masks drop detections anchored in masked areas (a poster, a parked car's reflection);
2. each rule filters by label, score and box size, then applies its own geometry and timing;
3. rules outside their schedule produce nothing and forget their per-track state, so an
   object already inside a zone when the rule arms is judged afresh.

Every object is judged by one *anchor*: the bottom-centre of its box (roughly where a person
stands), converted to relative 0-1 coordinates so zones and lines drawn once survive a change
of stream resolution.  Durations (dwell, inertia, for_s) use the frame's capture time `t`, the one
clock of the analysis (see pipeline.analyse.camera); a clock that goes back resets the state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.config.schema import (
    WEEKDAYS,
    CameraConfig,
    CrowdingRule,
    IntrusionRule,
    LineConfig,
    LineCrossingRule,
    LoiteringRule,
    PresenceRule,
    ScheduleWindow,
)

# A track missing from a frame (detector miss, brief occlusion) or briefly outside a zone keeps
# its dwell/inertia/crowd timing for this long; at ~5 fps that is about five frames.
MISS_TOLERANCE_S = 1.0
# How long a line's side memory of a vanished track is kept: long enough to bridge a tracker
# re-acquiring the same id after an occlusion right at the line, short enough to stay bounded.
LINE_MEMORY_S = 10.0
# A crossing counts when its crossing point lies on segment A-B extended by this much
# (relative units) at each end, so a person clipping the very end of the tripwire still counts.
SEGMENT_TOLERANCE = 0.02
# The frame clock going back by more than this (a looping demo file, a reconnect) resets all state.
CLOCK_RESET_S = 1.0


@dataclass(frozen=True)
class TrackedObject:
    """One tracked detection on one frame; `box` is x1, y1, x2, y2 in source pixels."""

    track_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]


@dataclass
class RuleHit:
    """A rule satisfied on this frame, with the objects that satisfy it right now.

    For line_crossing the objects are those that just crossed; for crowding every object
    counted in the zone.
    """

    rule_id: str
    kind: str
    severity: str
    objects: list[TrackedObject]


# --------------------------------------------------------------------------- geometry


class Polygon:
    """A closed polygon in relative coordinates with a vectorised point-in-polygon test."""

    def __init__(self, points: Sequence[Sequence[float]]):
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] != 2:
            raise ValueError("a polygon needs at least 3 [x, y] points")
        self._x, self._y = pts[:, 0], pts[:, 1]
        # edge i runs from vertex i-1 to vertex i, so the outline is closed
        self._xp, self._yp = np.roll(self._x, 1), np.roll(self._y, 1)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Boolean per point (N, 2): inside by the even-odd ray-casting rule.

        A horizontal ray goes from each point to +x; an odd number of edge crossings means
        inside.  Points exactly on an edge may go either way, which is irrelevant for
        detections that move by pixels between frames.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        px, py = pts[:, 0:1], pts[:, 1:2]  # (N, 1) against (E,) edges broadcasts to (N, E)
        straddles = (self._y > py) != (self._yp > py)
        dy = self._yp - self._y
        safe_dy = np.where(dy == 0, 1.0, dy)  # horizontal edges never straddle; avoid 0/0
        x_cross = self._x + (py - self._y) * (self._xp - self._x) / safe_dy
        hits = straddles & (px < x_cross)
        return (np.count_nonzero(hits, axis=1) % 2) == 1

    def contains_point(self, x: float, y: float) -> bool:
        return bool(self.contains(np.array([[x, y]]))[0])


class Tripwire:
    """Line A→B in relative coordinates: signed distance and position along the segment.

    In image coordinates (y grows downwards) a positive signed distance is on the RIGHT of
    someone standing at A looking towards B, negative on the left.
    """

    def __init__(self, line: LineConfig):
        self.a = np.asarray(line.a, dtype=np.float64)
        self.b = np.asarray(line.b, dtype=np.float64)
        self.ab = self.b - self.a
        self.length = float(np.hypot(*self.ab))
        self.direction = line.direction

    def signed_distance(self, p: np.ndarray) -> float:
        """Perpendicular distance of `p` from the infinite line; > 0 right, < 0 left."""
        rel = p - self.a
        return float(self.ab[0] * rel[1] - self.ab[1] * rel[0]) / self.length

    def along(self, p: np.ndarray) -> float:
        """Position of the projection of `p` on the line: 0 at A, 1 at B."""
        return float(np.dot(p - self.a, self.ab)) / (self.length ** 2)

    def within_segment(self, u: float) -> bool:
        tol = SEGMENT_TOLERANCE / self.length
        return -tol <= u <= 1.0 + tol

    def counts(self, from_side: int, to_side: int) -> bool:
        """Does a move from side `from_side` to `to_side` (-1 left, +1 right) count?"""
        if self.direction == "both":
            return True
        if self.direction == "left_to_right":
            return from_side < 0 < to_side
        return to_side < 0 < from_side


def anchor(box: tuple[float, float, float, float], frame_wh: tuple[int, int]) -> tuple[float, float]:
    """Bottom-centre of a pixel box, relative to the frame: where a person's feet are."""
    w, h = frame_wh
    x1, _, x2, y2 = box
    return ((x1 + x2) / 2.0 / w, y2 / h)


# --------------------------------------------------------------------------- schedules


def schedule_armed(windows: Sequence[ScheduleWindow] | None, when: dt.datetime) -> bool:
    """True when `when` (local wall clock) falls in one of the weekly windows.

    No windows means always armed.  A window whose end is before its start runs across
    midnight and belongs to the day it starts: ``days: [mon]`` 22:00-06:00 arms from Monday
    22:00 to Tuesday 06:00.  Ends are exclusive.
    """
    if not windows:
        return True
    minute = when.hour * 60 + when.minute + when.second / 60.0 + when.microsecond / 60e6
    today = WEEKDAYS[when.weekday()]
    yesterday = WEEKDAYS[(when.weekday() - 1) % 7]
    for w in windows:
        start, end = w.minutes()
        if end > start:
            if today in w.days and start <= minute < end:
                return True
        else:  # across midnight: the evening part today, the morning part from yesterday's window
            if today in w.days and minute >= start:
                return True
            if yesterday in w.days and minute < end:
                return True
    return False


# --------------------------------------------------------------------------- rule evaluators


AnyRule = PresenceRule | IntrusionRule | LineCrossingRule | LoiteringRule | CrowdingRule


@dataclass
class _Candidate:
    """An object that passed the masks, with its relative anchor and relative box size."""

    obj: TrackedObject
    anchor: np.ndarray
    rel_w: float
    rel_h: float


class _RuleEval:
    """Filters shared by every rule kind; subclasses add geometry and timing."""

    def __init__(self, rule_id: str, rule: AnyRule, camera: CameraConfig):
        self.rule_id = rule_id
        self.rule = rule
        self.kind: str = rule.kind
        self.labels = frozenset(rule.labels)
        self.min_score = rule.min_score if rule.min_score is not None else camera.min_score
        self.min_w, self.min_h = rule.min_box

    def accepts(self, c: _Candidate) -> bool:
        o = c.obj
        return (o.label in self.labels and o.score >= self.min_score
                and c.rel_w >= self.min_w and c.rel_h >= self.min_h)

    def step(self, cands: list[_Candidate], t: float) -> list[TrackedObject]:
        """The objects satisfying the rule at time `t` (cands are already filtered)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all per-track state (rule disarmed, stream restarted)."""


class _Presence(_RuleEval):
    def step(self, cands: list[_Candidate], t: float) -> list[TrackedObject]:
        return [c.obj for c in cands]


class _ZoneEval(_RuleEval):
    def __init__(self, rule_id: str, rule: IntrusionRule | LoiteringRule | CrowdingRule, camera: CameraConfig):
        super().__init__(rule_id, rule, camera)
        zone_name = rule.zone
        if zone_name not in camera.zones:
            raise ValueError(f"rule {rule_id!r}: zone {zone_name!r} is not defined on this camera")
        self.zone = Polygon(camera.zones[zone_name].polygon)

    def inside(self, cands: list[_Candidate]) -> list[_Candidate]:
        if not cands:
            return []
        mask = self.zone.contains(np.stack([c.anchor for c in cands]))
        return [c for c, m in zip(cands, mask) if m]


@dataclass
class _Streak:
    count: int
    last_t: float


class _Intrusion(_ZoneEval):
    """Inside the zone for `inertia` consecutive observations of the track.

    Seen outside resets the streak; a track missing for up to MISS_TOLERANCE_S keeps it (a
    detector miss is not leaving), longer and it starts again.
    """

    def __init__(self, rule_id: str, rule: IntrusionRule, camera: CameraConfig):
        super().__init__(rule_id, rule, camera)
        self.inertia = rule.inertia
        self.streaks: dict[int, _Streak] = {}

    def step(self, cands: list[_Candidate], t: float) -> list[TrackedObject]:
        inside = self.inside(cands)
        inside_ids = {c.obj.track_id for c in inside}
        for c in cands:
            if c.obj.track_id not in inside_ids:
                self.streaks.pop(c.obj.track_id, None)
        hits = []
        for c in inside:
            s = self.streaks.get(c.obj.track_id)
            if s is None or t - s.last_t > MISS_TOLERANCE_S:
                s = self.streaks[c.obj.track_id] = _Streak(0, t)
            s.count += 1
            s.last_t = t
            if s.count >= self.inertia:
                hits.append(c.obj)
        self.streaks = {k: s for k, s in self.streaks.items() if t - s.last_t <= MISS_TOLERANCE_S}
        return hits

    def reset(self) -> None:
        self.streaks.clear()


@dataclass
class _Dwell:
    entered: float
    last_inside: float


class _Loitering(_ZoneEval):
    """A track inside the zone for `dwell_s`, gaps (missed or outside) up to MISS_TOLERANCE_S."""

    def __init__(self, rule_id: str, rule: LoiteringRule, camera: CameraConfig):
        super().__init__(rule_id, rule, camera)
        self.dwell_s = rule.dwell_s
        self.dwells: dict[int, _Dwell] = {}

    def step(self, cands: list[_Candidate], t: float) -> list[TrackedObject]:
        hits = []
        for c in self.inside(cands):
            d = self.dwells.get(c.obj.track_id)
            if d is None or t - d.last_inside > MISS_TOLERANCE_S:
                d = self.dwells[c.obj.track_id] = _Dwell(t, t)
            d.last_inside = t
            if t - d.entered >= self.dwell_s:
                hits.append(c.obj)
        self.dwells = {k: d for k, d in self.dwells.items() if t - d.last_inside <= MISS_TOLERANCE_S}
        return hits

    def reset(self) -> None:
        self.dwells.clear()


class _Crowding(_ZoneEval):
    """More than `max_count` objects in the zone for `for_s`; dips up to MISS_TOLERANCE_S bridged.

    The bridge keeps one missed detection in a crowd of exactly max_count+1 from restarting
    the timer; during a dip the rule still produces no hit.
    """

    def __init__(self, rule_id: str, rule: CrowdingRule, camera: CameraConfig):
        super().__init__(rule_id, rule, camera)
        self.max_count = rule.max_count
        self.for_s = rule.for_s
        self.above_since: float | None = None
        self.last_above: float | None = None

    def step(self, cands: list[_Candidate], t: float) -> list[TrackedObject]:
        inside = self.inside(cands)
        if len(inside) <= self.max_count:
            if self.last_above is not None and t - self.last_above > MISS_TOLERANCE_S:
                self.reset()
            return []
        if self.above_since is None or self.last_above is None or t - self.last_above > MISS_TOLERANCE_S:
            self.above_since = t
        self.last_above = t
        return [c.obj for c in inside] if t - self.above_since >= self.for_s else []

    def reset(self) -> None:
        self.above_since = self.last_above = None


@dataclass
class _Side:
    side: int = 0                 # confirmed side: -1 left, +1 right, 0 not yet known
    prev_d: float | None = None   # signed distance on the previous observation
    prev_p: np.ndarray | None = None
    cross_u: float | None = None  # where along A-B the anchor last passed the line
    last_t: float = 0.0


class _LineCrossing(_RuleEval):
    """A track moving from one side to the other, with hysteresis.

    A side is confirmed only at |distance| >= debounce; a crossing is a change of confirmed
    side, so an anchor jittering inside the ±debounce band never counts, and a track counts
    once per real crossing.  The crossing point (where the path passed the infinite line)
    must lie on segment A-B, so walking past the end of a tripwire does not count.
    """

    def __init__(self, rule_id: str, rule: LineCrossingRule, camera: CameraConfig):
        super().__init__(rule_id, rule, camera)
        if rule.line not in camera.lines:
            raise ValueError(f"rule {rule_id!r}: line {rule.line!r} is not defined on this camera")
        self.wire = Tripwire(camera.lines[rule.line])
        self.debounce = rule.debounce
        self.sides: dict[int, _Side] = {}

    def _observe(self, st: _Side, p: np.ndarray, t: float) -> bool:
        d = self.wire.signed_distance(p)
        if st.prev_d is not None and st.prev_p is not None and (st.prev_d < 0) != (d < 0):
            frac = st.prev_d / (st.prev_d - d)  # signs differ, so the denominator is not 0
            st.cross_u = self.wire.along(st.prev_p + frac * (p - st.prev_p))
        st.prev_d, st.prev_p, st.last_t = d, p, t
        if abs(d) < self.debounce or d == 0:
            return False
        side = 1 if d > 0 else -1
        crossed = (st.side != 0 and side != st.side and st.cross_u is not None
                   and self.wire.within_segment(st.cross_u) and self.wire.counts(st.side, side))
        st.side = side
        return crossed

    def step(self, cands: list[_Candidate], t: float) -> list[TrackedObject]:
        hits = []
        for c in cands:
            st = self.sides.setdefault(c.obj.track_id, _Side(last_t=t))
            if self._observe(st, c.anchor, t):
                hits.append(c.obj)
        self.sides = {k: s for k, s in self.sides.items() if t - s.last_t <= LINE_MEMORY_S}
        return hits

    def reset(self) -> None:
        self.sides.clear()


_EVALUATORS: dict[type, type[_RuleEval]] = {
    PresenceRule: _Presence,
    IntrusionRule: _Intrusion,
    LineCrossingRule: _LineCrossing,
    LoiteringRule: _Loitering,
    CrowdingRule: _Crowding,
}


# --------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class Watch:
    """Where one armed rule's state can change, for a scheduler that decides when to look.

    ``segments`` (K, 2, 2) are in relative coordinates: the line A-B of a line-crossing rule, or
    the edges of a zone's polygon; an object's anchor passing one of them (or moving inside
    ``band`` of it: a line's debounce) may change what the rule reports.
    """

    rule_id: str
    kind: str
    labels: frozenset[str]
    segments: np.ndarray
    band: float


def _watch(ev: _RuleEval) -> Watch | None:
    if isinstance(ev, _LineCrossing):
        seg = np.stack([ev.wire.a, ev.wire.b])[None]
        return Watch(ev.rule_id, ev.kind, ev.labels, seg, ev.debounce)
    if isinstance(ev, _ZoneEval):
        z = ev.zone
        seg = np.stack([np.stack([z._xp, z._yp], axis=1), np.stack([z._x, z._y], axis=1)], axis=1)
        return Watch(ev.rule_id, ev.kind, ev.labels, seg, 0.0)
    return None  # presence: no geometry, nothing to approach


@dataclass
class _Armed:
    evaluator: _RuleEval
    armed: bool = field(default=True)


class CameraRules:
    """All rules of one camera with their per-track state; call `evaluate` once per frame.

    `tz` is the time zone schedules are read in when `evaluate` is not given `when`
    (default: the machine's local zone).  Unknown zone or line names raise ValueError here,
    not on the first frame.
    """

    def __init__(self, camera: CameraConfig, tz: dt.tzinfo | None = None):
        self.camera = camera
        self.tz = tz
        self._masks = [Polygon(m) for m in camera.masks]
        self._rules: list[_Armed] = []
        for rule_id, rule in camera.effective_rules().items():
            cls = _EVALUATORS.get(type(rule))
            if cls is None:
                raise ValueError(f"rule {rule_id!r}: unsupported kind {getattr(rule, 'kind', '?')!r}")
            self._rules.append(_Armed(cls(rule_id, rule, camera)))
        self._needs_clock = any(r.evaluator.rule.schedule for r in self._rules)
        self._last_t: float | None = None

    @property
    def rule_ids(self) -> list[str]:
        return [r.evaluator.rule_id for r in self._rules]

    def watches(self) -> list[Watch]:
        """Lines and zone edges of the armed rules (accessor for the detector scheduler)."""
        return [w for r in self._rules if r.armed and (w := _watch(r.evaluator)) is not None]

    def due_times(self) -> list[float]:
        """When pending timers of the armed rules fire (accessor for the detector scheduler).

        A loitering dwell not yet reached fires at entered + dwell_s, a crowd above max_count at
        above_since + for_s; an intrusion streak short of its inertia needs more observations
        now, so it is due at its last observation.  Times already past mean "due now".
        """
        out: list[float] = []
        for r in self._rules:
            if not r.armed:
                continue
            ev = r.evaluator
            if isinstance(ev, _Loitering):
                out += [d.entered + ev.dwell_s for d in ev.dwells.values() if d.last_inside - d.entered < ev.dwell_s]
            elif isinstance(ev, _Crowding):
                if ev.above_since is not None and ev.last_above is not None and \
                        ev.last_above - ev.above_since < ev.for_s:
                    out.append(ev.above_since + ev.for_s)
            elif isinstance(ev, _Intrusion):
                out += [st.last_t for st in ev.streaks.values() if st.count < ev.inertia]
        return out

    def reset(self) -> None:
        """Forget every track (the stream restarted or the tracker was reset)."""
        for r in self._rules:
            r.evaluator.reset()
        self._last_t = None

    def _candidates(self, objects: list[TrackedObject], frame_wh: tuple[int, int]) -> list[_Candidate]:
        w, h = frame_wh
        if w <= 0 or h <= 0:
            raise ValueError(f"frame size must be positive, got {frame_wh}")
        cands = [_Candidate(o, np.asarray(anchor(o.box, frame_wh)),
                            (o.box[2] - o.box[0]) / w, (o.box[3] - o.box[1]) / h) for o in objects]
        if cands and self._masks:
            pts = np.stack([c.anchor for c in cands])
            masked = np.zeros(len(cands), dtype=bool)
            for m in self._masks:
                masked |= m.contains(pts)
            cands = [c for c, hidden in zip(cands, masked) if not hidden]
        return cands

    def evaluate(self, objects: list[TrackedObject], t: float, frame_wh: tuple[int, int],
                 when: dt.datetime | None = None) -> list[RuleHit]:
        """The rules satisfied on this frame.

        `t` is the frame's capture time in seconds (drives dwell, inertia and for_s); `when` is the local
        wall clock for schedules, by default `t` read as epoch seconds in `tz`.  Pass `when`
        explicitly when `t` is not an epoch time (file sources).
        """
        if self._last_t is not None and t < self._last_t - CLOCK_RESET_S:
            self.reset()  # the stream jumped back: old dwell times would be meaningless
        if self._last_t is not None:
            t = max(t, self._last_t)  # small jitter backwards must not make durations negative
        self._last_t = t
        if when is None and self._needs_clock:
            when = dt.datetime.fromtimestamp(t, self.tz) if self.tz else dt.datetime.fromtimestamp(t).astimezone()
        cands = self._candidates(objects, frame_wh)
        hits: list[RuleHit] = []
        for r in self._rules:
            ev = r.evaluator
            armed = when is None or schedule_armed(ev.rule.schedule, when)
            if not armed:
                if r.armed:
                    ev.reset()
                r.armed = False
                continue
            r.armed = True
            objs = ev.step([c for c in cands if ev.accepts(c)], t)
            if objs:
                hits.append(RuleHit(ev.rule_id, ev.kind, ev.rule.severity, objs))
        return hits
