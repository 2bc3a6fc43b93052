"""Camera tamper detection: a camera gone dark, covered, defocused or turned away (画面异常).

A camera that is capped, sprayed, taped over, knocked aside or whose focus ring was turned keeps
sending a perfectly healthy stream, so the watchdog never notices; the room only learns of it
from the picture.  This module looks at the grey (luma) plane the motion gate already has, so
the check costs no decoding and no colour conversion, and decides per camera:

* ``dark``: mean brightness below ``dark.max_luma`` and (``dark.relative``) below ``dark.ratio`` of
  the camera's own learned brightness.  The learned brightness follows slow changes (dusk over
  tens of minutes) with the time constant ``learn_s``, so a camera that is normally dark at
  night does not alert every night, while a sudden black-out does.
* ``covered``: the picture went flat (contrast below ``covered.max_std`` and below
  ``covered.std_ratio`` of the learned contrast: a cap, tape, a card, a torch burning it white),
  or its edges collapsed (below ``covered.edge_ratio`` of the learned edge strength) while its
  layout no longer matches the reference (a hand or a bag close to the lens over most of it).
* ``blur``: sharpness below ``blur.ratio`` of the learned sharpness while the layout still
  matches the reference (the same scene, its detail gone: defocus, grease, fog on the dome).
  Sharpness here is the energy of the Laplacian over the energy of the gradient (float, on the
  small picture): measured on the test clip at 640x360, a Gaussian blur of sigma 2 px halves it
  and sigma 4 leaves a fifth, while a change of light or gain cancels out and sensor noise or
  the rounding of a very dark picture raises it, so darkness never reads as blur.
* ``moved``: the structure similarity (correlation of the edge map with the learned one, the
  median over 12 blocks, see ``GRID``) below ``moved.min_similarity``; correlation ignores gain
  and offset, so headlights and auto-exposure barely move it, and the median ignores a car
  parking or a bus in a third of the view, while a camera turned by a tenth of its view lowers
  every block (measured: 0.95-1.0 normal, 0.15-0.35 shifted by 5-10 % or rotated by 5°).

Why these statistics: they are all computed on a ``width`` x ~``width*9/16`` copy (160 x 90 by
default, ``INTER_AREA`` so sensor noise is averaged away) and on a 4x smaller edge map, a few
thousand pixels: measured well under 1 ms per check on a 640x360 luma plane (tests/unit/analyse/test_tamper.py
prints the figure), and checks run at most every ``interval_s``.

A condition must hold for its ``for_s`` (short gaps under ``PENDING_GAP_S`` forgiven) before its
alert starts, so a bus or a passer-by filling the view for a few seconds raises nothing; an open
alert uses thresholds ``hysteresis`` more lenient and ends after ``clear_s`` clear.  At most one
kind claims a frame (an open kind first, then dark > covered > blur > moved), so a black frame is
"dark", not also "covered" and "moved".  The reference (brightness, contrast, edge strength,
sharpness, a tiny picture for the layout and the edge map) learns only from frames where nothing
holds and nothing is pending, so a tampered view never becomes the norm; except ``moved``, whose
view is adopted after ``moved.adopt_after_s`` (a camera re-aimed on purpose).

Pure: arrays in, decisions out.  The worker calls :meth:`TamperDetector.check` from the camera's
source thread and publishes the :class:`TamperEvent` it returns from the detect thread.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from pipeline.config.schema import TamperConfig

TamperKind = Literal["dark", "covered", "blur", "moved"]
KINDS: tuple[TamperKind, ...] = ("dark", "covered", "blur", "moved")
"""Every kind, in the order they claim a frame when several hold at once."""

PENDING_GAP_S = 1.5
"""A pending condition survives clear checks this long (a hand that moves, a keyframe glitch)."""

SAME_LAYOUT = 0.5
"""Layout correlation (tiny picture vs reference) at or above which the scene counts as still in place."""

EDGE_SHRINK = 4
"""The edge map is this many times smaller than the check picture: small shakes fall inside one cell."""

GRID = (4, 3)
"""Blocks (columns, rows) the edge map is compared in: the structure similarity is the median of the
blocks' correlations, so a car parking or a bus in a third of the view leaves it high, while a camera
turned away lowers every block."""

TEXTURED = 0.25
"""A block counts for the structure only if its reference edge variance is at least this share of the
median block's: blocks of bare sky or asphalt have no structure to lose."""

