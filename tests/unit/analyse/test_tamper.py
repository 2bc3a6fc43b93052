"""Tamper checks on arrays: the shared person clip (a fixed camera over a room people walk into),
decoded with PyAV to the 640x360 luma plane a worker would hand over, then darkened, covered,
blurred, moved, darkened slowly like a night falling, or crossed by a bus.

Frames are fed with made-up capture times at 5 fps, so minutes of camera time run in seconds;
the default thresholds are used unless a test says otherwise, since those are what cameras get.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.analyse.tamper import KINDS, TamperDetector, TamperEvent
from pipeline.config import ConfigError, parse_config
from pipeline.config.schema import TamperConfig
from tests.support.config import config_text

FPS = 5.0
SIZE = (640, 360)
Transform = Callable[[np.ndarray, int], np.ndarray]  # (luma, index within the stretch) -> luma


@pytest.fixture(scope="module")
def clip_frames(person_clip: Path) -> list[np.ndarray]:
    """60 s of the person clip at 5 fps: limited-range Y planes at 640x360 (people walk in at ~7 s)."""
    out: list[np.ndarray] = []
    with av.open(str(person_clip)) as c:
        stream = c.streams.video[0]
        step = max(1, round(float(stream.average_rate) / FPS))
        for i, f in enumerate(c.decode(stream)):
            if i % step:
                continue
            f = f.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p")
            plane = f.planes[0]
            out.append(np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width].copy())
            if len(out) >= 60 * FPS:
                break
    return out


class Camera:
    """The clip played in a loop into a detector, with a clock in capture-time seconds."""

    def __init__(self, frames: list[np.ndarray], cfg: TamperConfig | None = None, t0: float = 1.8e9):
        self.det = TamperDetector("cam", cfg or TamperConfig())
        self.frames = itertools.cycle(frames)
        self.t0 = t0
        self.t = t0
        self.events: list[TamperEvent] = []

    def play(self, seconds: float, transform: Transform | None = None, fps: float = FPS) -> list[TamperEvent]:
        """Feed ``seconds`` of camera time; the events raised meanwhile (also kept in ``events``)."""
        out: list[TamperEvent] = []
        for i in range(int(round(seconds * fps))):
            y = next(self.frames)
            if transform is not None:
                y = transform(y, i)
            out += self.det.check(y, self.t, True)
            self.t += 1.0 / fps
        self.events += out
        return out

    def at(self, ev: TamperEvent) -> float:
        return round(ev.time - self.t0, 1)


def timeline(cam: Camera) -> list[tuple[str, str, float]]:
    return [(e.kind, e.phase, cam.at(e)) for e in cam.events]


# ------------------------------------------------------------------------------ tampering, as arrays


def darkened(gain: float) -> Transform:
    """Luma scaled towards limited-range black (16): gain 0 is a black picture."""
    return lambda y, i: (16 + (y.astype(np.float32) - 16) * gain).astype(np.uint8)


def flat(y: np.ndarray, i: int) -> np.ndarray:
    """A card, cap or tape over the lens: one grey, with the encoder's speckle."""
    out = np.full_like(y, 120)
    out[::7, ::5] = 121
    return out


def hand(y: np.ndarray, i: int) -> np.ndarray:
    """A hand held over the lens: a defocused skin-toned blob over ~90 % of the view, shaded, a little moving."""
    h, w = y.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = w * (0.45 + 0.02 * np.sin(i / 3)), h * 0.55
    r = np.sqrt(((xx - cx) / (w * 0.62)) ** 2 + ((yy - cy) / (h * 0.75)) ** 2)
    skin = 150 - 40 * r  # lit in the middle, darker towards the edge of the hand
    inside = r < 1.0
    out = y.copy()
    out[inside] = skin[inside].astype(np.uint8)
    assert inside.mean() > 0.9
    return cv2.GaussianBlur(out, (0, 0), 3)


def blurred(sigma: float) -> Transform:
    return lambda y, i: cv2.GaussianBlur(y, (0, 0), sigma)


def shifted(dx: float, dy: float = 0.0) -> Transform:
    """The camera knocked sideways: the view shifted by (dx, dy) of its size."""
    m = np.array([[1, 0, dx * SIZE[0]], [0, 1, dy * SIZE[1]]], np.float32)
    return lambda y, i: cv2.warpAffine(y, m, SIZE, borderMode=cv2.BORDER_REFLECT)


