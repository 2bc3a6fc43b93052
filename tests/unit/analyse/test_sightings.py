"""Sightings: tracks in, records out: when they are written, the best view, colours, direction, plates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.analyse.plates import PlateReader
from pipeline.analyse.rules import TrackedObject
from pipeline.analyse.sightings import Sighting, SightingsStage, direction_of, sharpness
from pipeline.config.schema import SightingsConfig
from tests.unit.analyse.plate_clips import BLUE, photo

W, H = 1280, 720


def street() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.full((H, W, 3), (118, 120, 122), np.uint8)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def person_at(frame: np.ndarray, x: int, y: int, blur: float = 0.0) -> tuple[float, float, float, float]:
    """Draws a person (red jacket, blue trousers, a patterned bag) with its box's top-left at (x, y)."""
    w, h = 60, 180
    cv2.rectangle(frame, (x + 5, y + 30), (x + w - 5, y + 90), (30, 30, 200), -1)
    cv2.rectangle(frame, (x + 10, y + 90), (x + w - 10, y + h), (150, 60, 20), -1)
    cv2.circle(frame, (x + w // 2, y + 15), 12, (40, 40, 40), -1)
    for k in range(0, 50, 6):
        cv2.line(frame, (x + 8, y + 35 + k), (x + 22, y + 35 + k), (250, 250, 250), 1)
    if blur:
        roi = frame[y:y + h, x:x + w]
        frame[y:y + h, x:x + w] = cv2.GaussianBlur(roi, (0, 0), blur)
    return (float(x), float(y), float(x + w), float(y + h))


def cfg(**kw: object) -> SightingsConfig:
    base: dict[str, object] = {"every_s": 60.0, "min_duration_s": 1.0, "end_after_s": 2.0, "sample_s": 0.0}
    base.update(kw)
    return SightingsConfig(**base)  # type: ignore[arg-type]


def walk(stage: SightingsStage, frames: int, t0: float = 1000.0, fps: float = 5.0, dx: int = 40,
         blur_at: set[int] | None = None, label: str = "person") -> list:
    out = []
    for i in range(frames):
        frame = street()
        box = person_at(frame, 100 + dx * i, 300, blur=3.0 if blur_at and i in blur_at else 0.0)
        out += stage.update(frame, [TrackedObject(7, label, 0.9, box)], t0 + i / fps)
    return out


def test_a_track_becomes_one_sighting_when_it_ends() -> None:
    stage = SightingsStage("gate", cfg())
    assert walk(stage, 20) == []  # 4 s of walking: nothing until it ends
    assert stage.active == 1
    done = stage.update(street(), [], 1000.0 + 19 / 5 + 2.5)
    assert len(done) == 1 and stage.active == 0
    s = done[0]
    assert s.final and s.label == "person" and s.camera == "gate" and s.track_id == 7 and s.hits == 20
    assert s.first_t == 1000.0 and s.last_t == pytest.approx(1003.8)
    assert s.direction == "left_to_right"
    assert s.colour_names()["upper"][0] == "red"
    assert s.colour_names()["lower"][0] == "blue"
    assert s.crop.ndim == 3 and max(s.crop.shape[:2]) <= 256
    assert s.sighting_id == "gate:1000000:7"
    assert s.to_dict()["plate"] is None


def test_best_view_is_sharp_not_blurred() -> None:
    stage = SightingsStage("gate", cfg())
    walk(stage, 10, blur_at={0, 1, 2, 3, 4, 6, 7, 8, 9})  # only frame 5 is sharp
    s = stage.flush(1010.0)[0]
    assert s.best_t == pytest.approx(1001.0)


def test_sharpness_drops_with_blur() -> None:
    frame = street()
    box = person_at(frame, 100, 100)
    x1, y1, x2, y2 = map(int, box)
    crisp = frame[y1:y2, x1:x2]
    assert sharpness(cv2.GaussianBlur(crisp, (0, 0), 3)) < 0.5 * sharpness(crisp)


def test_a_long_track_is_written_every_n_seconds_with_the_same_id() -> None:
    stage = SightingsStage("gate", cfg(every_s=5.0))
    out = []
    for i in range(60):  # 12 s standing still at 5 fps
        frame = street()
        box = person_at(frame, 300, 300)
        out += stage.update(frame, [TrackedObject(3, "person", 0.9, box)], 2000.0 + i / 5)
    assert [s.final for s in out] == [False, False]
    assert [round(s.last_t - 2000.0, 1) for s in out] == [5.0, 10.0]
    out += stage.flush(2020.0)
    assert out[-1].final and len({s.sighting_id for s in out}) == 1
    assert out[-1].direction == "stationary"


def test_flicker_and_unwatched_labels_are_not_sightings() -> None:
    stage = SightingsStage("gate", cfg(labels=["car"]))
    assert walk(stage, 20, label="person") == [] and stage.active == 0
    stage = SightingsStage("gate", cfg())
    walk(stage, 3)  # 0.4 s
    assert stage.flush(1100.0) == []
    assert SightingsStage("gate", cfg(enabled=False)).update(street(), [TrackedObject(1, "person", 0.9,
                                                                                     (0, 0, 50, 50))], 1.0) == []


@pytest.mark.parametrize(("first", "last", "expected"), [
    ((100, 300), (900, 320), "left_to_right"),
    ((900, 300), (100, 320), "right_to_left"),
    ((600, 100), (620, 600), "top_to_bottom"),
    ((600, 600), (620, 100), "bottom_to_top"),
    ((600, 300), (650, 320), "stationary"),
])
def test_direction(first: tuple[float, float], last: tuple[float, float], expected: str) -> None:
    assert direction_of(first, last, (W, H)) == expected


def test_plates_on_needs_a_reader() -> None:
    with pytest.raises(ValueError, match="gate"):
        SightingsStage("gate", cfg(plates=True))


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(threads=2)


def drive_past(stage: SightingsStage, car: np.ndarray, frames: int) -> list[Sighting]:
    """``car`` (a 570x228 picture, track 11) drives left to right along the street at 5 fps from t=3000,
    then the street is empty at t=3010: what the stage made."""
    out: list[Sighting] = []
    for i in range(frames):
        frame = street()
        x = 20 + 30 * i
        frame[400:628, x:x + 570] = car
        out += stage.update(frame, [TrackedObject(11, "car", 0.9, (x, 400, x + 570, 628))], 3000.0 + i / 5)
    out += stage.update(street(), [], 3010.0)
    return out


def test_vehicle_track_gets_its_plate_from_two_reads_only(reader: PlateReader) -> None:
    """The plate photo's car drives across a 1280x720 picture for 4 s at 5 fps: 20 frames, 2 reads."""
    car = photo(BLUE)
    car = cv2.resize(car, (570, 228), interpolation=cv2.INTER_AREA)
    calls: list[int] = []

    class Counting:
        def read(self, img: np.ndarray):  # type: ignore[no-untyped-def]
            calls.append(img.shape[1])
            return reader.read(img)

    stage = SightingsStage("checkpoint", cfg(plates=True, plate_reads=2), plate_reader=Counting())
    out = drive_past(stage, car, 20)
    assert len(out) == 1
    s = out[0]
    assert s.plate is not None and s.plate.text == "藏D·T5022" and s.plate.reads == 2
    assert len(calls) == 2 and stage.plate_reads == 2
    assert s.colour_names()["body"][0] == "orange"
    assert s.direction == "left_to_right"
    assert s.to_dict()["plate"]["plate"] == "藏D·T5022"  # type: ignore[index]


def test_plates_off_reads_nothing(reader: PlateReader) -> None:
    stage = SightingsStage("street", cfg(plates=False), plate_reader=reader)
    walk(stage, 10, label="car")
    s = stage.flush(1100.0)[0]
    assert s.plate is None and stage.plate_reads == 0


def test_a_track_longer_than_an_hour_goes_on_in_a_new_sighting() -> None:
    """A car parked all afternoon: one record per hour at most, so a time search can bound its range."""
    from pipeline.analyse.sightings import MAX_SPAN_S

    stage = SightingsStage("carpark", cfg(every_s=3600.0, sample_s=10.0))
    frame = street()
    box = person_at(frame, 300, 300)
    out = []
    t = 10_000.0
    while t <= 10_000.0 + 2.5 * MAX_SPAN_S:
        out += stage.update(frame, [TrackedObject(5, "car", 0.9, box)], t)
        t += 10.0
    out += stage.flush(t)
    assert [s.final for s in out] == [True, True, True]
    assert all(s.last_t - s.first_t <= MAX_SPAN_S for s in out)
    assert len({s.sighting_id for s in out}) == 3 and {s.track_id for s in out} == {5}
    assert out[1].first_t == out[0].last_t


def test_deferred_plates_are_read_by_complete(reader: PlateReader) -> None:
    """A worker reads plates off its detect thread: the stage hands over the views, complete() reads them."""
    from pipeline.analyse.sightings import complete

    car = cv2.resize(photo(BLUE), (570, 228), interpolation=cv2.INTER_AREA)
    stage = SightingsStage("checkpoint", cfg(plates=True, plate_reads=2), defer_plates=True)
    out = drive_past(stage, car, 10)
    s = out[0]
    assert s.plate is None and s.pending is not None and len(s.pending.views) == 2
    done = complete(s, reader)
    assert done.plate is not None and done.plate.text == "藏D·T5022" and done.pending is None
    assert complete(done, reader) is done
