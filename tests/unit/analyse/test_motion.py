"""Motion gating on synthetic frames: a textured static scene with sensor noise (σ 2.5 grey levels)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.analyse.camera import CameraAnalytics
from pipeline.analyse.detect import Detections
from pipeline.analyse.motion import (
    GateDecision,
    MotionDetector,
    MotionGate,
    MotionResult,
    TrackView,
    segment_distance,
)
from pipeline.config import AlertsConfig, CameraConfig, IdleConfig, MotionConfig

H, W = 432, 768
FPS = 5.0
RNG = np.random.default_rng(7)
# A smooth texture (not a flat grey: a flat scene hides blur and sampling mistakes).
BASE = cv2.resize(RNG.integers(60, 200, (27, 48, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_LINEAR)
NOISE = [RNG.normal(0.0, 2.5, (H, W, 3)).astype(np.int16) for _ in range(7)]
BASE_GREY = cv2.cvtColor(BASE, cv2.COLOR_BGR2GRAY)
NOISE_GREY = [n[:, :, 0] for n in NOISE]


def frame(i: int, square_x: int | None = None, offset: int = 0, base: np.ndarray = BASE,
          grey: bool = False) -> np.ndarray:
    """Frame number ``i`` of the still scene, optionally with a bright 20x20 square at x."""
    noise = NOISE_GREY if grey else NOISE
    src = BASE_GREY if grey and base is BASE else base
    f = src.astype(np.int16) + noise[i % len(noise)] + offset
    if square_x is not None:
        f[200:220, square_x:square_x + 20] = 240
    return np.clip(f, 0, 255).astype(np.uint8)


def test_still_scene_is_still_after_first_frame() -> None:
    det = MotionDetector(MotionConfig())
    first = det.update(frame(0), 0.0)
    assert first.moving and first.reset == "first"
    results = [det.update(frame(i), i / FPS) for i in range(1, 40)]
    assert not any(r.moving for r in results)
    assert max(r.fraction for r in results) < 0.0005


def test_still_scene_detects_only_at_periodic_rate() -> None:
    gate = MotionGate(MotionConfig(periodic_s=2.0))
    decisions = [gate.decide(frame(i, grey=True), i / FPS) for i in range(int(60 * FPS))]
    assert decisions[0].reason == "first"
    assert abs(gate.detected - 30) <= 2
    assert {d.reason for d in decisions[1:] if d.detect} == {"periodic"}
    assert gate.stats()["checked"] == 300 and gate.skipped == 300 - gate.detected


def test_moving_square_gives_motion_and_a_box_around_it() -> None:
    # 20x20 px is 0.12 % of 768x432: under the default min_area (0.2 %), hence 0.1 % here.
    det = MotionDetector(MotionConfig(min_area=0.001))
    for i in range(10):
        det.update(frame(i), i / FPS)
    for i in range(10, 20):
        x = 100 + (i - 10) * 15
        r = det.update(frame(i, square_x=x), i / FPS)
        assert r.moving, (i, r.fraction)
        assert any(x1 <= x + 2 and y1 <= 202 and x2 >= x + 18 and y2 >= 218 and x2 - x1 < 80 and y2 - y1 < 80
                   for x1, y1, x2, y2 in r.boxes), (x, r.boxes)


def test_default_min_area_sees_a_bigger_object() -> None:
    det = MotionDetector(MotionConfig())
    for i in range(5):
        det.update(frame(i), i / FPS)
    f = frame(5)
    f[150:190, 300:340] = 240  # 40x40 px: 0.5 % of the picture
    r = det.update(f, 1.0)
    assert r.moving and len(r.boxes) == 1


def test_change_inside_a_motion_mask_is_ignored() -> None:
    mask = [(0.1, 0.4), (0.6, 0.4), (0.6, 0.6), (0.1, 0.6)]  # covers y 173-259, x 77-461
    det = MotionDetector(MotionConfig(min_area=0.001, masks=[mask]))
    for i in range(5):
        det.update(frame(i), i / FPS)
    for i in range(5, 15):
        r = det.update(frame(i, square_x=100 + (i - 5) * 20), i / FPS)
        assert not r.moving and r.fraction == 0.0
    r = det.update(frame(15, square_x=600), 3.0)  # outside the mask: counted again
    assert r.moving


def test_global_brightness_jump_is_one_scene_change() -> None:
    det = MotionDetector(MotionConfig())
    for i in range(5):
        det.update(frame(i), i / FPS)
    jump = det.update(frame(5, offset=50), 1.0)
    assert jump.moving and jump.reset == "scene"
    after = [det.update(frame(i, offset=50), i / FPS) for i in range(6, 20)]
    assert not any(r.moving for r in after)


def test_hold_after_motion() -> None:
    gate = MotionGate(MotionConfig(min_area=0.001, hold_s=1.0, periodic_s=100.0))
    for i in range(5):
        gate.decide(frame(i), i / FPS)
    assert gate.decide(frame(5, square_x=300), 1.0).reason == "motion"
    reasons = [gate.decide(frame(i, square_x=300), i / FPS).reason for i in range(6, 12)]
    # The square stands still: it stays "changed" against the slow background for a while, so
    # continue past the motion until the hold, then skipping, shows.
    reasons += [gate.decide(frame(i), i / FPS).reason for i in range(12, 80)]
    last_motion = max(i for i, r in enumerate(reasons) if r == "motion")
    tail = reasons[last_motion + 1:]
    assert tail[:5] == ["hold"] * 5  # 1.0 s at 5 fps
    assert set(tail[5:]) == {"still"}


def test_note_objects_keeps_detecting_a_still_object() -> None:
    gate = MotionGate(MotionConfig(hold_s=0.0, periodic_s=100.0))
    gate.decide(frame(0), 0.0)
    gate.note_objects(True, 0.0)
    for i in range(1, 100):
        d = gate.decide(frame(i), i / FPS)
        assert d.detect and d.reason == "hold"
        gate.note_objects(True, i / FPS)
    gate.note_objects(False, 99 / FPS)
    assert not gate.decide(frame(100), 100 / FPS).detect


def test_idle_turns_on_after_stillness_and_off_on_motion() -> None:
    gate = MotionGate(MotionConfig(min_area=0.001), IdleConfig(after_s=3.0), idle_enabled=True)
    idle = []
    for i in range(25):
        gate.decide(frame(i), i / FPS)
        idle.append(gate.idle)
    assert not any(idle[:15]) and all(idle[15:])  # idle from t = 3.0 s
    gate.decide(frame(25, square_x=400), 25 / FPS)
    assert not gate.idle


def test_idle_follows_config_and_needs_motion_gating() -> None:
    assert not MotionGate(MotionConfig(), IdleConfig(enabled=False), idle_enabled=True).idle_enabled
    assert MotionGate(MotionConfig(), IdleConfig(enabled=None), idle_enabled=True).idle_enabled
    assert not MotionGate(MotionConfig(enabled=False), IdleConfig(enabled=True)).idle_enabled


def test_disabled_gate_always_detects() -> None:
    gate = MotionGate(MotionConfig(enabled=False))
    decisions = [gate.decide(frame(i), i / FPS) for i in range(10)]
    assert all(d.detect and d.reason == "disabled" and d.motion is None for d in decisions)


def test_resolution_change_resets() -> None:
    gate = MotionGate(MotionConfig(periodic_s=100.0))
    for i in range(5):
        gate.decide(frame(i), i / FPS)
    small = cv2.resize(frame(5), (640, 360), interpolation=cv2.INTER_AREA)
    d = gate.decide(small, 1.0)
    assert d.detect and d.reason == "first" and d.motion is not None and d.motion.reset == "resolution"
    assert d.motion.boxes == [(0, 0, 640, 360)]
    nxt = cv2.resize(frame(6), (640, 360), interpolation=cv2.INTER_AREA)
    assert gate.decide(nxt, 1.2).reason == "still"


def test_clock_jumping_back_does_not_silence_the_gate() -> None:
    gate = MotionGate(MotionConfig(periodic_s=2.0))
    for i in range(5):
        gate.decide(frame(i), 100.0 + i / FPS)
    assert gate.decide(frame(5), 0.0).reason == "periodic"


@pytest.mark.parametrize("square", [None, 300])
def test_grey_and_bgr_give_the_same_decision(square: int | None) -> None:
    cfg = MotionConfig(min_area=0.001)
    bgr_det, grey_det = MotionDetector(cfg), MotionDetector(cfg)
    for i in range(8):
        bgr = frame(i, square_x=square if i >= 5 else None)
        a = bgr_det.update(bgr, i / FPS)
        b = grey_det.update(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), i / FPS)
        assert (a.moving, a.fraction, a.boxes) == (b.moving, b.fraction, b.boxes)


def test_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError):
        MotionDetector(MotionConfig()).update(np.zeros((10, 10, 4), np.uint8), 0.0)


def test_limited_range_y_plane_matches_bgr() -> None:
    """A decoder's Y plane (16-235) shows a change of light 219/255 as large as BGR does."""
    def to_y(bgr: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
        return (16 + grey * 219 / 255).round().astype(np.uint8)

    cfg = MotionConfig()
    bgr_det, y_det, raw_det = MotionDetector(cfg), MotionDetector(cfg), MotionDetector(cfg)
    for i in range(5):
        f = frame(i)
        bgr_det.update(f, i / FPS)
        y_det.update(to_y(f), i / FPS, limited_range=True)
        raw_det.update(to_y(f), i / FPS)
    f = frame(5).astype(np.int16)
    f[100:180, 300:380] += 27  # a change of 27 grey levels: over the threshold in BGR, 23 in Y
    f = np.clip(f, 0, 255).astype(np.uint8)
    assert bgr_det.update(f, 1.0).moving
    assert y_det.update(to_y(f), 1.0, limited_range=True).moving
    assert not raw_det.update(to_y(f), 1.0).moving


def test_fruitless_motion_is_sampled_slower_until_an_object_is_seen() -> None:
    """Motion the detector keeps finding nothing in (top-down cars, trees) costs less."""
    from pipeline.analyse.motion import MotionGate
    from pipeline.config import MotionConfig

    gate = MotionGate(MotionConfig(fruitless_after=5, tracked_interval_s=0.6, min_area=0.001))
    rng = np.random.default_rng(1)
    detected = []
    for i in range(100):  # 20 s at 5 fps of changing noise blobs: motion on every frame
        t = i * 0.2
        img = np.full((180, 320), 100, np.uint8)
        x = (i * 13) % 280
        img[50:90, x:x + 40] = rng.integers(150, 255, (40, 40), dtype=np.uint8)
        d = gate.decide(img, t)
        if d.detect:
            detected.append(t)
            gate.note_objects(i >= 80, t)  # the detector finds an object of interest from 16 s on
    early = [t for t in detected if 2.0 <= t < 16.0]
    late = [t for t in detected if t >= 16.4]
    # the first frames go to the detector; after 5 fruitless runs only every 0.6 s (about 1 in 3)
    assert 18 <= len(early) <= 26, early
    assert all(b - a >= 0.6 - 1e-6 for a, b in zip(early, early[1:]))
    # once something is seen every sampled frame is detected again
    assert len(late) >= 17, late


# ----------------------------------------------------------------------------------------------
# Scheduling by what the tracker knows (busy scenes): arrays in, decisions out.

PERSON_WH = (40, 80)  # a person-sized block on the 768x432 scene: about 1 % of the picture


def people(i: int, *at: tuple[float, float]) -> np.ndarray:
    """Grey frame ``i`` of the still scene with a bright person-sized block at each (x, y) top-left."""
    f = frame(i, grey=True)
    pw, ph = PERSON_WH
    for x, y in at:
        f[int(y):int(y) + ph, int(x):int(x) + pw] = 235
    return f


def box_at(x: float, y: float) -> list[float]:
    return [x, y, x + PERSON_WH[0], y + PERSON_WH[1]]


def view(t: float, boxes: list[list[float]], velocity: list[list[float]] | None = None, *,
         watched: bool = True, settled: bool = True, lost: bool = False,
         segments: list[list[list[float]]] | None = None, bands: list[float] | None = None,
         due: tuple[float, ...] = (), valid_s: float = 1.5) -> TrackView:
    """A TrackView of ``boxes`` (all alike in being watched, settled, lost)."""
    n = len(boxes)
    seg = np.asarray(segments if segments is not None else np.zeros((0, 2, 2)), np.float64).reshape(-1, 2, 2)
    return TrackView(t=t, frame_wh=(W, H), valid_s=valid_s, boxes=np.asarray(boxes, np.float64).reshape(n, 4),
                     velocity=np.asarray(velocity if velocity is not None else [[0.0] * 4] * n,
                                         np.float64).reshape(n, 4),
                     watched=np.full(n, watched), settled=np.full(n, settled), lost=np.full(n, lost),
                     segments=seg, bands=np.asarray(bands if bands is not None else [0.0] * len(seg), np.float64),
                     applies=np.ones((n, len(seg)), bool), due=due)


def walk(gate: MotionGate, seconds: float, speed: float, extra: Callable[[float], list[tuple[float, float]]]
         = lambda t: [], **view_kw: Any) -> list[GateDecision]:
    """One person walking right at ``speed`` px/s from x 100, y 200, with a tracker that keeps up.

    After every detection the gate is told where the person is and how fast they go, as
    `CameraAnalytics` does; ``extra(t)`` adds untracked people.
    """
    out = []
    for i in range(int(seconds * FPS)):
        t = i / FPS
        x = 100 + speed * t
        d = gate.decide(people(i, (x, 200), *extra(t)), t)
        out.append(d)
        if d.detect:
            gate.note_objects(True, t)
            gate.note_tracks(view(t, [box_at(x, 200)], [[speed, 0, speed, 0]], **view_kw))
    return out


def test_fresh_change_forgets_where_somebody_stood() -> None:
    """The background keeps a 'ghost' where a person stood; change since the last frame does not."""
    det = MotionDetector(MotionConfig())
    for i in range(25):  # a person stands at x 300 for 5 s: the slow background partly absorbs them
        det.update(people(i, (300, 200)), i / FPS)
    det.update(people(25), 25 / FPS)  # they leave
    r = det.update(people(26), 26 / FPS)
    assert r.moving, "the background still differs where the person stood"
    assert det.unexplained(r, np.zeros((0, 4))) == 0.0, "nothing changed since the previous frame"


def test_unexplained_change_is_what_lies_outside_the_expected_boxes() -> None:
    det = MotionDetector(MotionConfig())
    for i in range(5):
        det.update(people(i), i / FPS)
    det.update(people(5, (100, 200)), 1.0)
    r = det.update(people(6, (115, 200)), 1.2)  # moved 15 px, and somebody new at x 500
    assert det.unexplained(r, np.array([[90, 190, 165, 290]])) < 0.0005
    assert det.unexplained(r, np.zeros((0, 4))) > 0.001
    r = det.update(people(7, (130, 200), (500, 100)), 1.4)
    assert det.unexplained(r, np.array([[105, 190, 180, 290]])) > 0.001, "the newcomer is outside the box"
    assert det.unexplained(MotionResult(True, 1.0), np.zeros((0, 4))) == 1.0, "a reset explains nothing"


def test_tracks_moving_as_predicted_are_refreshed_at_the_tracked_interval() -> None:
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6))
    decisions = walk(gate, 10.0, speed=40.0)
    later = [d for d in decisions[2:]]
    assert {d.reason for d in later} == {"tracked", "tracked_wait"}, Counter(d.reason for d in later)
    detected = [i for i, d in enumerate(decisions) if d.detect][1:]
    assert all(b - a == 3 for a, b in zip(detected, detected[1:])), detected  # every 0.6 s at 5 fps
    assert all(d.motion is not None and d.motion.moving for d in later), "there is motion all along"