def rotated(degrees: float, zoom: float = 1.0) -> Transform:
    m = cv2.getRotationMatrix2D((SIZE[0] / 2, SIZE[1] / 2), degrees, zoom)
    return lambda y, i: cv2.warpAffine(y, m, SIZE, borderMode=cv2.BORDER_REFLECT)


_RNG = np.random.default_rng(3)
_BUS_SIDE = cv2.resize(_RNG.integers(40, 90, (6, 30), dtype=np.uint8), (SIZE[0] * 2, int(SIZE[1] * 0.85)),
                       interpolation=cv2.INTER_NEAREST)
_BUS_SIDE[int(SIZE[1] * 0.1):int(SIZE[1] * 0.35), :] = 30  # a band of dark windows
_BUS_SIDE[int(SIZE[1] * 0.1):int(SIZE[1] * 0.35), ::80] = 200  # window posts


def bus(seconds: float) -> Transform:
    """A bus twice the view's width, 85 % of its height, crossing the whole view in ``seconds``."""
    n = int(seconds * FPS)

    def cross(y: np.ndarray, i: int) -> np.ndarray:
        w = SIZE[0]
        x = int(w - (3 * w) * min(i, n) / n)  # its front from the right edge to beyond the left
        out = y.copy()
        top = SIZE[1] - _BUS_SIDE.shape[0]
        a, b = max(0, x), min(w, x + _BUS_SIDE.shape[1])
        if a < b:
            out[top:, a:b] = _BUS_SIDE[:, a - x:b - x]
        return out

    return cross


def headlights(y: np.ndarray, i: int) -> np.ndarray:
    """A car's headlights glaring into the lens at night for a moment."""
    out = y.copy()
    for cx in (220, 420):
        cv2.circle(out, (cx, 250), 70, 255, -1)
    return cv2.GaussianBlur(out, (0, 0), 8)


def _new_and_end(cam: Camera, kind: str) -> tuple[TamperEvent, TamperEvent]:
    assert [(e.kind, e.phase) for e in cam.events] == [(kind, "new"), (kind, "end")], timeline(cam)
    new, end = cam.events
    assert new.alert_id == end.alert_id and new.alert_id.startswith("cam-")
    return new, end


# ------------------------------------------------------------------------------ tests


def test_normal_clip_raises_nothing(clip_frames: list[np.ndarray]) -> None:
    cam = Camera(clip_frames)
    cam.play(180)  # three loops of the minute: people walk in, stand, leave; the loop's jump
    assert cam.events == [], timeline(cam)
    assert cam.det.warm and cam.det.last is not None
    st = cam.det.last
    assert st.structure is not None and st.structure > 0.7 and st.layout is not None and st.layout > 0.7, st