_EPS = 1e-6

Phase = Literal["new", "end"]


@dataclass(frozen=True)
class FrameStats:
    """What one check measured (full-range 0-255 brightness scale).

    ``layout`` and ``structure`` are None while there is no reference to compare with.
    """

    mean: float
    std: float
    edges: float  # mean gradient magnitude of the check picture
    sharpness: float  # mean |Laplacian| / mean |gradient|
    layout: float | None  # correlation of the tiny picture with the reference's
    structure: float | None  # correlation of the edge map with the reference's


@dataclass(frozen=True)
class TamperEvent:
    """One lifecycle step of a tamper alert: ``new`` when a condition held for its for_s, ``end`` after clear_s.

    ``time`` is the capture time of the frame that decided it; ``start_time`` when the condition
    began (so the alert's clip shows the tampering itself); ``end_time`` the last time it held.
    """

    kind: TamperKind
    phase: Phase
    alert_id: str
    time: float
    start_time: float
    end_time: float | None
    score: float  # 0-1: how far past its threshold the condition went (the worst of the episode)
    detail: str


@dataclass
class _KindState:
    since: float | None = None  # the condition has held (pending or open) since
    last_true: float = 0.0
    clear_since: float | None = None  # open, but clear since
    alert_id: str | None = None  # open alert
    score: float = 0.0
    detail: str = ""