def test_somebody_new_outside_the_tracks_is_detected_at_once() -> None:
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6))
    decisions = walk(gate, 6.0, speed=40.0, extra=lambda t: [(500, 60 + 30 * t)] if t >= 4.0 else [])
    after = decisions[20:]  # from 4 s on a second, untracked person walks down at x 500
    assert all(d.detect and d.reason == "motion" for d in after), [d.reason for d in after]
    assert not all(d.detect for d in decisions[5:20]), "before, the one tracked person was sampled slower"


def test_a_track_that_does_not_move_as_predicted_is_detected_at_once() -> None:
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6))
    gate.decide(people(0), 0.0)
    gate.decide(people(1, (100, 200)), 0.2)
    gate.note_tracks(view(0.2, [box_at(100, 200)], [[40, 0, 40, 0]]))
    assert gate.decide(people(2, (108, 200)), 0.4).reason == "tracked_wait"  # as predicted
    d = gate.decide(people(3, (100, 240)), 0.6)  # turned round and came down 40 px instead
    assert d.detect and d.reason == "motion"


def test_young_and_lost_tracks_get_every_frame() -> None:
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6))
    gate.decide(people(0), 0.0)
    gate.decide(people(1, (100, 200)), 0.2)
    gate.note_tracks(view(0.2, [box_at(100, 200)], [[40, 0, 40, 0]], settled=False))
    assert [gate.decide(people(i, (100 + 8 * (i - 1), 200)), i / FPS).reason for i in (2, 3)] == ["unsettled"] * 2
    # lost with change in its predicted box: a person the detector missed, still walking
    gate.note_tracks(view(0.6, [box_at(116, 200)], [[40, 0, 40, 0]], lost=True))
    assert gate.decide(people(4, (124, 200)), 0.8).reason == "lost"
    # lost with nothing moving where it should be: it left (or stands still): the tracked rate
    gate.note_tracks(view(0.8, [box_at(124, 200)], [[40, 0, 40, 0]], lost=True))
    gate.decide(people(5), 1.0)  # the block vanishes: change where it was, explained by its box
    assert gate.decide(people(6), 1.2).reason == "tracked_wait"


