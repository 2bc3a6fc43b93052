"""``sharpeye bench --sightings`` parts that need no simulator: the vehicle content, the plate-read counter
inside the worker child, and how runs become the summary and the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.analyse.plates import PlateReader
from pipeline.analyse.rules import TrackedObject
from pipeline.analyse.sightings import SightingsStage
from pipeline.config.schema import SightingsConfig
from pipeline.runtime.sightings import SightingsLoop
from pipeline.tools.bench import sightings as bs
from pipeline.tools.bench.content import ClipSpec


def _photos() -> tuple[np.ndarray, np.ndarray]:
    try:
        truck, car = bs.plate_photo(bs.TRUCK), bs.plate_photo(bs.CAR)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return cv2.imread(str(truck)), cv2.imread(str(car))


def test_vehicle_clip_drives_in_from_the_top_then_leaves_an_empty_road() -> None:
    truck, car = _photos()
    vehicle = bs.vehicle_picture(truck, car)
    x1, y1, x2, y2 = bs.TRUCK_BOX
    assert vehicle.shape == (y2 - y1, x2 - x1, 3)
    cx, cy = bs.TRUCK_PLATE_AT  # the blue plate sits where the truck's yellow one was
    b, g, r = vehicle[cy - 4:cy + 4, cx - 10:cx + 10].reshape(-1, 3).mean(axis=0)
    assert b > r + 30, (b, g, r)
    spec = ClipSpec(kind="vehicles", width=640, height=360, fps=5, seconds=8.0)  # type: ignore[arg-type]
    frames = list(bs.vehicle_frames(spec, vehicle))
    assert len(frames) == 40 and frames[0].shape == (360, 640, 3)
    empty = bs.road(640, 360).astype(np.float32)

    def changed_rows(img: np.ndarray) -> np.ndarray:
        moved = np.abs(img.astype(np.float32) - empty).max(axis=2) > 30  # noise is σ≈2 grey levels
        return np.flatnonzero(moved.sum(axis=1) >= 10)

    first, late = changed_rows(frames[1]), changed_rows(frames[int(bs.MOVE_S * 5) - 1])
    assert first.size and first[0] == 0  # entering: cut by the top edge
    assert late.size and late[0] > 0 and late[-1] < 359  # fully in view, lower down
    assert late.size > first.size  # and bigger: it came closer
    assert changed_rows(frames[-1]).size == 0  # the road is empty before the clip loops: the track ends


def test_tally_counts_plate_reads_and_the_stage_cpu_into_its_file(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    truck, car = _photos()
    for cls, name in ((PlateReader, "read"), (SightingsStage, "update"), (SightingsStage, "flush"),
                      (SightingsLoop, "turn")):
        monkeypatch.setattr(cls, name, getattr(cls, name))  # put back after the test
    out = tmp_path / "sightings.json"
    tally = bs.Tally(out)
    tally.install()
    reader = PlateReader(threads=1)
    first = reader.read(car)
    blank = reader.read(np.full((120, 300, 3), 90, np.uint8))
    assert first is not None and first.text == "藏D·T5022" and blank is None
    stage = SightingsStage("cam", SightingsConfig(sample_s=0.0, min_duration_s=0.0))
    frame = bs.road(640, 360)
    frame[100:300, 200:420] = cv2.resize(truck, (220, 200))
    for i in range(5):
        stage.update(frame, [TrackedObject(1, "bus", 0.9, (200.0, 100.0, 420.0, 300.0))], 100.0 + i * 0.2)
    assert [s.label for s in stage.flush(110.0)] == ["bus"]
    tally.dump()
    counted = json.loads(out.read_text())
    assert counted["calls"] == 2 and counted["valid"] == 1 and counted["cpu_s"] > 0
    assert counted["stage_calls"] == 5 and counted["stage_cpu_s"] > 0 and counted["loop_cpu_s"] == 0


def _run(content: str, mode: str, ms: float, reads: int = 0) -> dict[str, Any]:
    return {"content": content, "mode": mode, "worker_cpu_ms_per_frame": ms, "worker_cpu_cores": ms * 5 / 1000,
            "plates": {"reads": reads, "valid_reads": reads, "read_cpu_s": 0.3 * reads,
                       "texts": ["藏D·T5022"] if reads else []},
            "sightings": {"sent": 1 if mode != "off" else 0}}


def test_summary_takes_the_median_over_rounds_and_the_increase_over_off() -> None:
    runs = [_run("busy", "off", 20.0), _run("busy", "on", 21.0), _run("vehicles", "off", 10.0),
            _run("vehicles", "on", 10.5), _run("vehicles", "plates", 15.0, reads=2),
            _run("busy", "off", 22.0), _run("busy", "on", 22.5), _run("busy", "off", 30.0), _run("busy", "on", 23.0)]
    s = bs.summarise(runs)
    assert s["busy"]["off"]["worker_cpu_ms_per_frame"] == 22.0 and s["busy"]["off"]["rounds"] == 3
    assert s["busy"]["on"]["increase_pct"] == pytest.approx(100 * (22.5 / 22.0 - 1), abs=0.05)
    assert s["busy"]["off"]["increase_pct"] is None
    assert s["vehicles"]["plates"]["increase_pct"] == 50.0 and s["vehicles"]["plates"]["plate_reads"] == 2
    assert s["vehicles"]["plates"]["plates_read"] == ["藏D·T5022"]
    v = bs.verdict(s)
    assert v["holds"] is True and v["sightings_increase_pct"] == s["busy"]["on"]["increase_pct"]
    over = bs.verdict(bs.summarise([_run("busy", "off", 20.0), _run("busy", "on", 23.0)]))
    assert over["holds"] is False and over["sightings_increase_pct"] == 15.0
    assert bs.verdict(bs.summarise([_run("vehicles", "off", 20.0)]))["holds"] is None  # busy not measured