TAMPERING: dict[str, tuple[str, Transform]] = {
    "black": ("dark", darkened(0.02)),
    "flat card": ("covered", flat),
    "hand over the lens": ("covered", hand),
    "defocused (Gaussian sigma 4)": ("blur", blurred(4.0)),
    "knocked aside (10 % of the view)": ("moved", shifted(0.10)),
    "turned (8 degrees, zoomed 10 %)": ("moved", rotated(8.0, 1.1)),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_each_tampering_raises_its_kind_within_for_s_and_ends_after_recovery(
        clip_frames: list[np.ndarray], name: str) -> None:
    kind, transform = TAMPERING[name]
    cfg = TamperConfig()
    for_s = getattr(cfg, kind).for_s
    cam = Camera(clip_frames, cfg)
    assert cam.play(cfg.warmup_s + 10) == []
    started = cam.t
    cam.play(for_s + 5, transform)
    recovered = cam.t
    cam.play(cfg.clear_s + 15)
    new, end = _new_and_end(cam, kind)
    assert for_s <= new.time - started <= for_s + 1.5, timeline(cam)
    assert abs(new.start_time - started) <= 1.0, "start_time is when the tampering began (the clip shows it)"
    assert cfg.clear_s <= end.time - recovered <= cfg.clear_s + 2.0, timeline(cam)
    assert recovered - 1.5 <= (end.end_time or 0) <= recovered, "end_time: the last time it held"
    assert 0.0 < new.score <= 1.0 and new.detail and "normal again" in end.detail
    print(f"{name}: {kind} new {new.time - started:.1f} s after it began (for_s {for_s:g}), "
          f"end {end.time - recovered:.1f} s after recovery; {new.detail}")


def test_a_tampering_shorter_than_for_s_raises_nothing(clip_frames: list[np.ndarray]) -> None:
    cam = Camera(clip_frames)
    cam.play(30)
    cam.play(TamperConfig().covered.for_s - 3, hand)  # a hand over the lens, taken away in time
    cam.play(20)
    assert cam.events == [], timeline(cam)


def night(minutes: float, floor: float) -> Transform:
    """Dusk: the picture's gain falls exponentially from 1 to ``floor`` over ``minutes`` (1 frame a second)."""
    n = minutes * 60

    def dusk(y: np.ndarray, i: int) -> np.ndarray:
        return darkened(floor ** min(1.0, i / n))(y, i)

    return dusk


def test_nightfall_does_not_fire_dark_on_a_camera_normally_dark_at_night(clip_frames: list[np.ndarray]) -> None:
    # 30 minutes from day to a night at 4 % of the day's brightness (mean ~6 of 255), then an hour of night
    cam = Camera(clip_frames)
    cam.play(60)
    cam.play(30 * 60, night(30, 0.04), fps=1)
    cam.play(60 * 60, darkened(0.04), fps=1)
    assert cam.events == [], timeline(cam)
    assert cam.det.last is not None and cam.det.last.mean < TamperConfig().dark.max_luma, cam.det.last
    # the same camera, covered at night: still dark (relative to its night)
    cam.play(30, darkened(0.0), fps=1)
    assert [(e.kind, e.phase) for e in cam.events] == [("dark", "new")], timeline(cam)


def test_nightfall_fires_dark_when_configured_absolute(clip_frames: list[np.ndarray]) -> None:
    cfg = TamperConfig(dark={"relative": False})
    cam = Camera(clip_frames, cfg)
    cam.play(60)
    cam.play(30 * 60, night(30, 0.04), fps=1)
    assert [(e.kind, e.phase) for e in cam.events] == [("dark", "new")], timeline(cam)


def test_passing_buses_and_headlights_raise_nothing(clip_frames: list[np.ndarray]) -> None:
    cam = Camera(clip_frames)
    cam.play(30)
    for _ in range(3):
        cam.play(4, bus(4))  # 85 % of the view hidden by the bus for most of 4 s
        cam.play(8)
        cam.play(3, headlights)
        cam.play(8)
    assert cam.events == [], timeline(cam)
    # the bus was noticed, and forgiven: the structure fell below moved's threshold while it passed
    probe = Camera(clip_frames)
    probe.play(30)
    lows = []
    for i in range(int(4 * FPS)):
        probe.det.check(bus(4)(next(probe.frames), i), probe.t, True)
        probe.t += 1 / FPS
        if probe.det.last is not None and probe.det.last.structure is not None:
            lows.append(probe.det.last.structure)
    assert min(lows) < TamperConfig().moved.min_similarity, lows


def test_moved_view_is_adopted_after_adopt_after_s(clip_frames: list[np.ndarray]) -> None:
    cfg = TamperConfig(moved={"for_s": 20, "adopt_after_s": 120})
    cam = Camera(clip_frames, cfg)
    cam.play(30)
    cam.play(200, shifted(0.12))  # re-aimed on purpose: the new view is kept
    new, end = _new_and_end(cam, "moved")
    assert 120 <= end.time - new.start_time <= 122 and "adopted" in end.detail, timeline(cam)
    assert cam.det.open_alerts == {}
    cam.play(60, shifted(0.12))
    assert len(cam.events) == 2, "the adopted view is the new normal"


def test_a_camera_covered_from_its_first_frame_still_alerts(clip_frames: list[np.ndarray]) -> None:
    cam = Camera(clip_frames)
    cam.play(30, flat)
    assert [(e.kind, e.phase) for e in cam.events] == [("covered", "new")], timeline(cam)
    assert not cam.det.warm, "nothing is learned from a covered lens"


def test_a_camera_starting_at_night_does_not_alert(clip_frames: list[np.ndarray]) -> None:
    cam = Camera(clip_frames)
    cam.play(120, darkened(0.12))  # mean ~17 of 255: a dim street
    assert cam.events == [], timeline(cam)


def test_flush_ends_open_alerts(clip_frames: list[np.ndarray]) -> None:
    cam = Camera(clip_frames)
    cam.play(30)
    cam.play(20, darkened(0.0))
    assert list(cam.det.open_alerts) == ["dark"]
    ended = cam.det.flush(cam.t)
    assert [(e.kind, e.phase) for e in ended] == [("dark", "end")] and ended[0].end_time is not None
    assert cam.det.open_alerts == {}


def test_disabled_kinds_and_detector_raise_nothing(clip_frames: list[np.ndarray]) -> None:
    cam = Camera(clip_frames, TamperConfig(dark={"enabled": False}, covered={"enabled": False}))
    cam.play(30)
    cam.play(30, darkened(0.0))
    assert cam.events == [], timeline(cam)
    off = Camera(clip_frames, TamperConfig(enabled=False))
    off.play(10)
    off.play(30, flat)
    assert off.events == [] and off.det.checks == 0


def test_bgr_frames_give_the_same_decisions(clip_frames: list[np.ndarray]) -> None:
    """A source without a YUV plane hands over BGR (full range): the same statistics, the same alert."""
    cam = Camera(clip_frames)
    det = TamperDetector("cam", TamperConfig())
    y = clip_frames[50]
    bgr = cv2.cvtColor(((y.astype(np.float32) - 16) * 255 / 219).clip(0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    det.check(bgr, cam.t, False)
    cam.det.check(y, cam.t, True)
    a, b = det.last, cam.det.last
    assert a is not None and b is not None
    assert abs(a.mean - b.mean) < 1.5 and abs(a.std - b.std) < 1.5, (a, b)


def test_tamper_config_bounds_are_checked() -> None:
    ok = parse_config(config_text({"cam": {"source": "rtsp://cam/1", "tamper": {"dark": {"relative": False}}}}))
    t = ok.cameras["cam"].tamper
    assert t.enabled and not t.dark.relative and t.covered.for_s == 15 and t.severity == "high"
    with pytest.raises(ConfigError) as ei:
        parse_config(config_text({"cam": {"source": "rtsp://cam/1", "tamper": {"blur": {"ratio": 2}}}}),
                     filename="streams.yaml")
    assert "streams.yaml:" in str(ei.value) and "tamper.blur.ratio" in str(ei.value), ei.value
    with pytest.raises(ConfigError):
        parse_config(config_text({"cam": {"source": "rtsp://cam/1", "tamper": {"moved": {"wobble": 1}}}}))


def _costs(frames: Iterator[np.ndarray], n: int, cfg: TamperConfig) -> list[float]:
    det = TamperDetector("cam", cfg)
    out = []
    t = 0.0
    for _ in range(n):
        y = next(frames)
        t0 = time.perf_counter()
        det.check(y, t, True)
        out.append((time.perf_counter() - t0) * 1000)
        t += 1 / FPS
    return out[10:]


def test_a_check_costs_well_under_a_millisecond(clip_frames: list[np.ndarray]) -> None:
    every = TamperConfig(interval_s=0)  # measure the check itself, not the interval's skipping
    small = _costs(itertools.cycle(clip_frames), 300, every)
    big_frames = [cv2.resize(y, (1920, 1080)) for y in clip_frames[:20]]
    big = _costs(itertools.cycle(big_frames), 200, every)
    p50, p99 = statistics.median(small), float(np.percentile(small, 99))
    print(f"tamper check per sampled frame: 640x360 p50 {p50:.3f} ms p99 {p99:.3f} ms; "
          f"1920x1080 p50 {statistics.median(big):.3f} ms; with interval_s 0.5 at 5 fps it runs on 2 frames of 5")
    assert p50 < 1.0, small
    assert statistics.median(big) < 2.0, big


def test_kinds_are_the_documented_ones() -> None:
    import json

    schema = json.loads((Path(__file__).resolve().parents[3] / "docs/schemas/event.schema.json").read_text())
    enum = schema["$defs"]["alert"]["properties"]["tamper"]["properties"]["kind"]["enum"]
    assert list(enum) == list(KINDS)