def test_a_lost_track_walking_out_of_the_picture_needs_no_full_rate() -> None:
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6))
    gate.decide(people(0), 0.0)
    gate.decide(people(1, (730, 200)), 0.2)
    # lost at the right border, predicted to go on out of the picture at 100 px/s; its last
    # visible part still moves (change inside the box), but most of the box is outside
    v = view(0.2, [box_at(740, 200)], [[100, 0, 100, 0]], lost=True)
    assert v.in_picture(0.2).tolist() == [True] and v.in_picture(0.4).tolist() == [False]
    gate.note_tracks(v)
    assert gate.decide(people(2, (752, 200)), 0.4).reason == "tracked_wait"


def test_an_unwatched_track_explains_its_motion_but_needs_no_full_rate() -> None:
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6))
    decisions = walk(gate, 6.0, speed=40.0, watched=False, settled=False)
    assert {d.reason for d in decisions[2:]} == {"tracked", "tracked_wait"}


def test_approaching_a_line_raises_the_rate_until_it_is_passed() -> None:
    # a vertical line at x = 0.5 (384 px): the anchor (bottom centre) walks right at 80 px/s
    line = [[[0.5, 0.0], [0.5, 1.0]]]
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6, lookahead_s=1.0, approach_margin=0.02))
    decisions = walk(gate, 7.0, speed=80.0, segments=line, bands=[0.02])
    reasons = [(round(i / FPS, 1), d.reason) for i, d in enumerate(decisions)]
    # the anchor is at 120 + 80 t px: it reaches 0.5 - 0.04 (353 px) at t = 2.9 s and leaves the far
    # side's debounce band (399 px) at 3.5 s; from a second before, every frame; then the tracked rate
    hot = [t for t, r in reasons if r == "approach"]
    assert hot and 1.6 <= hot[0] <= 2.2 and hot[-1] == 3.4, reasons
    assert all(r == "approach" for t, r in reasons if hot[0] <= t <= hot[-1]), reasons
    assert {r for t, r in reasons if t >= 4.2} <= {"tracked", "tracked_wait"}, reasons


