"""Plate reading: the grammar, the colour, the shared photos, and votes over clips built from them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.analyse.plates import (
    PlateRead,
    PlateReader,
    PlateVote,
    colour_fits,
    compact,
    normalise,
    one_apart,
    plate_colour,
    plate_kind,
)
from tests.unit.analyse.plate_clips import BLUE, TRUCK, clip, photo

EXPECTED = "藏D·T5022"


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(threads=2)


@pytest.mark.parametrize(("raw", "expected"), [
    ("藏D·T5022", "藏D·T5022"),
    ("藏DT5022", "藏D·T5022"),
    ("藏D T5022", "藏D·T5022"),
    ("藏d.t5022", "藏D·T5022"),
    ("京A-12345", "京A·12345"),
    ("粤B·D12345", "粤B·D12345"),      # new energy, small car: D then 5
    ("粤B·12345F", "粤B·12345F"),      # new energy, large vehicle: 5 digits then F
    ("沪A·1234学", "沪A·1234学"),      # learner
    ("粤Z·1234港", "粤Z·1234港"),      # Hong Kong
    ("京A·0123警", "京A·0123警"),      # police
    ("川A·8O88I", "川A·80881"),       # O and I are not used: read as 0 and 1
])
def test_normalise_accepts_mainland_plates(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize("raw", [
    "",
    "FORLAND",           # a grille badge: no province
    "A1·23456",          # no province
    "京1·23456",         # the second character must be a letter
    "京I·23456",         # I is not a plate letter
    "京A·1234",          # too short
    "京A·1234567",       # too long
    "粤B·A12345",        # 8 characters but not new-energy (D/F first or last)
    "京A·12警34",        # a suffix only at the end
    "美A·12345",         # not a province
])
def test_normalise_rejects_what_is_not_a_plate(raw: str) -> None:
    assert normalise(raw) is None


@pytest.mark.parametrize(("text", "kind"), [("藏D·T5022", "ordinary"), ("粤B·D12345", "new_energy"),
                                           ("粤B·12345D", "new_energy"), ("粤B·ABCDE", "ordinary"), ("X", None)])
def test_plate_kind(text: str, kind: str | None) -> None:
    assert plate_kind(text) == kind


@pytest.mark.parametrize(("a", "b", "near"), [("藏D·T5022", "藏DT5022", True), ("藏D·T5022", "冀D·T5022", True),
                                             ("藏D·T5022", "冀D·T5023", False), ("藏D·T5022", "藏D·T50222", False)])
def test_one_apart(a: str, b: str, near: bool) -> None:
    assert one_apart(a, b) is near


def _plate_picture(bg: tuple[int, int, int], fg: tuple[int, int, int]) -> np.ndarray:
    img = np.full((44, 140, 3), bg, np.uint8)
    cv2.putText(img, "A12345", (6, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, fg, 3)
    return img


@pytest.mark.parametrize(("bg", "fg", "colour"), [
    ((180, 60, 10), (255, 255, 255), "blue"),
    ((20, 190, 230), (0, 0, 0), "yellow"),
    ((90, 200, 60), (0, 0, 0), "green"),
    ((245, 245, 245), (0, 0, 0), "white"),
    ((15, 15, 15), (255, 255, 255), "black"),
    ((30, 100, 240), (255, 255, 255), None),   # orange: a bumper, not a plate
    ((60, 20, 200), (255, 255, 255), None),    # red
])
def test_plate_colour_on_synthetic_plates(bg: tuple[int, int, int], fg: tuple[int, int, int],
                                          colour: str | None) -> None:
    assert plate_colour(_plate_picture(bg, fg)) == colour


@pytest.mark.parametrize(("text", "colour", "fits"), [("京A·0123警", "white", True), ("藏D·T5022", "white", False),
                                                     ("粤Z·1234港", "black", True), ("藏D·T5022", "black", False),
                                                     ("藏D·T5022", "blue", True)])
def test_colour_fits(text: str, colour: str, fits: bool) -> None:
    assert colour_fits(text, colour) is fits


def test_blue_photo_reads_exactly(reader: PlateReader) -> None:
    img = photo(BLUE)
    read = reader.read(img)
    assert read is not None
    assert read.text == EXPECTED
    assert read.colour == "blue"
    assert read.confidence > 0.95 and read.char_conf[0] > 0.9
    x1, y1, x2, y2 = read.box  # the plate is at about (225, 160)-(565, 325) in the photo
    assert 200 < x1 < 250 and 530 < x2 < 600 and 140 < y1 < 190 and 290 < y2 < 340
    assert reader.read_all(img) == [read]  # one plate, read once (its text and colour boxes merged)


def test_truck_photo_finds_the_yellow_plate_and_invents_no_read(reader: PlateReader) -> None:
    """The truck's plate is 23x12 px: found as a yellow plate-shaped region, too small to read; the
    grille badge (FORLAND) and the caption text are not taken for plates."""
    img = photo(TRUCK)
    assert reader.read_all(img) == []
    yellow = [box for box, colour in reader.locate(img) if colour == "yellow"]
    assert any(150 <= x1 <= 158 and 212 <= y1 <= 222 and 170 <= x2 <= 182 and 225 <= y2 <= 234
               for x1, y1, x2, y2 in yellow), yellow


def test_no_plate_in_a_picture_without_one(reader: PlateReader) -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 255, (300, 500, 3), dtype=np.uint8)
    sign = np.full((200, 600, 3), 255, np.uint8)
    cv2.putText(sign, "EXIT 12 B5", (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (0, 0, 0), 6)
    assert reader.read_all(noise) == []
    assert reader.read_all(sign) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_clip_close_up_reads_every_frame_and_votes_exactly(reader: PlateReader, seed: int) -> None:
    reads = [reader.read(frame) for frame in clip(photo(BLUE), seed=seed)]
    assert all(r is not None and r.text == EXPECTED for r in reads), [r and r.text for r in reads]
    vote = PlateVote()
    vote.extend(reads)
    res = vote.result()
    assert res is not None and res.text == EXPECTED and res.reads == len(reads) and res.confidence > 0.95


@pytest.mark.parametrize("seed", [0, 1])
def test_clip_farther_away_votes_out_wrong_provinces(reader: PlateReader, seed: int) -> None:
    """At 70 % of the photo's size (the plate ~100 px high, blurred, JPEG) single frames misread
    the province (冀, 苏 for 藏) but the vote over the track gets it."""
    reads = [reader.read(frame) for frame in clip(photo(BLUE), seed=seed, scale=0.7)]
    assert all(r is not None and compact(r.text)[1:] == "DT5022" for r in reads)
    vote = PlateVote()
    vote.extend(reads)
    res = vote.result()
    assert res is not None and res.text == EXPECTED


def test_small_plates_keep_the_letters_and_digits(reader: PlateReader) -> None:
    """At 40 % (the plate ~55 px high) the province is no longer readable, the rest still is:
    the limit this model has, and why a one-wrong-character search exists."""
    reads = [reader.read(frame) for frame in clip(photo(BLUE), scale=0.4)]
    got = [compact(r.text)[1:] for r in reads if r is not None]
    assert len(got) >= 5 and all(t == "DT5022" for t in got)


def test_vote_one_bad_read_does_not_change_the_plate() -> None:
    good = PlateRead(EXPECTED, 0.9, "blue", char_conf=(0.9,) * 7, provinces=(("藏", 0.9), ("冀", 0.05)))
    bad = PlateRead("冀D·T5822", 0.95, "blue", char_conf=(0.95,) * 7,
                    provinces=(("冀", 0.95), ("藏", 0.03)))
    vote = PlateVote()
    vote.extend([good, bad, good, None])
    res = vote.result()
    assert res is not None and res.text == EXPECTED and res.reads == 3
    assert 0.5 < res.confidence < 0.9
    assert PlateVote().result() is None
