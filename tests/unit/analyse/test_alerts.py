"""The alert lifecycle: new → update → end, rate limits, episodes and clip ranges."""

from __future__ import annotations

import itertools
import re

from pipeline.analyse.alerts import AlertTracker, AlertUpdate
from pipeline.analyse.rules import RuleHit, TrackedObject
from pipeline.config import AlertsConfig

T0 = 1_717_400_000.0  # wall clock of the first frame
FPS = 5.0
CFG = AlertsConfig(end_after_s=5, pre_roll_s=3, post_roll_s=4, update_interval_s=2)


def obj(tid: int, score: float = 0.8, label: str = "person") -> TrackedObject:
    return TrackedObject(tid, label, score, (10, 10, 50, 120))


def hit(*objs: TrackedObject, rule: str = "yard", kind: str = "intrusion", severity: str = "high") -> RuleHit:
    return RuleHit(rule, kind, severity, list(objs))


def tracker(cfg: AlertsConfig = CFG) -> AlertTracker:
    counter = itertools.count(1)
    return AlertTracker("cam1", cfg, id_factory=lambda: f"A{next(counter)}")


class Feed:
    """Drives a tracker frame by frame at FPS, collecting every message."""

    def __init__(self, tr: AlertTracker):
        self.tr = tr
        self.i = 0
        self.msgs: list[AlertUpdate] = []

    @property
    def now(self) -> float:
        return self.i / FPS

    def frames(self, n: int, *hits: RuleHit) -> list[AlertUpdate]:
        out: list[AlertUpdate] = []
        for _ in range(n):
            out += self.tr.update(list(hits), T0 + self.now, self.now)
            self.i += 1
        self.msgs += out
        return out


def test_new_update_end() -> None:
    f = Feed(tracker())
    [new] = f.frames(1, hit(obj(1)))
    assert (new.phase, new.alert_id, new.track_ids, new.snapshot_due) == ("new", "A1", [1], True)
    assert new.camera_id == "cam1" and new.kind == "intrusion" and new.severity == "high"
    assert new.start_time == T0 and new.end_time is None and new.clip_end is None
    assert new.clip_start == T0 - 3
    assert [o.track_id for o in new.objects] == [1]

    f.frames(14, hit(obj(1)))  # up to 2.8 s: nothing new
    [upd] = f.frames(1, hit(obj(1), obj(2, label="car")))
    assert upd.phase == "update" and upd.alert_id == "A1"
    assert upd.track_ids == [1, 2] and upd.labels == ["car", "person"] and len(upd.objects) == 2
    assert not upd.snapshot_due

    f.frames(5, hit(obj(1), obj(2, label="car")))
    last_seen = T0 + f.now - 1 / FPS
    quiet = f.frames(int(5 * FPS) - 1)  # 4.8 s of nothing
    assert quiet == []
    [end] = f.frames(1)
    assert end.phase == "end" and end.alert_id == "A1" and end.objects == []
    assert end.end_time == last_seen and end.time == T0 + f.now - 1 / FPS
    assert end.clip_start == T0 - 3 and end.clip_end == last_seen + 4
    assert end.track_ids == [1, 2]


def test_stationary_object_alerts_once_in_ten_minutes() -> None:
    f = Feed(tracker())
    msgs = f.frames(int(600 * FPS), hit(obj(1, score=0.7)))
    assert [m.phase for m in msgs] == ["new"]


def test_jittering_score_does_not_churn_snapshots() -> None:
    f = Feed(tracker())
    scores = itertools.cycle([0.70, 0.74, 0.66, 0.72])
    for _ in range(int(600 * FPS)):
        f.frames(1, hit(obj(1, score=next(scores))))
    assert [m.phase for m in f.msgs] == ["new"]


def test_better_snapshot_triggers_update() -> None:
    f = Feed(tracker())
    f.frames(15, hit(obj(1, score=0.55)))
    [upd] = f.frames(1, hit(obj(1, score=0.9)))
    assert upd.phase == "update" and upd.snapshot_due and upd.best_score == 0.9


def test_updates_are_rate_limited() -> None:
    f = Feed(tracker())
    f.frames(1, hit(obj(1)))
    # a new track id on every frame for 10 s: at most one update per 2 s
    for k in range(2, 2 + int(10 * FPS)):
        f.frames(1, hit(obj(1), obj(k)))
    times = [m.time for m in f.msgs if m.phase == "update"]
    assert [round(t - T0, 6) for t in times] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert f.msgs[-1].track_ids == list(range(1, 52))  # nothing dropped, only batched


def test_zero_interval_updates_on_every_change() -> None:
    f = Feed(tracker(AlertsConfig(update_interval_s=0)))
    f.frames(1, hit(obj(1)))
    f.frames(1, hit(obj(1), obj(2)))
    f.frames(1, hit(obj(1), obj(2)))
    f.frames(1, hit(obj(1), obj(2), obj(3)))
    assert [m.phase for m in f.msgs] == ["new", "update", "update"]