def test_standing_by_an_edge_is_no_news() -> None:
    edge = [[[0.0, 0.67], [1.0, 0.67]]]  # a zone edge 1 px under the standing person's feet (y 280)
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6, approach_margin=0.02))
    decisions = walk(gate, 5.0, speed=0.0, segments=edge, bands=[0.0])
    assert {d.reason for d in decisions[2:]} <= {"tracked", "tracked_wait", "hold"}, [d.reason for d in decisions]
    assert not gate.approaching(view(1.0, [box_at(100, 200)], [[0, -30, 0, -30]], segments=edge), 1.0), \
        "walking away from the edge"
    assert gate.approaching(view(1.0, [box_at(100, 200)], [[0, 30, 0, 30]], segments=edge), 1.0), \
        "walking at it"


def test_a_due_rule_timer_raises_the_rate_once_due() -> None:
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6))
    v = view(0.0, [box_at(100, 200)], due=(2.1,))
    assert not gate.approaching(v, 2.0) and gate.approaching(v, 2.2)
    assert not MotionGate(MotionConfig(lookahead_s=0.0)).approaching(v, 3.0), "lookahead_s 0 turns it off"


def test_an_old_view_expires_with_the_tracks() -> None:
    gate = MotionGate(MotionConfig(tracked_interval_s=0.6, periodic_s=100.0, hold_s=0.0))
    gate.decide(people(0), 0.0)
    gate.note_tracks(view(0.0, [box_at(100, 200)], valid_s=1.5))
    assert gate.decide(people(1), 0.2).reason == "tracked_wait"
    assert gate.decide(people(10), 2.0).reason == "still", "the tracks expired 1.5 s after the detection"


