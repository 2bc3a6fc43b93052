"""Watchlist patterns and matching: exact plates, one unknown character, expiry, scope (cells)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.analyse.plates import PlateReader
from pipeline.analyse.rules import TrackedObject
from pipeline.analyse.sightings import EARLY_RETRY_S, SightingsStage, complete
from pipeline.analyse.watchlist import (
    Entry,
    PatternError,
    display,
    fits,
    from_mirror,
    match,
    mirror_json,
    parse_pattern,
)
from pipeline.config.schema import SightingsConfig
from tests.unit.analyse.plate_clips import BLUE, photo

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("typed", "pattern"), [
    ("藏D·T5022", "藏DT5022"),
    ("藏d t5022", "藏DT5022"),
    ("藏D-T50?2", "藏DT50?2"),
    ("藏D·T50？2", "藏DT50?2"),  # a full-width question mark
    ("?DT5022", "?DT5022"),  # the province not seen
    ("粤B·D12345", "粤BD12345"),  # new energy, 8 characters
    ("京A·1234O", "京A12340"),  # O is not used on plates: a zero
])
def test_patterns_as_typed_become_compact(typed: str, pattern: str) -> None:
    assert parse_pattern(typed) == pattern


@pytest.mark.parametrize(("typed", "why"), [
    ("藏D·T50??", "at most one"),
    ("ABC1234", "not a mainland plate"),  # no province
    ("藏1·T5022", "not a mainland plate"),  # the second character must be a letter
    ("藏D", "too short"),
    ("藏?·T5022X", "no plate fits"),  # 8 characters that are no new-energy plate whatever ? is
])
def test_patterns_no_plate_fits_are_refused_saying_why(typed: str, why: str) -> None:
    with pytest.raises(PatternError, match=why):
        parse_pattern(typed)


def test_display_puts_the_dot_back() -> None:
    assert display("藏DT50?2") == "藏D·T50?2"


@pytest.mark.parametrize(("pattern", "plate", "hit"), [
    ("藏DT5022", "藏D·T5022", True),
    ("藏DT5022", "藏DT5022", True),
    ("藏DT5022", "皖D·T5022", False),  # one character off: an exact entry does not hit
    ("?DT5022", "皖D·T5022", True),
    ("藏DT50?2", "藏D·T5092", True),
    ("藏DT50?2", "藏D·T5093", False),
    ("藏DT50?2", "藏D·T50922", False),  # another length
])
def test_fits(pattern: str, plate: str, hit: bool) -> None:
    assert fits(pattern, plate) is hit


def test_match_keeps_to_active_entries_covering_the_cell() -> None:
    entries = [
        Entry(1, "藏DT5022", ("G1",), None),
        Entry(2, "藏DT50?2", ("*",), NOW + 60),
        Entry(3, "藏DT5022", ("G2",), None),  # another cell
        Entry(4, "藏DT5022", ("G1",), NOW - 1),  # expired
        Entry(5, "京A12345", ("*",), None),  # another plate
    ]
    assert [e.id for e in match(entries, "藏D·T5022", "G1", now=NOW)] == [1, 2]  # exact first
    assert [e.id for e in match(entries, "藏D·T5022", "G2", now=NOW)] == [3, 2]
    assert [e.id for e in match(entries, "藏D·T5022", "G3", now=NOW)] == [2]
    assert [e.id for e in match(entries, "藏D·T5022", "G3", now=NOW + 61)] == []  # entry 2 has expired too
    assert match(entries, "藏D·T5022", None, now=NOW) == [entries[1]]  # a camera without a cell: "*" only


def test_mirror_round_trip_skips_what_does_not_parse() -> None:
    entries = [Entry(1, "藏DT5022", ("G1", "G2"), None), Entry(2, "藏DT50?2", ("*",), NOW)]
    raw = mirror_json(entries, now=NOW)
    assert from_mirror(raw) == entries
    assert from_mirror(None) == [] and from_mirror(b"") == []
    assert from_mirror('{"entries": [{"id": "x"}, {"id": 7, "pattern": "藏DT5022", "cells": ["*"]}]}') == [
        Entry(7, "藏DT5022", ("*",), None)]


def _drive_in(stage: SightingsStage, car: np.ndarray, reader: PlateReader | None = None) -> list[tuple[float, Any]]:
    """``car`` enters a 1280x720 street from the right edge at 5 fps (100 px a frame), stops at x=500; each
    sighting's deferred views are read at once by ``reader`` when given (the worker's loop does it)."""
    out = []
    for i in range(30):
        frame = np.full((720, 1280, 3), 118, np.uint8)
        x = max(500, 1280 - 100 * i)
        w = min(car.shape[1], 1280 - x)
        frame[300:300 + car.shape[0], x:x + w] = car[:, :w]
        box = (float(x), 300.0, float(min(x + car.shape[1], 1280)), float(300 + car.shape[0]))
        t = 3000.0 + i / 5
        for s in stage.update(frame, [TrackedObject(4, "car", 0.9, box)], t):
            out.append((t, complete(s, reader) if reader is not None else s))
    return out


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(threads=2)


def plates_cfg() -> SightingsConfig:
    return SightingsConfig(every_s=60.0, min_duration_s=1.0, end_after_s=2.0, sample_s=0.0, plates=True,
                           plate_reads=2)


WHOLE_T = 3000.0 + 6 / 5  # frame 6: x = 680, the whole car (570 px) in view for the first time


def test_early_plates_read_the_first_whole_view_at_once_then_the_best_at_the_end(reader: PlateReader) -> None:
    """The worker's stage: the first view not cut by the edge is handed over for reading as soon as it
    exists (the track is older than EARLY_MIN_S); the plate read, the other read waits for the track's end."""
    car = cv2.resize(photo(BLUE), (570, 228), interpolation=cv2.INTER_AREA)
    stage = SightingsStage("gate", plates_cfg(), defer_plates=True, early_plates=True)
    out = _drive_in(stage, car, reader)
    assert len(out) == 1
    t, s = out[0]
    assert t == pytest.approx(WHOLE_T) and not s.final
    assert s.plate is not None and s.plate.text == "藏D·T5022" and s.plate.reads == 1
    done = stage.update(np.full((720, 1280, 3), 118, np.uint8), [], 3020.0)
    assert len(done) == 1 and done[0].final and done[0].sighting_id == s.sighting_id
    assert done[0].pending is not None and len(done[0].pending.views) == 1  # plate_reads: 2 in all
    assert complete(done[0], reader).plate.reads == 2  # type: ignore[union-attr]


