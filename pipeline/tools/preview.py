"""``sharpeye preview``: one picture of a camera with its geometry and live detections drawn on it.

Why: zones, lines and masks are typed as relative coordinates in streams.yaml; the only way to
know they sit where they should is to see them on the camera's own picture, next to what the
detector finds there.  Preview opens the camera as the worker does (same PyAV options), decodes
about ``--seconds`` of video, runs detector + tracker over the frames sampled at detect_fps
(so track ids exist, as they would live), and draws on the last sampled frame:

* zones: translucent filled polygons with their names;
* lines: A→B with arrows showing which crossings count, and the A and B ends labelled;
* object masks: darkened and hatched (detections anchored there are ignored);
* motion masks: outlined in magenta with a light tint (changes there never count as motion);
* detections: box, label, score, and the track id when the tracker has confirmed one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.analyse.camera import CameraAnalytics
from pipeline.analyse.detect import Detections, Detector
from pipeline.config import CameraConfig, Config, LineConfig, redact_url
from pipeline.ingest.source import Sampler, open_options

ZONE_COLOURS = [(255, 160, 0), (0, 200, 255), (80, 220, 80), (255, 0, 160), (0, 120, 255), (200, 200, 0)]
LINE_COLOUR = (0, 255, 255)
OBJECT_MASK_COLOUR = (40, 40, 40)
MOTION_MASK_COLOUR = (255, 0, 255)
TRACKED_COLOUR = (0, 255, 0)
UNTRACKED_COLOUR = (0, 165, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class PreviewResult:
    """What was drawn, for the one-line summary (and tests)."""

    image: np.ndarray
    frames: int  # decoded
    sampled: int  # sampled and detected
    detections: Detections
    track_ids: list[int]
    pts: float  # of the drawn frame


# --------------------------------------------------------------------------- drawing


def _px(points: Sequence[Sequence[float]], wh: tuple[int, int]) -> np.ndarray:
    """Relative points → int pixel polygon for OpenCV."""
    w, h = wh
    return np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in points], np.int32)


def _label(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int],
           scale: float = 0.5) -> None:
    """Text on a filled background, kept inside the picture, readable on any footage."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    h, w = img.shape[:2]
    x = int(min(max(org[0], 0), max(w - tw - 4, 0)))
    y = int(min(max(org[1], th + 4), h - base - 1))
    cv2.rectangle(img, (x, y - th - 4), (x + tw + 4, y + base), colour, -1)
    lum = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
    cv2.putText(img, text, (x + 2, y - 2), FONT, scale, (0, 0, 0) if lum > 110 else (255, 255, 255), 1,
                cv2.LINE_AA)


def _blend_polygon(img: np.ndarray, poly: np.ndarray, colour: tuple[int, int, int], alpha: float) -> None:
    """Fill a polygon translucently (in place)."""
    overlay = img.copy()
    cv2.fillPoly(overlay, [poly], colour)
    cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0, dst=img)


