"""The alert lifecycle: turning per-frame rule hits into a few messages an operator can act on.

Rules fire on every frame an object satisfies them (5 per second); the command room wants one
alert per incident.  An *episode* per rule opens on the first hit (`new`), reports meaningful
changes (`update`: more people, a new track, a clearly better snapshot, a higher severity) at
most once per `update_interval_s`, and closes (`end`) once the rule has been quiet for
`end_after_s`.  A person standing still therefore raises one alert, not a stream of them.

Pure: no I/O.  The caller publishes the messages and, when `snapshot_due` is set, encodes the
current frame as the alert's snapshot.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.analyse.rules import RuleHit, TrackedObject
from pipeline.config import AlertsConfig

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
# A new snapshot is worth taking only when the best detection score beats the snapshot's by
# this much; smaller gains are detector noise and would churn snapshots of a standing person.
SNAPSHOT_MARGIN = 0.1

Phase = Literal["new", "update", "end"]


@dataclass
class AlertUpdate:
    """One message about one alert, ready to publish (see `to_dict`).

    Times are wall-clock epoch seconds.  `objects` are the objects satisfying the rule on this
    frame (empty on `end`, and on an update sent after the objects left); `track_ids` and
    `labels` cover the whole episode.
    """

    phase: Phase
    alert_id: str
    camera_id: str
    rule_id: str
    kind: str
    severity: str
    labels: list[str]
    track_ids: list[int]
    objects: list[TrackedObject]
    start_time: float
    end_time: float | None
    time: float
    best_score: float
    snapshot_due: bool
    clip_start: float
    clip_end: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (objects as dicts with the box as a list)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "objects"}
        d["objects"] = [{"track_id": o.track_id, "label": o.label, "score": o.score, "box": list(o.box)}
                        for o in self.objects]
        return d


@dataclass
class _Episode:
    alert_id: str
    rule_id: str
    kind: str
    severity: str
    start_time: float
    last_seen: float          # wall clock of the last hit
    last_seen_clock: float    # frame clock of the last hit, for end_after_s
    last_emit_clock: float    # frame clock of the last new/update, for update_interval_s
    best_score: float
    snapshot_score: float     # best score on the frame the current snapshot was taken from
    max_objects: int
    labels: set[str] = field(default_factory=set)
    track_ids: set[int] = field(default_factory=set)
    pending: bool = False     # a change worth an update is waiting for the rate limit


def _merge(hits: list[RuleHit]) -> dict[str, RuleHit]:
    """One hit per rule: several hits of one rule on one frame are one observation."""
    out: dict[str, RuleHit] = {}
    for h in hits:
        prev = out.get(h.rule_id)
        if prev is None:
            out[h.rule_id] = RuleHit(h.rule_id, h.kind, h.severity, list(h.objects))
        else:
            seen = set(prev.objects)
            prev.objects.extend(o for o in h.objects if o not in seen)
            if SEVERITY_RANK.get(h.severity, 0) > SEVERITY_RANK.get(prev.severity, 0):
                prev.severity = h.severity
    return out


class AlertTracker:
    """Open alerts of one camera, one episode per rule at a time.

    `update` takes two times: `t`, the frame's capture time (epoch seconds) that goes into the
    messages, and `frame_time`, the clock of `end_after_s` and `update_interval_s`.  The worker and
    replay run on one clock, the capture time, and pass it as both (see pipeline.analyse.camera); a
    caller with a monotonic clock may pass that as `frame_time` so that an NTP step neither ends nor
    prolongs alerts.  A `frame_time` that jumps backwards counts as no time passing.
    """

    def __init__(self, camera_id: str, alerts: AlertsConfig, id_factory: Callable[[], str] | None = None,
                 snapshot_margin: float = SNAPSHOT_MARGIN):
        self.camera_id = camera_id
        self.cfg = alerts
        self._id_factory = id_factory
        self.snapshot_margin = snapshot_margin
        self._open: dict[str, _Episode] = {}
        self._offset = 0.0
        self._last_frame_time: float | None = None
        self._recent_ids: deque[str] = deque(maxlen=1024)

    @property
    def open_alerts(self) -> dict[str, str]:
        """rule_id → alert_id of every open alert."""
        return {rid: ep.alert_id for rid, ep in self._open.items()}

    # ----------------------------------------------------------------- ids and clock

    def _new_id(self, t: float) -> str:
        if self._id_factory is not None:
            return self._id_factory()
        stamp = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y%m%dT%H%M%S")
        while True:  # 4 hex digits per second per camera: retry the rare in-process clash
            aid = f"{self.camera_id}-{stamp}-{secrets.token_hex(2)}"
            if aid not in self._recent_ids:
                self._recent_ids.append(aid)
                return aid

    def _advance(self, frame_time: float) -> float:
        """The frame clock made monotonic: a jump back shifts the offset instead of rewinding."""
        if self._last_frame_time is not None and frame_time < self._last_frame_time:
            self._offset += self._last_frame_time - frame_time
        self._last_frame_time = frame_time
        return frame_time + self._offset

    # ----------------------------------------------------------------- messages

    def _message(self, phase: Phase, ep: _Episode, t: float, objects: list[TrackedObject],
                 snapshot_due: bool) -> AlertUpdate:
        end_time = ep.last_seen if phase == "end" else None
        return AlertUpdate(
            phase=phase, alert_id=ep.alert_id, camera_id=self.camera_id, rule_id=ep.rule_id,
            kind=ep.kind, severity=ep.severity, labels=sorted(ep.labels), track_ids=sorted(ep.track_ids),
            objects=list(objects) if phase != "end" else [], start_time=ep.start_time, end_time=end_time,
            time=t, best_score=ep.best_score, snapshot_due=snapshot_due,
            clip_start=ep.start_time - self.cfg.pre_roll_s,
            clip_end=end_time + self.cfg.post_roll_s if end_time is not None else None)

    def _start(self, hit: RuleHit, t: float, clock: float) -> AlertUpdate:
        score = max((o.score for o in hit.objects), default=0.0)
        ep = _Episode(alert_id=self._new_id(t), rule_id=hit.rule_id, kind=hit.kind, severity=hit.severity,
                      start_time=t, last_seen=t, last_seen_clock=clock, last_emit_clock=clock,
                      best_score=score, snapshot_score=score, max_objects=len(hit.objects),
                      labels={o.label for o in hit.objects}, track_ids={o.track_id for o in hit.objects})
        self._open[hit.rule_id] = ep
        return self._message("new", ep, t, hit.objects, snapshot_due=True)

    def _absorb(self, ep: _Episode, hit: RuleHit, t: float, clock: float) -> AlertUpdate | None:
        """Fold this frame's hit into the episode; an update when something changed and allowed."""
        objs = hit.objects
        ids = {o.track_id for o in objs}
        labels = {o.label for o in objs}
        if not ids <= ep.track_ids or not labels <= ep.labels or len(objs) > ep.max_objects:
            ep.pending = True
        if SEVERITY_RANK.get(hit.severity, 0) > SEVERITY_RANK.get(ep.severity, 0):
            ep.severity = hit.severity
            ep.pending = True
        ep.track_ids |= ids
        ep.labels |= labels
        ep.max_objects = max(ep.max_objects, len(objs))
        cur = max((o.score for o in objs), default=0.0)
        ep.best_score = max(ep.best_score, cur)
        ep.last_seen, ep.last_seen_clock = t, clock
        better = cur >= ep.snapshot_score + self.snapshot_margin
        if not (ep.pending or better) or clock - ep.last_emit_clock < self.cfg.update_interval_s:
            return None
        if better:
            ep.snapshot_score = cur
        ep.pending = False
        ep.last_emit_clock = clock
        return self._message("update", ep, t, objs, snapshot_due=better)

    # ----------------------------------------------------------------- public

    def update(self, hits: list[RuleHit], t: float, frame_time: float) -> list[AlertUpdate]:
        """Messages caused by this frame's hits (call on every frame, with no hits too).

        Order: ends first, then new alerts and updates, so a consumer never sees two open
        alerts for one rule.
        """
        clock = self._advance(frame_time)
        by_rule = _merge(hits)
        out: list[AlertUpdate] = []
        for rid, ep in list(self._open.items()):
            if clock - ep.last_seen_clock >= self.cfg.end_after_s:
                out.append(self._message("end", ep, t, [], snapshot_due=False))
                del self._open[rid]
        for rid, ep in self._open.items():
            # a change held back by the rate limit goes out once allowed, even if the objects
            # have gone meanwhile (a second line crossing must not wait for a third)
            if rid not in by_rule and ep.pending and clock - ep.last_emit_clock >= self.cfg.update_interval_s:
                ep.pending = False
                ep.last_emit_clock = clock
                out.append(self._message("update", ep, t, [], snapshot_due=False))
        for rid, hit in by_rule.items():
            if not hit.objects:
                continue
            current = self._open.get(rid)
            if current is None:
                out.append(self._start(hit, t, clock))
            elif (msg := self._absorb(current, hit, t, clock)) is not None:
                out.append(msg)
        return out

    def flush(self, t: float) -> list[AlertUpdate]:
        """End every open alert now (shutdown, camera disabled); end_time is when last seen."""
        out = [self._message("end", ep, t, [], snapshot_due=False) for ep in self._open.values()]
        self._open.clear()
        return out


AlertManager = AlertTracker