def test_new_episode_after_end_gets_new_id() -> None:
    f = Feed(tracker())
    f.frames(5, hit(obj(1)))
    f.frames(int(5 * FPS))
    f.frames(1, hit(obj(1)))
    assert [(m.phase, m.alert_id) for m in f.msgs] == [("new", "A1"), ("end", "A1"), ("new", "A2")]


def test_gap_without_frames_ends_and_restarts() -> None:
    tr = tracker()
    assert tr.update([hit(obj(1))], T0, 0.0)[0].phase == "new"
    msgs = tr.update([hit(obj(1))], T0 + 30, 30.0)  # the stream stalled for 30 s
    assert [(m.phase, m.alert_id) for m in msgs] == [("end", "A1"), ("new", "A2")]
    assert msgs[0].end_time == T0


def cross(tid: int) -> RuleHit:
    return hit(obj(tid), rule="door", kind="line_crossing")


def test_line_crossings_episodes() -> None:
    f = Feed(tracker())
    f.frames(1, cross(1))
    f.frames(int(3 * FPS) - 1)
    f.frames(1, cross(2))            # 3 s later: same episode, one more track
    f.frames(int(5 * FPS))           # quiet: ends
    f.frames(int(10 * FPS))
    f.frames(1, cross(3))            # long after: its own episode
    f.frames(int(5 * FPS))
    summary = [(m.phase, m.alert_id, m.track_ids) for m in f.msgs]
    assert summary == [("new", "A1", [1]), ("update", "A1", [1, 2]), ("end", "A1", [1, 2]),
                       ("new", "A2", [3]), ("end", "A2", [3])]


def test_rate_limited_change_is_not_lost() -> None:
    f = Feed(tracker())
    f.frames(1, cross(1))
    f.frames(1, cross(2))            # 0.2 s later: held back by update_interval_s
    f.frames(int(3 * FPS))
    upd = [m for m in f.msgs if m.phase == "update"]
    assert len(upd) == 1 and upd[0].track_ids == [1, 2] and upd[0].objects == []
    assert upd[0].time - T0 >= 2


def test_rules_have_separate_alerts() -> None:
    f = Feed(tracker())
    msgs = f.frames(1, hit(obj(1), rule="a"), hit(obj(1), rule="b", kind="loitering"))
    assert sorted((m.rule_id, m.alert_id) for m in msgs) == [("a", "A1"), ("b", "A2")]


def test_severity_rise_is_an_update() -> None:
    f = Feed(tracker())
    f.frames(15, hit(obj(1), severity="medium"))
    [upd] = f.frames(1, hit(obj(1), severity="critical"))
    assert upd.phase == "update" and upd.severity == "critical"


def test_flush_ends_open_alerts() -> None:
    tr = tracker()
    tr.update([hit(obj(1), rule="a"), hit(obj(2), rule="b")], T0, 0.0)
    tr.update([hit(obj(1), rule="a")], T0 + 1, 1.0)
    ends = tr.flush(T0 + 2)
    assert sorted((m.rule_id, m.phase, m.end_time) for m in ends) == [("a", "end", T0 + 1), ("b", "end", T0)]
    assert all(m.time == T0 + 2 and m.end_time is not None and m.clip_end == m.end_time + 4 for m in ends)
    assert tr.flush(T0 + 3) == [] and tr.open_alerts == {}


def test_stream_time_going_back_does_not_end_or_freeze() -> None:
    tr = tracker()
    tr.update([hit(obj(1))], T0, 100.0)
    assert tr.update([hit(obj(1))], T0 + 0.2, 0.0) == []  # looped file: no time passed
    assert tr.update([], T0 + 4, 3.8) == []
    [end] = tr.update([], T0 + 5.2, 5.0)
    assert end.phase == "end"


def test_default_ids_are_unique_and_readable() -> None:
    tr = AlertTracker("gate-2", CFG)
    ids = set()
    for k in range(300):
        [new] = tr.update([hit(obj(1))], T0, float(k * 10))
        ids.add(new.alert_id)
        tr.flush(T0)
    assert len(ids) == 300
    assert all(re.fullmatch(r"gate-2-\d{8}T\d{6}-[0-9a-f]{4}", i) for i in ids)


def test_to_dict_is_plain_data() -> None:
    [new] = tracker().update([hit(obj(1))], T0, 0.0)
    d = new.to_dict()
    assert d["objects"] == [{"track_id": 1, "label": "person", "score": 0.8, "box": [10, 10, 50, 120]}]
    assert d["phase"] == "new" and d["clip_end"] is None
