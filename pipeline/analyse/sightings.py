"""Sightings (目标记录): confirmed tracks of people and vehicles turned into records for search.

After an incident the room asks "where did this vehicle go, which cameras saw the person in red?".
Alerts only cover what broke a rule, so every confirmed track of a watched label (person, car, bus,
truck, motorcycle, bicycle by default) becomes one :class:`Sighting`:

* when the track ends (not seen for ``end_after_s``), marked ``final``; a track longer than
  :data:`MAX_SPAN_S` (an hour) is closed and goes on as a new sighting, so that every record spans
  at most an hour and a search by time can bound its index range;
* and at most every ``every_s`` while it lasts (a car parked for an hour is findable before it
  leaves), each time with the same ``sighting_id`` so the store updates one row.

What a record holds and why:

* **best crop**: the view an investigator recognises, the largest and sharpest.  A track's view is
  weighed at most every ``sample_s`` (not every frame: cost), as ``sqrt(area) x log1p(sharpness)``
  (sharpness: variance of the Laplacian on a 64-px-high grey copy), halved when the box touches the
  picture's edge (the object is cut).  The crop is stored with a 10 % margin, its longer side at
  most ``crop_px``.
* **colours**: :mod:`pipeline.analyse.colours` on the best view (upper/lower body, vehicle body).
* **direction**: from the first to the last box centre, relative to the picture: ``left_to_right``,
  ``right_to_left``, ``top_to_bottom`` (towards the camera, usually), ``bottom_to_top``, or
  ``stationary`` under a tenth of the picture.
* **plate** (vehicles, cameras with ``plates`` on): read from the track's ``plate_reads`` best
  views, never per frame, voted (:class:`pipeline.analyse.plates.PlateVote`).  The views kept for
  reading are full-resolution copies of the vehicle box (a plate needs every pixel), at most
  ``plate_reads`` per track; they are read when the sighting is written, so a track costs at most
  ``plate_reads`` reads in its life (reads already made are kept for the later updates).  With
  ``early_plates`` (the worker: watchlists must hear of a plate within seconds, not when the track
  ends), a view of the whole vehicle (not cut by the picture's edge, wide enough; looked for on every
  frame until then, a box test) is read at once in a sighting of its own (not final, same
  ``sighting_id``) as soon as the track is :data:`EARLY_MIN_S` old (or ``min_duration_s`` if shorter:
  a vehicle seen whole for half a second by the tracker is no flicker).  If that read found no plate
  (:data:`EARLY_RETRY_S` later), the next whole view is read the same way; the reads left of
  ``plate_reads`` come from the best views as before, so a track still costs at most ``plate_reads``.

Pure: frames and tracked objects in, records out; the stage holds only per-track state.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import cv2
import numpy as np

from pipeline.analyse.colours import ColourShare, describe
from pipeline.analyse.plates import PlateRead, PlateVote
from pipeline.analyse.rules import TrackedObject
from pipeline.config.schema import SightingsConfig

VEHICLE_LABELS = frozenset({"car", "bus", "truck", "motorcycle"})
# The bus stream the workers send sightings on (``{prefix}:sightings``, capped); the archiver stores
# them.  Its own stream, as for recorded segments: the alert stream's readers never see them.
STREAM = "sightings"
STREAM_MAXLEN = 500_000
# A track lasting longer (a car parked all day) is recorded as consecutive sightings of at most this
# span each, so a time search can bound its index range (history.sightings relies on it).
MAX_SPAN_S = 3600.0
# With early_plates, a vehicle's first whole view is read once its track is this old (or min_duration_s).
EARLY_MIN_S = 0.5
EARLY_RETRY_S = 1.0  # ... and again this long after, while no read has found its plate


class PlateReading(Protocol):
    """What the stage needs of a plate reader (:class:`pipeline.analyse.plates.PlateReader`)."""

    def read(self, img: np.ndarray) -> PlateRead | None: ...


@dataclass
class PendingPlate:
    """Views of a vehicle still to be read for its plate, and the track's vote they join.

    A worker reads plates off its detect thread (a read takes a few hundred ms on a CPU): the stage
    hands the views over with the sighting and :func:`complete` reads them on another thread.
    """

    views: list[np.ndarray]
    vote: PlateVote


@dataclass(frozen=True)
class Sighting:
    """One track of one camera, as stored and searched."""

    sighting_id: str  # camera:first-seen-ms:track: stable over a track's updates
    camera: str
    track_id: int
    label: str
    first_t: float  # epoch seconds
    last_t: float
    best_t: float  # when the best view was taken
    box: tuple[float, float, float, float]  # the best view's box, source px
    frame_wh: tuple[int, int]
    crop: np.ndarray  # BGR, the best view with a margin
    colours: dict[str, list[ColourShare]]
    direction: str
    plate: PlateRead | None
    final: bool  # the track ended (else a periodic update of a track that goes on)
    hits: int  # frames the track was seen on
    pending: PendingPlate | None = None  # plate views still to read (a stage with defer_plates)

    def colour_names(self) -> dict[str, list[str]]:
        return {part: [c.name for c in shares] for part, shares in self.colours.items()}

    def crop_name(self) -> str:
        """Where its crop goes under the sightings folder: ``<camera>/<yyyymmdd UTC>/<id>.jpg``."""
        day = time.strftime("%Y%m%d", time.gmtime(self.first_t))
        return f"{_safe(self.camera)}/{day}/{_safe(self.sighting_id)}.jpg"

    def crop_jpeg(self, quality: int = 85) -> bytes:
        """The best view as JPEG bytes."""
        ok, buf = cv2.imencode(".jpg", self.crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError(f"sighting {self.sighting_id}: the crop could not be encoded as JPEG")
        return bytes(buf.tobytes())

    def to_dict(self) -> dict[str, object]:
        """The record without its picture (for messages, JSON, the store)."""
        return {"sighting_id": self.sighting_id, "camera": self.camera, "track_id": self.track_id,
                "label": self.label, "first_t": self.first_t, "last_t": self.last_t, "best_t": self.best_t,
                "box": [round(v, 1) for v in self.box], "frame_wh": list(self.frame_wh),
                "colours": {p: [c.to_dict() for c in s] for p, s in self.colours.items()},
                "direction": self.direction, "plate": self.plate.to_dict() if self.plate else None,
                "final": self.final, "hits": self.hits}


def complete(s: Sighting, reader: PlateReading) -> Sighting:
    """Read a deferred sighting's plate views (off the detect thread); the sighting with its voted plate."""
    if s.pending is None:
        return s
    for view in s.pending.views:
        s.pending.vote.add(reader.read(view))
    return replace(s, plate=s.pending.vote.result(), pending=None)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def sharpness(img: np.ndarray) -> float:
    """Variance of the Laplacian of a 64-px-high grey copy: high for a crisp view, low for blur."""
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    h, w = grey.shape[:2]
    if h < 2 or w < 2:
        return 0.0
    f = 64 / h
    small = cv2.resize(grey, (max(2, round(w * f)), 64), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(small, cv2.CV_32F).var())