@dataclass
class _Reference:
    """The camera's normal picture, learned slowly (exponential moving averages)."""

    shape: tuple[int, int]
    mean: float
    std: float
    edges: float
    sharpness: float
    tiny: np.ndarray  # float32, zero-mean is taken at comparison time
    edge_map: np.ndarray  # float32
    learned_s: float = 0.0  # seconds of normal picture learned
    frames: int = 1
    last_t: float = 0.0


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Zero-mean normalised correlation (-1..1); 0 when either has no variation (a flat picture)."""
    a = a - float(a.mean())
    b = b - float(b.mean())
    den = math.sqrt(float(np.dot(a.ravel(), a.ravel())) * float(np.dot(b.ravel(), b.ravel())))
    return float(np.dot(a.ravel(), b.ravel())) / den if den > _EPS else 0.0


def _block_ncc(cur: np.ndarray, ref: np.ndarray) -> float:
    """Median zero-mean correlation of the textured GRID blocks of two edge maps (see GRID, TEXTURED)."""
    gx, gy = GRID
    h, w = ref.shape
    bh, bw = h // gy, w // gx
    if bh < 2 or bw < 2:
        return _ncc(cur, ref)
    c = cur[:bh * gy, :bw * gx].reshape(gy, bh, gx, bw).transpose(0, 2, 1, 3).reshape(gy * gx, bh * bw)
    r = ref[:bh * gy, :bw * gx].reshape(gy, bh, gx, bw).transpose(0, 2, 1, 3).reshape(gy * gx, bh * bw)
    c = c - c.mean(axis=1, keepdims=True)
    r = r - r.mean(axis=1, keepdims=True)
    rv = np.einsum("ij,ij->i", r, r)
    cv = np.einsum("ij,ij->i", c, c)
    corr = np.einsum("ij,ij->i", c, r) / np.sqrt(np.maximum(rv * cv, _EPS))
    keep = rv >= TEXTURED * float(np.median(rv))
    return float(np.median(corr[keep])) if keep.any() else 0.0


def _below(value: float, threshold: float) -> float:
    """Score 0-1 of a value under its threshold: 0 at the threshold, 1 at zero."""
    return min(1.0, max(0.0, 1.0 - value / threshold)) if threshold > 0 else 0.0


class TamperDetector:
    """Tamper checks of one camera (pure, no I/O; not thread-safe: one caller thread)."""

    def __init__(self, camera_id: str, cfg: TamperConfig, id_factory: Callable[[], str] | None = None) -> None:
        self.camera_id = camera_id
        self.cfg = cfg
        self._id_factory = id_factory
        self._ref: _Reference | None = None
        self._states: dict[TamperKind, _KindState] = {k: _KindState() for k in KINDS}
        self._last_check: float | None = None
        self._last_t: float | None = None
        self.last: FrameStats | None = None  # the latest measurement (tests, tuning)
        self.checks = 0

    # ------------------------------------------------------------------ public

    @property
    def open_alerts(self) -> dict[TamperKind, str]:
        """kind → alert_id of every open tamper alert."""
        return {k: s.alert_id for k, s in self._states.items() if s.alert_id is not None}

    @property
    def warm(self) -> bool:
        """True once enough normal picture was learned for the checks against the reference."""
        return self._ref is not None and self._ref.learned_s >= self.cfg.warmup_s

    def check(self, luma: np.ndarray, t: float, limited_range: bool = False) -> list[TamperEvent]:
        """Measure one frame (grey HxW, or BGR HxWx3) captured at ``t``; the alerts it starts or ends.

        ``limited_range``: the plane is a decoder's Y in 16-235 ("TV" range); brightness and
        contrast are rescaled to 0-255 so the thresholds mean the same for every camera.
        """
        if not self.cfg.enabled:
            return []
        if self._last_t is not None and t < self._last_t:
            t = self._last_t  # a clock stepping back counts as no time passing
        self._last_t = t
        if self._last_check is not None and t - self._last_check < self.cfg.interval_s:
            return []
        self._last_check = t
        self.checks += 1
        small = self._shrink(luma)
        stats, tiny, edge_map = self._measure(small, limited_range)
        self.last = stats
        ref = self._ref
        if ref is None or ref.shape != small.shape:
            self._ref = ref = _Reference(shape=small.shape, mean=stats.mean, std=stats.std, edges=stats.edges,
                                         sharpness=stats.sharpness, tiny=tiny, edge_map=edge_map, last_t=t)
            return self._decide({}, t)
        holds = self._conditions(stats, ref)
        events = self._decide(holds, t)
        if not holds and not any(s.since is not None for s in self._states.values()):
            self._learn(ref, stats, tiny, edge_map, t)
        else:
            ref.last_t = t  # time under a condition is not learned
        moved = self._states["moved"]
        if (moved.alert_id is not None and self.cfg.moved.adopt_after_s > 0 and moved.since is not None
                and t - moved.since >= self.cfg.moved.adopt_after_s):
            events.append(self._end("moved", moved, t, f"view adopted as the camera's new normal after "
                                                       f"{t - moved.since:.0f} s"))
            self._states["moved"] = _KindState()
            self._ref = _Reference(shape=small.shape, mean=stats.mean, std=stats.std, edges=stats.edges,
                                   sharpness=stats.sharpness, tiny=tiny, edge_map=edge_map, last_t=t)
        return events

    def flush(self, t: float) -> list[TamperEvent]:
        """End every open alert now (camera removed, worker stopping)."""
        out = [self._end(k, s, t, "camera no longer checked") for k, s in self._states.items()
               if s.alert_id is not None]
        self._states = {k: _KindState() for k in KINDS}
        return out

    # ------------------------------------------------------------------ measuring

    def _shrink(self, luma: np.ndarray) -> np.ndarray:
        """``width`` wide, aspect kept, area-averaged (noise averaged away); BGR shrunk first, then grey."""
        h, w = luma.shape[:2]
        sw = min(self.cfg.width, w)
        sh = max(8, int(round(h * sw / w)))
        if w >= 4 * sw and h >= 4 * sh:  # a big frame: a stride first, so the area filter reads 4x fewer pixels
            step = w // (2 * sw)
            luma = luma[::step, ::step]
        small = cv2.resize(luma, (sw, sh), interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return small

    def _measure(self, small: np.ndarray, limited_range: bool) -> tuple[FrameStats, np.ndarray, np.ndarray]:
        scale = 255.0 / 219.0 if limited_range else 1.0
        offset = 16.0 if limited_range else 0.0
        m, s = cv2.meanStdDev(small)
        mean = max(0.0, (float(m[0, 0]) - offset) * scale)
        std = float(s[0, 0]) * scale
        f = small.astype(np.float32)  # float: a smooth picture's uint8 derivatives would be rounding noise
        gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=1)
        gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=1)
        lap = cv2.Laplacian(f, cv2.CV_32F, ksize=1)
        grad = cv2.magnitude(gx, gy)
        edges = float(cv2.mean(grad)[0])
        energy = float(cv2.mean(cv2.multiply(grad, grad))[0])
        sharpness = float(cv2.mean(cv2.multiply(lap, lap))[0]) / (energy + 1e-3)
        h, w = small.shape
        ew, eh = max(4, w // EDGE_SHRINK), max(4, h // EDGE_SHRINK)
        edge_map = cv2.resize(grad, (ew, eh), interpolation=cv2.INTER_AREA)
        tiny = cv2.resize(f, (ew, eh), interpolation=cv2.INTER_AREA)
        ref = self._ref
        same = ref is not None and ref.shape == small.shape
        layout = _ncc(tiny, ref.tiny) if same and ref is not None else None
        structure = _block_ncc(edge_map, ref.edge_map) if same and ref is not None else None
        return (FrameStats(mean=mean, std=std, edges=edges * scale, sharpness=sharpness,
                           layout=layout, structure=structure), tiny, edge_map)

    def _learn(self, ref: _Reference, st: FrameStats, tiny: np.ndarray, edge_map: np.ndarray, t: float) -> None:
        """Fold a normal frame into the reference: a running mean during warm-up, then an EMA of ``learn_s``."""
        dt_s = min(max(0.0, t - ref.last_t), 10.0 * max(self.cfg.interval_s, 0.2))
        ref.last_t = t
        ref.frames += 1
        ref.learned_s += dt_s
        alpha = max(1.0 - math.exp(-dt_s / self.cfg.learn_s), 1.0 / ref.frames if not self.warm else 0.0)
        ref.mean += alpha * (st.mean - ref.mean)
        ref.std += alpha * (st.std - ref.std)
        ref.edges += alpha * (st.edges - ref.edges)
        ref.sharpness += alpha * (st.sharpness - ref.sharpness)
        cv2.accumulateWeighted(tiny, ref.tiny, alpha)
        cv2.accumulateWeighted(edge_map, ref.edge_map, alpha)

    # ------------------------------------------------------------------ deciding

    def _conditions(self, st: FrameStats, ref: _Reference) -> dict[TamperKind, tuple[float, str]]:
        """kind → (score, detail) for every condition holding on this frame (open ones with hysteresis)."""
        cfg = self.cfg
        warm = self.warm
        out: dict[TamperKind, tuple[float, str]] = {}

        def lenient(kind: TamperKind, threshold: float) -> float:
            return threshold * (1.0 + cfg.hysteresis) if self._states[kind].alert_id is not None else threshold

        if cfg.dark.enabled:
            if not cfg.dark.relative:
                thr = cfg.dark.max_luma
            elif warm:
                thr = min(cfg.dark.max_luma, cfg.dark.ratio * ref.mean)
            else:  # nothing learned yet: only a black picture
                thr = cfg.dark.ratio * cfg.dark.max_luma
            thr = lenient("dark", thr)
            if st.mean < thr:
                usual = f"usual {ref.mean:.0f}; " if warm else ""
                out["dark"] = (_below(st.mean, thr), f"mean brightness {st.mean:.1f} of 255 ({usual}"
                                                     f"dark below {thr:.1f})")
        if cfg.covered.enabled:
            thr = (min(cfg.covered.max_std, cfg.covered.std_ratio * ref.std) if warm
                   else cfg.covered.std_ratio * cfg.covered.max_std)
            thr = lenient("covered", thr)
            edge_thr = lenient("covered", cfg.covered.edge_ratio * ref.edges)
            layout_gone = st.layout is not None and st.layout < SAME_LAYOUT
            if st.std < thr:
                out["covered"] = (_below(st.std, thr), f"flat picture: contrast {st.std:.1f} (flat below "
                                                       f"{thr:.1f}), mean brightness {st.mean:.0f}")
            elif warm and layout_gone and st.edges < edge_thr:
                out["covered"] = (_below(st.edges, edge_thr),
                                  f"detail gone over the view: edge strength {100 * st.edges / ref.edges:.0f} % "
                                  f"of usual (covered below {100 * edge_thr / ref.edges:.0f} %), layout "
                                  f"similarity {st.layout:.2f}")
        if warm and cfg.blur.enabled and st.layout is not None and st.layout >= SAME_LAYOUT:
            thr = lenient("blur", cfg.blur.ratio * ref.sharpness)
            if st.sharpness < thr:
                out["blur"] = (_below(st.sharpness, thr),
                               f"sharpness {100 * st.sharpness / ref.sharpness:.0f} % of usual (blurred below "
                               f"{100 * thr / ref.sharpness:.0f} %), scene in place (layout {st.layout:.2f})")
        if warm and cfg.moved.enabled and st.structure is not None:
            thr = lenient("moved", cfg.moved.min_similarity)
            if st.structure < thr:
                out["moved"] = (_below(st.structure, thr),
                                f"view differs from the reference: structure similarity {st.structure:.2f} "
                                f"(moved below {thr:.2f}), layout {st.layout:.2f}")
        return out

    def _for_s(self, kind: TamperKind) -> float:
        return {"dark": self.cfg.dark.for_s, "covered": self.cfg.covered.for_s, "blur": self.cfg.blur.for_s,
                "moved": self.cfg.moved.for_s}[kind]

    def _decide(self, holds: dict[TamperKind, tuple[float, str]], t: float) -> list[TamperEvent]:
        """Advance every kind's state by one check; at most one kind (open ones first) claims the frame."""
        order = [k for k in KINDS if self._states[k].alert_id is not None] + list(KINDS)
        claimed = next((k for k in order if k in holds), None)
        events: list[TamperEvent] = []
        for kind in KINDS:
            s = self._states[kind]
            if kind == claimed:
                score, detail = holds[kind]
                if s.since is None:
                    s.since = t
                    s.score = 0.0
                s.last_true = t
                s.clear_since = None
                s.score = max(s.score, score)
                s.detail = detail
                if s.alert_id is None and t - s.since >= self._for_s(kind):
                    s.alert_id = self._new_id(s.since)
                    events.append(TamperEvent(kind=kind, phase="new", alert_id=s.alert_id, time=t,
                                              start_time=s.since, end_time=None, score=round(s.score, 4),
                                              detail=detail))
            elif s.alert_id is not None:
                if s.clear_since is None:
                    s.clear_since = t
                if t - s.clear_since >= self.cfg.clear_s:
                    events.append(self._end(kind, s, t, "picture normal again"))
                    self._states[kind] = _KindState()
            elif s.since is not None and t - s.last_true > PENDING_GAP_S:
                self._states[kind] = _KindState()  # it passed before its for_s: a bus, a passer-by
        return events

    def _end(self, kind: TamperKind, s: _KindState, t: float, why: str) -> TamperEvent:
        assert s.alert_id is not None and s.since is not None
        return TamperEvent(kind=kind, phase="end", alert_id=s.alert_id, time=t, start_time=s.since,
                           end_time=s.last_true, score=round(s.score, 4), detail=f"{why}; was: {s.detail}")

    def _new_id(self, t: float) -> str:
        if self._id_factory is not None:
            return self._id_factory()
        stamp = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y%m%dT%H%M%S")
        return f"{self.camera_id}-{stamp}-{secrets.token_hex(2)}"