def test_zone_edges_on_the_picture_border_are_not_watched() -> None:
    cam = CameraConfig.model_validate({
        "name": "street", "source": "rtsp://h/s", "grid_cell": "g",
        "zones": {"lower": {"polygon": [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]}},
        "rules": {"in": {"kind": "intrusion", "zone": "lower", "labels": ["person"]}}})
    v = CameraAnalytics("street", cam, AlertsConfig(), ["person"]).track_view(0.0, (W, H))
    # of the four edges only the one across the picture (y = 0.5) can be crossed in view
    assert v.segments.tolist() == [[[0.0, 0.5], [1.0, 0.5]]] or v.segments.tolist() == [[[1.0, 0.5], [0.0, 0.5]]]
    assert v.bands.tolist() == [0.0] and v.applies.shape == (0, 1)


def test_segment_distance() -> None:
    p0 = np.array([[0.0, 0.0], [0.0, 0.0], [0.2, 0.2]])
    p1 = np.array([[1.0, 1.0], [0.2, 0.0], [0.2, 0.2]])  # crossing, short of it, a still point
    q0, q1 = np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])
    d = segment_distance(p0, p1, q0, q1)
    assert d.shape == (3, 1)
    assert d[0, 0] == 0.0
    assert d[1, 0] == pytest.approx(0.8 / np.sqrt(2))
    assert d[2, 0] == pytest.approx(0.6 / np.sqrt(2))