def direction_of(first: tuple[float, float], last: tuple[float, float], frame_wh: tuple[int, int],
                 min_move: float = 0.1) -> str:
    """Direction across the picture from the first to the last centre (relative moves; see module)."""
    w, h = frame_wh
    dx = (last[0] - first[0]) / max(w, 1)
    dy = (last[1] - first[1]) / max(h, 1)
    if math.hypot(dx, dy) < min_move:
        return "stationary"
    if abs(dx) >= abs(dy):
        return "left_to_right" if dx > 0 else "right_to_left"
    return "top_to_bottom" if dy > 0 else "bottom_to_top"


def whole_in_view(box: Sequence[float], frame_wh: tuple[int, int], margin: float = 0.01) -> bool:
    """Whether a box keeps ``margin`` of the picture (at least 2 px) from every edge: the whole object is in
    view.  A detector's box on an object cut by the edge often stops a few pixels short of it."""
    w, h = frame_wh
    mx, my = max(2.0, margin * w), max(2.0, margin * h)
    return box[0] >= mx and box[1] >= my and box[2] <= w - mx and box[3] <= h - my


def _clip_box(box: Sequence[float], frame_wh: tuple[int, int], margin: float = 0.0) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    mw, mh = (x2 - x1) * margin, (y2 - y1) * margin
    w, h = frame_wh
    return (max(0, int(x1 - mw)), max(0, int(y1 - mh)), min(w, int(math.ceil(x2 + mw))),
            min(h, int(math.ceil(y2 + mh))))


