"""Sightings from the shared clips through the real detector and tracker: the records they make, and
what the stage costs beside detection and tracking."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from pipeline.analyse.detect import Detector, iter_media
from pipeline.analyse.models import resolve_model
from pipeline.analyse.rules import TrackedObject
from pipeline.analyse.sightings import Sighting, SightingsStage
from pipeline.analyse.track import Tracker
from pipeline.config.schema import SightingsConfig
from tests.unit.analyse.plate_clips import TRUCK, photo


def run_stage(frames: Iterable[tuple[float, np.ndarray]], model: Path, cfg: SightingsConfig
              ) -> tuple[list[Sighting], float, float, int]:
    """Detect + track each ``(wall clock, picture)``; the stage on each, then flushed.

    Returns the sightings, the seconds spent detecting and tracking, the seconds in the stage, frames.
    """
    det = Detector(*resolve_model(str(model)), threads=1)
    tracker = Tracker()
    stage = SightingsStage("clip", cfg)
    out: list[Sighting] = []
    det_s = stage_s = 0.0
    n = 0
    t = 1_780_000_000.0
    for t, img in frames:
        t0 = time.process_time()
        dets = det.detect(img)
        tracks = tracker.update(dets.xyxy, dets.score, dets.class_id, t)
        objects = [TrackedObject(tr.track_id, det.names[tr.class_id], float(tr.score), tuple(tr.box))  # type: ignore[arg-type]
                   for tr in tracks]
        t1 = time.process_time()
        out += stage.update(img, objects, t)
        stage_s += time.process_time() - t1
        det_s += t1 - t0
        n += 1
    t0 = time.process_time()
    out += stage.flush(t + 10)
    stage_s += time.process_time() - t0
    return out, det_s, stage_s, n


def run_clip(clip: Path, model: Path, seconds: float, every: int) -> tuple[list[Sighting], float, float, int]:
    """:func:`run_stage` on every ``every``-th frame of the first ``seconds`` of ``clip``."""
    first = itertools.takewhile(lambda f: f[1] <= seconds, iter_media(clip, every=every))  # stop decoding there
    return run_stage(((1_780_000_000.0 + pts, img) for _, pts, img in first), model,
                     SightingsConfig(every_s=60.0, sample_s=0.5))


def truck_clip(frames: int = 25) -> list[np.ndarray]:
    """The truck photo driving down a 640x480 road: the camera sees it come closer (top to bottom, growing)."""
    truck = photo(TRUCK)[40:290, 60:280]  # the truck with some road around it
    out = []
    for i in range(frames):
        f = i / (frames - 1)
        scale = 0.8 + 0.4 * f
        t = cv2.resize(truck, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.full((480, 640, 3), (60, 62, 64), np.uint8)
        y = int(10 + (480 - t.shape[0] - 20) * f)
        x = 200
        canvas[y:y + t.shape[0], x:x + t.shape[1]] = t
        out.append(canvas)
    return out


def run_frames(frames: list[np.ndarray], model: Path, fps: float, cfg: SightingsConfig | None = None
               ) -> tuple[list[Sighting], float, float]:
    """:func:`run_stage` on ``frames`` at ``fps``."""
    out, det_s, stage_s, _ = run_stage(((1_780_000_000.0 + i / fps, img) for i, img in enumerate(frames)), model,
                                       cfg or SightingsConfig(sample_s=0.0))
    return out, det_s, stage_s


def test_truck_clip_makes_one_vehicle_sighting(yolox_onnx: Path) -> None:
    """The real detector calls the truck a bus (0.85): one vehicle track, blue, coming down the picture."""
    out, _, _ = run_frames(truck_clip(), yolox_onnx, fps=5.0)
    vehicles = [s for s in out if s.label in ("car", "bus", "truck")]
    assert len(vehicles) == 1, [(s.label, s.track_id, s.first_t, s.last_t) for s in out]
    s = vehicles[0]
    assert s.final and s.last_t - s.first_t >= 3.0  # the 5 s clip, less the frames before the truck is detected
    assert s.colour_names()["body"][0] == "blue"
    assert s.direction == "top_to_bottom"
    assert s.best_t - s.first_t >= 2.0  # the best view is a late one: the truck is biggest near the camera
    assert s.plate is None  # plates are off by default


def test_car_clip_sightings_cost_and_what_the_model_sees(car_clip: Path, yolox_onnx: Path) -> None:
    """The top-down car park: YOLOX-Nano labels cars seen from above "cell phone" or "bus", so the
    clip gives few vehicle sightings; measured here for the cost of the stage on a whole clip."""
    out, det_s, stage_s, frames = run_clip(car_clip, yolox_onnx, seconds=30.0, every=3)
    share = stage_s / det_s
    print(f"\ncar clip: {frames} frames, detect+track {det_s:.2f} s CPU, sightings {stage_s:.3f} s CPU "
          f"({100 * share:.1f} %), sightings: {[(s.label, round(s.last_t - s.first_t, 1)) for s in out]}")
    assert all(s.label in SightingsConfig().labels for s in out)
    assert share < 0.10


def test_person_clip_makes_person_sightings_with_clothes_colours(person_clip: Path, yolox_onnx: Path) -> None:
    out, det_s, stage_s, frames = run_clip(person_clip, yolox_onnx, seconds=30.0, every=3)
    people = [s for s in out if s.label == "person"]
    assert people, [(s.label, s.track_id) for s in out]
    for s in people:
        assert s.colours["upper"] and s.colours["lower"]
        names = set(s.colour_names()["upper"]) | set(s.colour_names()["lower"])
        assert names <= {"red", "orange", "yellow", "green", "blue", "purple", "black", "white", "grey", "brown"}
    share = stage_s / det_s
    print(f"\nperson clip: {frames} frames, sightings {100 * share:.1f} % of detect+track CPU, {len(people)} people: "
          + "; ".join(f"{'/'.join(s.colour_names()['upper'])} over {'/'.join(s.colour_names()['lower'])}"
                      for s in people))
    assert share < 0.10
    assert np.isfinite(share)