def _hatch(img: np.ndarray, poly: np.ndarray, colour: tuple[int, int, int], spacing: int = 12) -> None:
    """Diagonal hatching inside a polygon (in place)."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [poly], 255)
    lines = img.copy()
    for c in range(-h, w, spacing):
        cv2.line(lines, (c, 0), (c + h, h), colour, 1, cv2.LINE_AA)
    img[mask > 0] = lines[mask > 0]


def _arrow_dirs(line: LineConfig) -> list[np.ndarray]:
    """Unit vectors (image pixels direction) of the crossings that count.

    Right of A→B (as seen standing at A looking at B) is ``(-dy, dx)`` in image coordinates,
    where y grows downwards; see ``rules.Tripwire``.
    """
    d = np.array(line.b, float) - np.array(line.a, float)
    right = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-9)
    if line.direction == "left_to_right":
        return [right]
    if line.direction == "right_to_left":
        return [-right]
    return [right, -right]


def draw_overlay(image: np.ndarray, cam: CameraConfig, dets: Detections | None = None,
                 track_of: dict[int, int] | None = None) -> np.ndarray:
    """A copy of ``image`` with the camera's geometry and the detections drawn on it.

    ``track_of`` maps a detection index to its confirmed track id.
    """
    out = image.copy()
    h, w = out.shape[:2]
    wh = (w, h)
    thick = max(1, round(h / 300))
    for poly in cam.masks:
        p = _px(poly, wh)
        _blend_polygon(out, p, OBJECT_MASK_COLOUR, 0.55)
        _hatch(out, p, (160, 160, 160))
        cv2.polylines(out, [p], True, (160, 160, 160), thick, cv2.LINE_AA)
        _label(out, "object mask", tuple(p.min(axis=0) + [4, 18]), (160, 160, 160))
    for poly in cam.motion.masks:
        p = _px(poly, wh)
        _blend_polygon(out, p, MOTION_MASK_COLOUR, 0.15)
        cv2.polylines(out, [p], True, MOTION_MASK_COLOUR, thick, cv2.LINE_AA)
        _label(out, "motion mask", tuple(p.min(axis=0) + [4, 18]), MOTION_MASK_COLOUR)
    for i, (name, zone) in enumerate(cam.zones.items()):
        colour = ZONE_COLOURS[i % len(ZONE_COLOURS)]
        p = _px(zone.polygon, wh)
        _blend_polygon(out, p, colour, 0.3)
        cv2.polylines(out, [p], True, colour, thick + 1, cv2.LINE_AA)
        top = p[np.argmin(p[:, 1] * 10_000 + p[:, 0])]  # the upper-left-most corner
        _label(out, f"zone {name}", (int(top[0]) + 4, int(top[1]) + 20), colour)
    diag = float(np.hypot(w, h))
    for name, line in cam.lines.items():
        a, b = _px([line.a], wh)[0], _px([line.b], wh)[0]
        cv2.line(out, tuple(a.tolist()), tuple(b.tolist()), LINE_COLOUR, thick + 1, cv2.LINE_AA)
        mid = (a + b) / 2
        for u in _arrow_dirs(line):
            tip = mid + u * diag * 0.06
            start, end = np.round(mid).astype(int).tolist(), np.round(tip).astype(int).tolist()
            cv2.arrowedLine(out, tuple(start), tuple(end), LINE_COLOUR, thick + 1, cv2.LINE_AA, tipLength=0.3)
        _label(out, "A", (int(a[0]) - 6, int(a[1]) - 6), LINE_COLOUR)
        _label(out, "B", (int(b[0]) - 6, int(b[1]) - 6), LINE_COLOUR)
        _label(out, f"line {name} ({line.direction})", (int(mid[0]) + 8, int(mid[1]) + 20), LINE_COLOUR, 0.45)
    if dets is not None:
        track_of = track_of or {}
        for k, (box, score, label) in enumerate(zip(dets.xyxy, dets.score, dets.labels)):
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            tid = track_of.get(k)
            colour = TRACKED_COLOUR if tid is not None else UNTRACKED_COLOUR
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick + 1)
            text = f"{label} {float(score):.2f}" + (f" #{tid}" if tid is not None else "")
            _label(out, text, (x1, y1 - 2), colour)
    return out


# --------------------------------------------------------------------------- capture


def _match_tracks(dets: Detections, objects: Sequence[Any]) -> dict[int, int]:
    """Detection index → track id: a track's box is the raw detection it matched (track.Track)."""
    out: dict[int, int] = {}
    if not len(dets):
        return out
    for o in objects:
        box = np.asarray(o.box, np.float32)
        hits = np.flatnonzero(np.abs(dets.xyxy - box).max(axis=1) < 0.5)
        if len(hits):
            out[int(hits[0])] = int(o.track_id)
    return out


def capture(cfg: Config, camera_id: str, seconds: float, detector: Detector) -> PreviewResult:
    """Decode about ``seconds`` of the camera, detect and track the sampled frames, draw the last."""
    import av

    cam = cfg.cameras[camera_id]
    url = cam.resolved(cfg.base_dir())
    analytics = CameraAnalytics(camera_id, cam, cfg.camera_alerts(camera_id), list(detector.names))
    sampler = Sampler(cam.detect_fps)
    frames = sampled = 0
    last: tuple[np.ndarray, Detections, dict[int, int], float] | None = None
    first_pts: float | None = None
    container = av.open(url, options=open_options(cam), timeout=cam.timeout_s)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        for frame in container.decode(vs):
            if frame.pts is None:
                continue
            pts = float(frame.time) if frame.time is not None else float(frame.pts * vs.time_base)
            frames += 1
            first_pts = pts if first_pts is None else first_pts
            done = pts - first_pts >= seconds
            if sampler.take(pts) or (done and last is None):
                sampled += 1
                img = frame.to_ndarray(format="bgr24")
                dets = detector.detect(img)
                result = analytics.process(dets, pts, (img.shape[1], img.shape[0]))
                last = (img, dets, _match_tracks(dets, result.objects), pts)
            if done:
                break
    finally:
        container.close()
    if last is None:
        raise RuntimeError(f"camera {camera_id}: no frame decoded from {redact_url(url)}")
    img, dets, track_of, pts = last
    return PreviewResult(draw_overlay(img, cam, dets, track_of), frames, sampled, dets,
                         sorted(set(track_of.values())), pts)


def summary(path: Path, camera_id: str, cam: CameraConfig, res: PreviewResult) -> str:
    """The one line printed after the picture is written."""
    h, w = res.image.shape[:2]
    labels = Counter(res.detections.labels)
    found = ", ".join(f"{k} {v}" for k, v in labels.most_common()) or "nothing"
    return (f"{path}: camera {camera_id} {w}x{h} at {res.pts:.1f} s, {res.frames} frames decoded, "
            f"{res.sampled} detected; last frame: {found}; tracks {res.track_ids or '-'}; "
            f"{len(cam.zones)} zones, {len(cam.lines)} lines, {len(cam.masks)} object masks, "
            f"{len(cam.motion.masks)} motion masks")
