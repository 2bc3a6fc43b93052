"""Short clips built from the shared plate photo: the camera pans, zooms, blurs, and JPEG-compresses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

ASSETS = Path(__file__).resolve().parents[3].parent / "shared" / "plates"
BLUE = "car-blue-plate.jpg"
TRUCK = "truck-yellow-plate.jpg"


def photo(name: str) -> np.ndarray:
    import os

    base = Path(os.environ.get("SHARPEYE_ASSET_MIRROR", ASSETS.parent)) / "plates"
    img = cv2.imread(str(base / name), cv2.IMREAD_COLOR)
    assert img is not None, f"missing plate photo {base / name}"
    return img


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def clip(img: np.ndarray, frames: int = 6, seed: int = 0, scale: float = 1.0,
         blur_max: float = 1.0, quality_min: int = 40) -> Iterator[np.ndarray]:
    """A vehicle crop as a moving camera would give it: a window panning across the photo while
    zooming out (the picture ends ``scale`` times the window's size at the first frame and
    ``0.8 * scale`` at the last), then a Gaussian blur and JPEG at a quality that vary per frame,
    plus sensor noise."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    for i in range(frames):
        f = i / max(frames - 1, 1)
        zoom = 0.8 + 0.2 * f  # the window grows: the vehicle looks smaller
        ww, wh = int(w * zoom), int(h * zoom)
        x0 = int((w - ww) * f)
        y0 = int((h - wh) * (1 - f))
        out = (int(w * 0.8 * scale), int(h * 0.8 * scale))  # a fixed output size: zooming out shrinks the plate
        frame = cv2.resize(img[y0:y0 + wh, x0:x0 + ww], out, interpolation=cv2.INTER_AREA)
        sigma = float(rng.uniform(0.3, blur_max))
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        noise = rng.normal(0, 4, frame.shape)
        frame = np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        yield jpeg(frame, int(rng.integers(quality_min, 80)))
