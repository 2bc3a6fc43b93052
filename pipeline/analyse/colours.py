"""Dominant colours of a person's clothes or a vehicle's body, named in a fixed palette (颜色).

Investigators search "the person in red", "a white van": the words are a small palette, not RGB
values, so each pixel of the relevant part of a crop is put in one of ten classes and the largest
classes are named:

=====  ======  =========================================================================
zh     en      pixels (OpenCV HSV: hue 0-180, saturation and value 0-255)
=====  ======  =========================================================================
黑     black   value < 50, or unsaturated and value < 80
白     white   unsaturated (< 45) and value >= 190
灰     grey    unsaturated, value 80-190
棕     brown   red-orange hue (4-22), value < 110 (a dark orange is brown to the eye)
红     red     hue < 4 or >= 160 (paint red sits at 0-3 and 170-180)
橙     orange  hue 4-20 (an orange car's paint measured at 5)
黄     yellow  hue 20-34
绿     green   hue 34-85
蓝     blue    hue 85-128 (cyan included: people say blue, 蓝 / 天蓝)
紫     purple  hue 128-160 (magenta and pink-purple)
=====  ======  =========================================================================

Which part: a person's upper body is the band from 18 % to 50 % of the box's height and the lower
body from 52 % to 88 %, each over the middle 60 % of its width (the head, the feet, and the
background at the sides left out); a vehicle's body is the middle 70 % x 60 % of its box (the road
under it and the sky above left out).  Glass and shadow make a car's crop darker than its paint,
so for a vehicle, black and grey count only half when a chromatic or white class is present.

Cheap: the part is shrunk to at most 32 x 32 px first (``INTER_AREA`` averages the texture of a
pattern into its overall colour): about a millisecond per crop (1.4 ms measured for a car and a
person on a loaded 2-core machine).  Pure: arrays in, names out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PALETTE: dict[str, str] = {
    "red": "红", "orange": "橙", "yellow": "黄", "green": "绿", "blue": "蓝",
    "purple": "紫", "black": "黑", "white": "白", "grey": "灰", "brown": "棕",
}
NAMES = tuple(PALETTE)
_INDEX = {n: i for i, n in enumerate(NAMES)}
PERSON_LABELS = frozenset({"person"})
VEHICLE_LABELS = frozenset({"car", "bus", "truck", "motorcycle", "bicycle"})


@dataclass(frozen=True)
class ColourShare:
    """One named colour and the share of the part's pixels it covers (0..1)."""

    name: str  # English palette name
    share: float

    @property
    def zh(self) -> str:
        return PALETTE[self.name]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "zh": self.zh, "share": round(self.share, 3)}


def classify_pixels(bgr: np.ndarray) -> np.ndarray:
    """Palette index (into :data:`NAMES`) of every pixel of a BGR array, same height and width."""
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    h = hsv[..., 0].astype(np.int16)
    s = hsv[..., 1].astype(np.int16)
    v = hsv[..., 2].astype(np.int16)
    out = np.full(h.shape, _INDEX["grey"], np.uint8)
    hue = np.select(
        [(h < 4) | (h >= 160), h < 20, h < 34, h < 85, h < 128],
        [_INDEX["red"], _INDEX["orange"], _INDEX["yellow"], _INDEX["green"], _INDEX["blue"]],
        _INDEX["purple"]).astype(np.uint8)
    chromatic = s >= 45
    out[chromatic] = hue[chromatic]
    brown = chromatic & (h >= 4) & (h < 22) & (v < 110)
    out[brown] = _INDEX["brown"]
    out[~chromatic & (v >= 190)] = _INDEX["white"]
    out[(v < 50) | (~chromatic & (v < 80))] = _INDEX["black"]
    return out


def dominant_colours(region: np.ndarray, top: int = 2, min_share: float = 0.2,
                     dark_weight: float = 1.0) -> list[ColourShare]:
    """The ``top`` largest palette colours of a BGR region covering at least ``min_share`` of it.

    ``dark_weight`` < 1 discounts black and grey when another colour is present (a car's glass and
    shadow); the shares are of the weighted total.
    """
    if region.ndim != 3 or region.shape[0] < 1 or region.shape[1] < 1:
        return []
    step = max(1, max(region.shape[:2]) // 128)  # a big crop: subsample before averaging (cost)
    region = region[::step, ::step]
    hh, ww = region.shape[:2]
    if max(hh, ww) > 32:
        f = 32 / max(hh, ww)
        region = cv2.resize(region, (max(1, round(ww * f)), max(1, round(hh * f))), interpolation=cv2.INTER_AREA)
    counts = np.bincount(classify_pixels(region).ravel(), minlength=len(NAMES)).astype(np.float64)
    if dark_weight != 1.0:
        others = counts.sum() - counts[_INDEX["black"]] - counts[_INDEX["grey"]]
        if others >= 0.15 * counts.sum():
            counts[_INDEX["black"]] *= dark_weight
            counts[_INDEX["grey"]] *= dark_weight
    total = counts.sum()
    if total <= 0:
        return []
    order = np.argsort(-counts, kind="stable")
    out = []
    for i in order[:top]:
        share = float(counts[i] / total)
        if share >= min_share:
            out.append(ColourShare(NAMES[int(i)], share))
    return out


def _part(frame: np.ndarray, box: tuple[float, float, float, float], fx: tuple[float, float],
          fy: tuple[float, float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    H, W = frame.shape[:2]
    a = int(np.clip(x1 + fx[0] * w, 0, W))
    b = int(np.clip(x1 + fx[1] * w, 0, W))
    c = int(np.clip(y1 + fy[0] * h, 0, H))
    d = int(np.clip(y1 + fy[1] * h, 0, H))
    return frame[c:d, a:b]


def person_colours(frame: np.ndarray, box: tuple[float, float, float, float]) -> dict[str, list[ColourShare]]:
    """Upper- and lower-body colours of a person whose box (x1, y1, x2, y2) is in ``frame`` (BGR)."""
    return {
        "upper": dominant_colours(_part(frame, box, (0.2, 0.8), (0.18, 0.5))),
        "lower": dominant_colours(_part(frame, box, (0.2, 0.8), (0.52, 0.88))),
    }


def vehicle_colours(frame: np.ndarray, box: tuple[float, float, float, float]) -> dict[str, list[ColourShare]]:
    """Body colour of a vehicle whose box (x1, y1, x2, y2) is in ``frame`` (BGR)."""
    return {"body": dominant_colours(_part(frame, box, (0.15, 0.85), (0.2, 0.8)), top=2, min_share=0.25,
                                     dark_weight=0.5)}


def describe(label: str, frame: np.ndarray, box: tuple[float, float, float, float]) -> dict[str, list[ColourShare]]:
    """The colours that matter for this label: upper/lower for people, body for vehicles, none otherwise."""
    if label in PERSON_LABELS:
        return person_colours(frame, box)
    if label in VEHICLE_LABELS:
        return vehicle_colours(frame, box)
    return {}