def test_an_early_read_that_finds_nothing_is_tried_once_more_a_second_later() -> None:
    car = cv2.resize(photo(BLUE), (570, 228), interpolation=cv2.INTER_AREA)
    stage = SightingsStage("gate", plates_cfg(), defer_plates=True, early_plates=True)
    out = _drive_in(stage, car)  # nobody reads: no plate found
    assert [round(t - WHOLE_T, 3) for t, _ in out] == [0.0, EARLY_RETRY_S]
    assert all(s.pending is not None and len(s.pending.views) == 1 for _, s in out)
    done = stage.update(np.full((720, 1280, 3), 118, np.uint8), [], 3020.0)
    assert len(done) == 1 and done[0].pending is None  # both reads spent


def test_without_early_plates_the_views_wait_for_the_track_to_end() -> None:
    car = cv2.resize(photo(BLUE), (570, 228), interpolation=cv2.INTER_AREA)
    stage = SightingsStage("gate", plates_cfg(), defer_plates=True)
    assert _drive_in(stage, car) == []


def test_a_vehicle_whole_from_the_start_is_read_half_a_second_in() -> None:
    """A car that comes into view whole (from behind a lorry): read once its track is EARLY_MIN_S old, not
    min_duration_s, and on the first frame it is (not at the next sample)."""
    from pipeline.analyse.sightings import EARLY_MIN_S

    car = cv2.resize(photo(BLUE), (570, 228), interpolation=cv2.INTER_AREA)
    cfg = SightingsConfig(every_s=60.0, min_duration_s=1.0, end_after_s=2.0, sample_s=2.0, plates=True)
    stage = SightingsStage("gate", cfg, defer_plates=True, early_plates=True)
    out = []
    for i in range(10):
        frame = np.full((720, 1280, 3), 118, np.uint8)
        frame[300:528, 300 + 10 * i:870 + 10 * i] = car
        t = 5000.0 + i / 5
        box = (300.0 + 10 * i, 300.0, 870.0 + 10 * i, 528.0)
        out += [(t, s) for s in stage.update(frame, [TrackedObject(9, "car", 0.9, box)], t)]
    # the first frame past 0.5 s (0.6), then a second later since nobody read it (no plate found)
    assert [round(t - 5000.0, 3) for t, _ in out] == [EARLY_MIN_S + 0.1, EARLY_MIN_S + 0.1 + EARLY_RETRY_S]
    assert out[0][1].pending is not None and out[0][1].pending.views[0].shape[:2] == (228, 570)
