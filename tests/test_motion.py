"""Motion gating on synthetic frames: a textured static scene with sensor noise (σ 2.5 grey levels)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.analyse.motion import MotionDetector, MotionGate
from pipeline.config import IdleConfig, MotionConfig

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