@dataclass
class _TrackState:
    track_id: int
    label: str
    first_t: float
    last_t: float
    first_c: tuple[float, float]
    last_c: tuple[float, float]
    hits: int = 0
    best_q: float = -1.0
    best_t: float = 0.0
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    best_crop: np.ndarray | None = None
    best_colours: dict[str, list[ColourShare]] = field(default_factory=dict)
    last_sample_t: float = -math.inf
    emitted_t: float | None = None  # when its sighting was last written
    plate_views: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (quality, full-res view)
    plate_vote: PlateVote = field(default_factory=PlateVote)
    plate_reads_done: int = 0
    early_view: np.ndarray | None = None  # the latest whole view, to read early (early_plates)
    early_t: float | None = None  # when an early read was last handed over


@dataclass
class SightingsStage:
    """Per camera: feed every processed frame's tracked objects; get the sightings due."""

    camera_id: str
    cfg: SightingsConfig
    plate_reader: PlateReading | None = None  # needed when cfg.plates is on (unless defer_plates)
    defer_plates: bool = False  # hand the views over (Sighting.pending) instead of reading them here
    early_plates: bool = False  # read a vehicle's first whole view at once (see the module)
    _tracks: dict[int, _TrackState] = field(default_factory=dict, init=False)
    _frame_wh: tuple[int, int] = field(default=(0, 0), init=False)
    plate_reads: int = field(default=0, init=False)  # reads made (cost accounting)

    def __post_init__(self) -> None:
        if self.cfg.plates and self.plate_reader is None and not self.defer_plates:
            raise ValueError(f"camera {self.camera_id}: sightings.plates is on but no plate reader was given")
        self._labels = frozenset(self.cfg.labels)

    def update(self, frame: np.ndarray, objects: Iterable[TrackedObject], t: float) -> list[Sighting]:
        """One processed frame (BGR, the picture the boxes refer to): returns the sightings due now."""
        if not self.cfg.enabled:
            return []
        h, w = frame.shape[:2]
        self._frame_wh = (w, h)
        for obj in objects:
            if obj.label not in self._labels:
                continue
            st = self._tracks.get(obj.track_id)
            c = ((obj.box[0] + obj.box[2]) / 2, (obj.box[1] + obj.box[3]) / 2)
            if st is None or st.label != obj.label:
                st = _TrackState(obj.track_id, obj.label, t, t, c, c)
                self._tracks[obj.track_id] = st
            st.last_t = t
            st.last_c = c
            st.hits += 1
            if t - st.last_sample_t >= self.cfg.sample_s:
                st.last_sample_t = t
                self._weigh(st, frame, obj.box, t)
            if self._wants_early(st):
                self._early_view(st, frame, obj.box)
        return self._due(t)

    def _wants_early(self, st: _TrackState) -> bool:
        """A vehicle whose plate is to be read early (early_plates): none read yet, reads left, not just tried."""
        return (self.early_plates and self.cfg.plates and st.label in VEHICLE_LABELS
                and st.plate_reads_done < self.cfg.plate_reads and not st.plate_vote.reads
                and (st.early_t is None or st.last_t - st.early_t >= EARLY_RETRY_S))

    def _early_view(self, st: _TrackState, frame: np.ndarray, box: tuple[float, float, float, float]) -> None:
        """Keep the latest whole view of a vehicle not read yet (early_plates), once it is old enough to read."""
        if st.last_t - st.first_t < min(self.cfg.min_duration_s, EARLY_MIN_S) or st.early_view is not None:
            return
        x1, y1, x2, y2 = _clip_box(box, self._frame_wh)
        if x2 - x1 >= self.cfg.plate_min_width_px and y2 - y1 >= 4 and whole_in_view(box, self._frame_wh):
            st.early_view = frame[y1:y2, x1:x2].copy()

    def flush(self, t: float) -> list[Sighting]:
        """Every track ends now (the camera stops or is reconfigured)."""
        out = [s for st in list(self._tracks.values()) if (s := self._emit(st, final=True)) is not None]
        self._tracks.clear()
        return out

    def _due(self, t: float) -> list[Sighting]:
        out: list[Sighting] = []
        for tid, st in list(self._tracks.items()):
            if t - st.last_t >= self.cfg.end_after_s:
                del self._tracks[tid]
                if (s := self._emit(st, final=True)) is not None:
                    out.append(s)
            elif st.last_t - st.first_t >= MAX_SPAN_S:  # close this span; the track goes on in a new one
                if (s := self._emit(st, final=True)) is not None:
                    out.append(s)
                fresh = _TrackState(tid, st.label, st.last_t, st.last_t, st.last_c, st.last_c)
                fresh.plate_vote, fresh.plate_reads_done = st.plate_vote, st.plate_reads_done  # read once per track
                fresh.early_t = st.early_t
                self._tracks[tid] = fresh
            elif st.early_view is not None and self._wants_early(st):
                if (s := self._emit(st, final=False, early=True)) is not None:
                    st.emitted_t = t
                    out.append(s)
            elif t - (st.emitted_t if st.emitted_t is not None else st.first_t) >= self.cfg.every_s:
                if (s := self._emit(st, final=False)) is not None:
                    st.emitted_t = t
                    out.append(s)
        return out

    def _weigh(self, st: _TrackState, frame: np.ndarray, box: tuple[float, float, float, float], t: float) -> None:
        x1, y1, x2, y2 = _clip_box(box, self._frame_wh)
        if x2 - x1 < 4 or y2 - y1 < 4:
            return
        view = frame[y1:y2, x1:x2]
        q = math.sqrt((x2 - x1) * (y2 - y1)) * math.log1p(sharpness(view))
        w, h = self._frame_wh
        if box[0] <= 1 or box[1] <= 1 or box[2] >= w - 1 or box[3] >= h - 1:
            q *= 0.5  # cut by the picture's edge
        if q > st.best_q:
            st.best_q, st.best_t, st.best_box = q, t, box
            mx1, my1, mx2, my2 = _clip_box(box, self._frame_wh, margin=0.1)
            crop = frame[my1:my2, mx1:mx2]
            f = min(1.0, self.cfg.crop_px / max(crop.shape[:2]))
            size = (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
            st.best_crop = crop.copy() if f >= 1.0 else cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            st.best_colours = describe(st.label, frame, box)
        if self.cfg.plates and st.label in VEHICLE_LABELS and (x2 - x1) >= self.cfg.plate_min_width_px:
            keep = self.cfg.plate_reads - st.plate_reads_done
            if keep > 0 and (len(st.plate_views) < keep or q > min(v[0] for v in st.plate_views)):
                st.plate_views.append((q, view.copy()))
                st.plate_views.sort(key=lambda v: -v[0])
                del st.plate_views[keep:]

    def _emit(self, st: _TrackState, final: bool, early: bool = False) -> Sighting | None:
        if (st.last_t - st.first_t < (min(self.cfg.min_duration_s, EARLY_MIN_S) if early else self.cfg.min_duration_s)
                or st.best_crop is None):
            return None
        plate = None
        pending = None
        if early and st.early_view is not None:  # one read now; the rest stay for the later ones
            st.early_t = st.last_t
            view, st.early_view = st.early_view, None
            st.plate_reads_done += 1
            del st.plate_views[max(0, self.cfg.plate_reads - st.plate_reads_done):]
            if self.defer_plates:
                pending = PendingPlate([view], st.plate_vote)
            elif self.plate_reader is not None:
                st.plate_vote.add(self.plate_reader.read(view))
                self.plate_reads += 1
            plate = st.plate_vote.result()
        elif self.cfg.plates and st.label in VEHICLE_LABELS:
            if self.defer_plates:
                if st.plate_views:
                    pending = PendingPlate([v for _, v in st.plate_views], st.plate_vote)
                    st.plate_reads_done += len(st.plate_views)
            elif self.plate_reader is not None:
                for _, view in st.plate_views:
                    st.plate_vote.add(self.plate_reader.read(view))
                    st.plate_reads_done += 1
                    self.plate_reads += 1
            st.plate_views = []
            plate = st.plate_vote.result()
        return Sighting(
            sighting_id=f"{self.camera_id}:{int(st.first_t * 1000)}:{st.track_id}", camera=self.camera_id,
            track_id=st.track_id, label=st.label, first_t=st.first_t, last_t=st.last_t, best_t=st.best_t,
            box=st.best_box, frame_wh=self._frame_wh, crop=st.best_crop, colours=st.best_colours,
            direction=direction_of(st.first_c, st.last_c, self._frame_wh), plate=plate, final=final, hits=st.hits,
            pending=pending)

    @property
    def active(self) -> int:
        """Tracks held now."""
        return len(self._tracks)