def test_camera_analytics_tells_the_gate_tracks_lines_zones_and_timers() -> None:
    cam = CameraConfig.model_validate({
        "name": "street", "source": "rtsp://h/s", "grid_cell": "g", "detect_fps": 5,
        "zones": {"square": {"polygon": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]}},
        "lines": {"kerb": {"a": [0.0, 0.9], "b": [1.0, 0.9]}},
        "rules": {"stay": {"kind": "loitering", "zone": "square", "labels": ["person"], "dwell_s": 3},
                  "cross": {"kind": "line_crossing", "line": "kerb", "labels": ["person"], "debounce": 0.03}}})
    names = ["person", "car"]
    analytics = CameraAnalytics("street", cam, AlertsConfig(), names)
    for i in range(8):  # a person walking right inside the square, and a parked car
        t = i / FPS
        x = 400 + 20 * t
        dets = Detections(np.array([[x, 150, x + 40, 230], [600, 300, 700, 360]]), np.array([0.9, 0.9]),
                          np.array([0, 1]), names)
        analytics.process(dets, t, (W, H))
    v = analytics.gate._view
    assert v is not None and v.t == pytest.approx(1.4) and v.frame_wh == (W, H)
    order = np.argsort(v.boxes[:, 0])
    assert v.watched[order].tolist() == [True, False], "the car is tracked, not watched"
    assert v.settled.all() and not v.lost.any(), "both followed for 1.2 s, matched on the last frame"
    person = order[0]
    assert v.velocity[person, 0] == pytest.approx(20.0, abs=6.0), "about 20 px/s to the right"
    assert len(v.segments) == 5 and sorted(v.bands.tolist()) == [0.0] * 4 + [0.03], "4 zone edges, 1 line"
    assert v.applies[person].all() and not v.applies[order[1]].any()
    assert len(v.due) == 1 and v.due[0] == pytest.approx(0.2 + 3.0), "the dwell fires 3 s after confirmation"
