"""Rule evaluation with synthetic tracks: geometry, timing, filters, masks and schedules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.analyse.rules import CameraRules, Polygon, TrackedObject, schedule_armed
from pipeline.config import CameraConfig, ScheduleWindow

W, H = 1000, 1000
FPS = 5.0


def camera(**kw: Any) -> CameraConfig:
    base: dict[str, Any] = {"name": "cam", "source": "rtsp://h/s", "grid_cell": "g"}
    base.update(kw)
    return CameraConfig.model_validate(base)


def person(tid: int, x: float, y: float, score: float = 0.9, size: float = 0.1,
           label: str = "person", wh: tuple[int, int] = (W, H)) -> TrackedObject:
    """A box whose bottom-centre (anchor) is at relative (x, y)."""
    w, h = wh
    bw, bh = size * w, size * h
    return TrackedObject(tid, label, score, (x * w - bw / 2, y * h - bh, x * w + bw / 2, y * h))


def run(rules: CameraRules, frames: list[list[TrackedObject]], t0: float = 0.0,
        wh: tuple[int, int] = (W, H)) -> list[list[str]]:
    """Rule ids hit on each frame, at FPS."""
    return [[h.rule_id for h in rules.evaluate(objs, t0 + i / FPS, wh)] for i, objs in enumerate(frames)]


def hit_objects(rules: CameraRules, frames: list[list[TrackedObject]], rule_id: str) -> list[list[int]]:
    out = []
    for i, objs in enumerate(frames):
        hits = [h for h in rules.evaluate(objs, i / FPS, (W, H)) if h.rule_id == rule_id]
        out.append([o.track_id for h in hits for o in h.objects])
    return out


SQUARE = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)]


# --------------------------------------------------------------------------- geometry


def test_point_in_polygon_matches_opencv() -> None:
    rng = np.random.default_rng(1)
    poly = [(0.1, 0.1), (0.9, 0.2), (0.6, 0.5), (0.9, 0.9), (0.2, 0.8)]  # concave
    pts = rng.random((2000, 2))
    ours = Polygon(poly).contains(pts)
    contour = np.asarray(poly, dtype=np.float32).reshape(-1, 1, 2)
    ref = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in pts])
    decided = np.abs(ref) > 1e-6  # points on an edge may go either way
    assert np.array_equal(ours[decided], ref[decided] > 0)
    assert Polygon(poly).contains_point(0.3, 0.5)
    assert not Polygon(poly).contains_point(0.85, 0.5)  # in the notch


# --------------------------------------------------------------------------- line crossing


def line_camera(direction: str, debounce: float = 0.02) -> CameraRules:
    # vertical line from top (A) to bottom (B): standing at A looking down, left is +x (east)
    return CameraRules(camera(
        lines={"door": {"a": [0.5, 0.2], "b": [0.5, 0.8], "direction": direction}},
        rules={"x": {"kind": "line_crossing", "line": "door", "debounce": debounce}}))


def walk(tid: int, x0: float, x1: float, y: float = 0.5, steps: int = 10) -> list[list[TrackedObject]]:
    return [[person(tid, x0 + (x1 - x0) * i / (steps - 1), y)] for i in range(steps)]


@pytest.mark.parametrize("direction,east_to_west,west_to_east", [
    ("left_to_right", 1, 0), ("right_to_left", 0, 1), ("both", 1, 1)])
def test_crossing_direction_filter(direction: str, east_to_west: int, west_to_east: int) -> None:
    rules = line_camera(direction)
    # east (left of A→B) to west (right of A→B), then back again
    frames = walk(1, 0.8, 0.2) + walk(1, 0.2, 0.8)
    hits = run(rules, frames)
    first, second = hits[:10], hits[10:]
    assert sum(len(h) for h in first) == east_to_west
    assert sum(len(h) for h in second) == west_to_east


def test_crossing_reports_the_crossing_object_once() -> None:
    rules = line_camera("both")
    frames = [walk(1, 0.8, 0.2)[i] + walk(2, 0.3, 0.35)[i] for i in range(10)]
    per_frame = hit_objects(rules, frames, "x")
    assert [tid for ids in per_frame for tid in ids] == [1]


def test_horizontal_line_direction_left_is_up() -> None:
    # A at left, B at right: looking from A to B (east), left is up the picture (smaller y)
    rules = CameraRules(camera(
        lines={"l": {"a": [0.1, 0.5], "b": [0.9, 0.5], "direction": "left_to_right"}},
        rules={"x": {"kind": "line_crossing", "line": "l"}}))
    down = [[person(1, 0.5, 0.3 + 0.04 * i)] for i in range(10)]  # top → bottom
    up = [[person(2, 0.5, 0.66 - 0.04 * i)] for i in range(10)]
    assert sum(len(h) for h in run(rules, down)) == 1
    assert sum(len(h) for h in run(rules, up, t0=10)) == 0


def test_flicker_on_line_counts_at_most_once() -> None:
    rules = line_camera("both", debounce=0.03)
    approach = walk(1, 0.7, 0.55, steps=4)
    flicker = [[person(1, 0.5 + (0.02 if i % 2 else -0.02), 0.5)] for i in range(40)]
    hits = run(rules, approach + flicker)
    assert sum(len(h) for h in hits) <= 1
    assert sum(len(h) for h in hits) == 0  # never reached +debounce on the far side


def test_flicker_after_crossing_does_not_recount() -> None:
    rules = line_camera("both", debounce=0.03)
    cross = walk(1, 0.7, 0.45, steps=6)                       # one real crossing
    flicker = [[person(1, 0.5 + (0.025 if i % 2 else -0.025), 0.5)] for i in range(30)]
    settle = walk(1, 0.45, 0.40, steps=3)                     # ends on the same side
    hits = run(rules, cross + flicker + settle)
    assert sum(len(h) for h in hits) == 1


def test_crossing_outside_segment_does_not_count() -> None:
    rules = line_camera("both")
    below = walk(1, 0.8, 0.2, y=0.9)      # the line runs from y=0.2 to y=0.8
    near_end = walk(2, 0.8, 0.2, y=0.81)  # within the small tolerance at B
    assert sum(len(h) for h in run(rules, below)) == 0
    assert sum(len(h) for h in run(rules, near_end, t0=20)) == 1


def test_line_state_is_pruned() -> None:
    rules = line_camera("both")
    for i in range(200):  # 200 different short-lived tracks
        rules.evaluate([person(i, 0.7, 0.5)], i * 1.0, (W, H))
    ev = rules._rules[0].evaluator
    assert len(ev.sides) <= 12  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- intrusion


def intrusion_camera(inertia: int) -> CameraRules:
    return CameraRules(camera(zones={"yard": {"polygon": SQUARE}},
                              rules={"in": {"kind": "intrusion", "zone": "yard", "inertia": inertia}}))


def test_intrusion_inertia() -> None:
    outside, inside = [person(1, 0.1, 0.5)], [person(1, 0.5, 0.5)]
    assert run(intrusion_camera(3), [outside, inside, inside, outside]) == [[], [], [], []]
    assert run(intrusion_camera(3), [outside, inside, inside, inside]) == [[], [], [], ["in"]]
    # leaving resets the streak
    assert run(intrusion_camera(3), [inside, inside, outside, inside, inside]) == [[]] * 5


@pytest.mark.parametrize("wh", [(1920, 1080), (640, 360)])
def test_intrusion_relative_zone_at_two_frame_sizes(wh: tuple[int, int]) -> None:
    rules = intrusion_camera(1)
    assert run(rules, [[person(1, 0.5, 0.5, wh=wh)]], wh=wh) == [["in"]]
    assert run(rules, [[person(2, 0.9, 0.5, wh=wh)]], t0=1, wh=wh) == [[]]


def test_intrusion_hits_only_confirmed_tracks() -> None:
    rules = intrusion_camera(2)
    a, b = person(1, 0.5, 0.5), person(2, 0.4, 0.4)
    per_frame = hit_objects(rules, [[a], [a, b], [a, b]], "in")
    assert per_frame == [[], [1], [1, 2]]


# --------------------------------------------------------------------------- loitering


def loiter_frames(seconds: float) -> list[list[TrackedObject]]:
    return [[person(7, 0.5, 0.5)] for _ in range(round(seconds * FPS) + 1)]


def test_loitering_dwell_just_under_and_over() -> None:
    cam = camera(zones={"z": {"polygon": SQUARE}}, rules={"l": {"kind": "loitering", "zone": "z", "dwell_s": 30}})
    under = run(CameraRules(cam), loiter_frames(29.8))
    assert not any(under)
    over = run(CameraRules(cam), loiter_frames(30.2))
    assert over[-1] == ["l"] and sum(1 for h in over if h) == 2  # at 30.0 s and 30.2 s


def test_loitering_tolerates_brief_misses_but_not_leaving() -> None:
    cam = camera(zones={"z": {"polygon": SQUARE}}, rules={"l": {"kind": "loitering", "zone": "z", "dwell_s": 10}})
    inside = [person(7, 0.5, 0.5)]
    gap = [inside] * 25 + [[]] * 4 + [inside] * 30   # 0.8 s missed: dwell continues
    hits = run(CameraRules(cam), gap)
    assert next(i for i, h in enumerate(hits) if h) == 50  # 10 s after entering
    away = [inside] * 25 + [[person(7, 0.95, 0.5)]] * 10 + [inside] * 60  # 2 s outside: restarts
    hits = run(CameraRules(cam), away)
    first = next(i for i, h in enumerate(hits) if h)
    assert first == 35 + 50  # 10 s after coming back


# --------------------------------------------------------------------------- crowding


def crowd_camera(for_s: float = 5.0) -> CameraRules:
    return CameraRules(camera(zones={"z": {"polygon": SQUARE}},
                              rules={"c": {"kind": "crowding", "zone": "z", "max_count": 3, "for_s": for_s}}))


def crowd(n: int) -> list[TrackedObject]:
    return [person(i, 0.3 + 0.1 * i, 0.5) for i in range(n)] + [person(99, 0.95, 0.95)]  # +1 outside


def test_crowding_at_max_count_never_alerts() -> None:
    assert not any(run(crowd_camera(), [crowd(3)] * 100))


def test_crowding_above_max_count_for_s() -> None:
    hits = run(crowd_camera(5.0), [crowd(4)] * 26)   # 0 .. 5.0 s
    assert hits[-1] == ["c"] and not any(hits[:-1])
    assert not any(run(crowd_camera(5.0), [crowd(4)] * 25))  # 0 .. 4.8 s
    rules = crowd_camera(5.0)
    last = [h for h in rules.evaluate(crowd(4), 0, (W, H))]
    for i in range(1, 26):
        last = rules.evaluate(crowd(4), i / FPS, (W, H))
    assert sorted(o.track_id for o in last[0].objects) == [0, 1, 2, 3]  # the outsider not counted


def test_crowding_restarts_after_a_long_dip() -> None:
    frames = [crowd(4)] * 20 + [crowd(2)] * 10 + [crowd(4)] * 20
    assert not any(run(crowd_camera(5.0), frames))


# --------------------------------------------------------------------------- filters and masks


def test_masks_drop_objects_anchored_inside() -> None:
    cam = camera(masks=[[(0.0, 0.0), (0.3, 0.0), (0.3, 1.0), (0.0, 1.0)]])
    rules = CameraRules(cam)
    hits = rules.evaluate([person(1, 0.1, 0.5), person(2, 0.6, 0.5)], 0, (W, H))
    assert [o.track_id for o in hits[0].objects] == [2]
    assert rules.evaluate([person(1, 0.1, 0.5)], 1, (W, H)) == []


def test_min_score_and_min_box() -> None:
    cam = camera(min_score=0.5, rules={
        "default_score": {"kind": "presence"},
        "strict": {"kind": "presence", "min_score": 0.8},
        "big": {"kind": "presence", "min_box": [0.05, 0.2]},
    })
    rules = CameraRules(cam)
    ids = {h.rule_id: [o.track_id for o in h.objects] for h in rules.evaluate([
        person(1, 0.5, 0.5, score=0.6, size=0.1),
        person(2, 0.5, 0.5, score=0.9, size=0.3),
        person(3, 0.5, 0.5, score=0.4, size=0.3),
    ], 0, (W, H))}
    assert ids == {"default_score": [1, 2], "strict": [2], "big": [2]}


def test_presence_from_alert_labels() -> None:
    rules = CameraRules(camera(alert_labels=["car", "truck"], min_score=0.6))
    assert rules.rule_ids == ["presence"]
    hits = rules.evaluate([person(1, 0.5, 0.5, label="person"), person(2, 0.5, 0.5, label="car"),
                           person(3, 0.5, 0.5, label="truck", score=0.5)], 0, (W, H))
    assert len(hits) == 1 and hits[0].kind == "presence" and [o.track_id for o in hits[0].objects] == [2]
    assert rules.evaluate([person(1, 0.5, 0.5)], 1, (W, H)) == []


def test_unknown_zone_fails_early() -> None:
    good = camera(zones={"z": {"polygon": SQUARE}}, rules={"r": {"kind": "intrusion", "zone": "z"}})
    bad = good.model_copy(update={"zones": {}})  # CameraConfig alone does not cross-check names
    with pytest.raises(ValueError, match="zone 'z'"):
        CameraRules(bad)
    assert CameraRules(good).rule_ids == ["r"]


# --------------------------------------------------------------------------- schedules

MON = dt.datetime(2024, 6, 3)  # a Monday


def at(day_offset: int, hh: int, mm: int) -> dt.datetime:
    return MON + dt.timedelta(days=day_offset, hours=hh, minutes=mm)


def test_schedule_across_midnight() -> None:
    night = [ScheduleWindow(days=["mon"], start="22:00", end="06:00")]
    assert schedule_armed(night, at(1, 5, 59))       # Tue 05:59
    assert not schedule_armed(night, at(1, 6, 1))    # Tue 06:01
    assert not schedule_armed(night, at(0, 21, 59))  # Mon 21:59
    assert schedule_armed(night, at(0, 22, 0))       # Mon 22:00
    assert not schedule_armed(night, at(0, 5, 0))    # Mon 05:00 belongs to Sunday's window
    friday = [ScheduleWindow(days=["fri"], start="22:00", end="02:00")]
    assert schedule_armed(friday, at(5, 1, 0))       # Sat 01:00
    assert not schedule_armed(friday, at(5, 2, 0))   # Sat 02:00, end exclusive


def test_schedule_plain_and_empty() -> None:
    assert schedule_armed(None, MON) and schedule_armed([], MON)
    office = [ScheduleWindow(days=["mon", "tue"], start="08:00", end="24:00")]
    assert schedule_armed(office, at(1, 23, 59))
    assert not schedule_armed(office, at(2, 9, 0))   # Wednesday
    assert not schedule_armed(office, at(0, 7, 59))


def test_disarmed_rule_has_no_hits_and_forgets_state() -> None:
    cam = camera(zones={"z": {"polygon": SQUARE}}, rules={"l": {
        "kind": "loitering", "zone": "z", "dwell_s": 2,
        "schedule": [{"days": ["mon"], "start": "22:00", "end": "06:00"}]}})
    rules = CameraRules(cam)
    inside = [person(1, 0.5, 0.5)]
    day = at(0, 21, 0)
    # 30 s inside while disarmed, then armed: the dwell starts at arming, not before
    for i in range(150):
        assert rules.evaluate(inside, i / FPS, (W, H), when=day) == []
    night = at(0, 22, 0)
    hits = [rules.evaluate(inside, 30 + i / FPS, (W, H), when=night) for i in range(11)]
    assert not any(hits[:10]) and hits[10]


def test_default_when_uses_timezone() -> None:
    cam = camera(rules={"p": {"kind": "presence", "schedule": [{"days": ["mon"], "start": "08:00", "end": "09:00"}]}})
    tz = dt.timezone(dt.timedelta(hours=8))
    rules = CameraRules(cam, tz=tz)
    t_in = dt.datetime(2024, 6, 3, 8, 30, tzinfo=tz).timestamp()
    assert rules.evaluate([person(1, 0.5, 0.5)], t_in, (W, H))
    assert not rules.evaluate([person(1, 0.5, 0.5)], t_in + 3600, (W, H))


def test_stream_time_jump_back_resets_state() -> None:
    cam = camera(zones={"z": {"polygon": SQUARE}}, rules={"l": {"kind": "loitering", "zone": "z", "dwell_s": 5}})
    rules = CameraRules(cam)
    inside = [person(1, 0.5, 0.5)]
    for i in range(20):
        rules.evaluate(inside, 100 + i / FPS, (W, H))
    assert rules.evaluate(inside, 0.0, (W, H)) == []  # looped file: dwell restarts
