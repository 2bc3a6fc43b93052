"""Licence plates (车牌识别): find the plate in a vehicle crop, read it, check it, vote across a track.

The models are PaddleOCR's PP-OCRv4 text detector and recogniser (Chinese, 6,623 characters), as
ONNX files shipped *inside* the ``rapidocr-onnxruntime`` wheel (Apache-2.0): nothing is downloaded
at run time.  Only the model files of that package are used; its Python code is not, so its
dependencies (``opencv-python``, which would overwrite the ``cv2`` of ``opencv-python-headless``,
shapely, pyclipper) are not needed: the pre- and post-processing here is a few lines of numpy/cv2.

How one crop is read (:meth:`PlateReader.read`):

1. *Where*: the text detector (DB) on the crop scaled to at most ``det_side`` px gives text
   boxes; a colour finder adds the blue, yellow and green regions of plate shape (plates the
   detector misses when they are small).  Both are cheap beside the recogniser.
2. *What*: each candidate is straightened, cut at 48 px high and read by the recogniser (CTC).
   The decoding knows the plate grammar: the first character is taken as the best *province*
   character at its time step, the second as the best letter, the rest as the best letter or digit
   (``I`` and ``O`` never occur on mainland plates, so they cannot come out as ``1``/``0``'s
   look-alikes).  A read that fits no grammar is dropped, so a shop sign or ``FORLAND`` on a grille
   never becomes a plate.
3. *Colour*: the plate's background colour (blue, yellow, green, white, black) from the hue of
   the candidate region; a region of another colour (an orange bumper) is not a plate.

Grammar (GA 36-2018): province + letter (A-Z without I, O) + 5 letters/digits, the last may be
挂 学 警 港 澳 使 领 试 超 (blue, yellow, white, black plates); new-energy plates (green) have 6 after
the letter: ``D``/``F`` then 5 (small cars) or 5 digits then ``D``/``F`` (large vehicles).  The
normal form puts a middle dot after the letter: ``藏D·T5022``.

Voting (:class:`PlateVote`): a track is read once or twice from its best crops; each read is
added, and the result is the per-position majority weighted by confidence among reads of the most
voted length, its confidence the mean over positions of (winning weight / all weight) x the mean
confidence of the winning character.  One bad frame among three cannot change the plate.

Pure: arrays in, results out; the ONNX sessions are the only state.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
DIGITS = "0123456789"
SUFFIXES = "挂学警港澳使领试超"
PLATE_COLOURS = ("blue", "yellow", "green", "white", "black")

_ORDINARY = re.compile(rf"^[{PROVINCES}][{LETTERS}][{LETTERS}{DIGITS}]{{4}}[{LETTERS}{DIGITS}{SUFFIXES}]$")
_NEW_ENERGY = re.compile(rf"^[{PROVINCES}][{LETTERS}](?:[DF][{LETTERS}{DIGITS}]\d{{4}}|\d{{5}}[DF])$")
# Characters a recogniser writes between the parts of a plate (the dot, a space, a hyphen).
_SEPARATORS = "·.•・-_ :：'\"|"
# Reads look-alikes that cannot occur in the tail of a plate to the character meant.
_TAIL_FIX = {"O": "0", "I": "1", "o": "0", "l": "1", "i": "1"}

MODEL_PACKAGE = "rapidocr_onnxruntime"
DET_MODEL = "ch_PP-OCRv4_det_infer.onnx"
REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"


def plate_kind(text: str) -> str | None:
    """``"ordinary"`` (7 characters) or ``"new_energy"`` (8) for a compact plate, None if it fits neither."""
    compact = text.replace("·", "")
    if _ORDINARY.match(compact):
        return "ordinary"
    if _NEW_ENERGY.match(compact):
        return "new_energy"
    return None


def normalise(raw: str) -> str | None:
    """The normal form (``藏D·T5022``) of a plate as written or read, or None if it is not a plate.

    Separators and spaces are dropped, letters upper-cased, ``O``/``I`` in the tail read as
    ``0``/``1`` (they are not used on plates).
    """
    s = "".join(ch for ch in raw.strip() if ch not in _SEPARATORS)
    if len(s) < 3:
        return None
    head = s[0] + s[1].upper()
    tail = "".join(_TAIL_FIX.get(ch, ch.upper()) for ch in s[2:])
    compact = head + tail
    if plate_kind(compact) is None:
        return None
    return f"{compact[:2]}·{compact[2:]}"


def compact(text: str) -> str:
    """A plate without its dot (``藏DT5022``): the form stored and searched."""
    return text.replace("·", "")


@dataclass(frozen=True)
class PlateRead:
    """One plate read from one picture (or the vote of several)."""

    text: str  # normal form, 藏D·T5022
    confidence: float  # 0..1
    colour: str  # one of PLATE_COLOURS
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x1, y1, x2, y2 in the picture read
    char_conf: tuple[float, ...] = ()  # per character of the compact form
    reads: int = 1  # how many reads voted for it
    # The likeliest province characters with their probabilities: the province is the hardest
    # character (a dense glyph, a fifth of the plate's width), so the vote sums these rather than
    # counting only each read's first choice.
    provinces: tuple[tuple[str, float], ...] = ()

    @property
    def kind(self) -> str | None:
        return plate_kind(self.text)

    def to_dict(self) -> dict[str, Any]:
        return {"plate": self.text, "confidence": round(self.confidence, 4),
                "province_confidence": round(self.char_conf[0], 4) if self.char_conf else None,
                "colour": self.colour, "kind": self.kind, "box": list(self.box), "reads": self.reads}


# --- plate colour ------------------------------------------------------------------------------

def plate_colour(region: np.ndarray) -> str | None:
    """The background colour of a plate region (BGR), one of :data:`PLATE_COLOURS`, or None.

    The characters cover well under half of a plate, so the background is the largest group of
    pixels: saturated pixels are grouped by hue (blue 95-130, yellow 12-34, green 35-94 on OpenCV's
    0-180 scale), unsaturated ones by brightness (white, black).  A region whose largest group is
    another hue (orange, red, purple) is not a plate.
    """
    if region.size == 0:
        return None
    hsv = cv2.cvtColor(region, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.int32)
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    sat = (s >= 70) & (v >= 50)
    counts = {
        "blue": int(np.count_nonzero(sat & (h >= 95) & (h <= 130))),
        "yellow": int(np.count_nonzero(sat & (h >= 12) & (h <= 34))),
        "green": int(np.count_nonzero(sat & (h >= 35) & (h <= 94))),
        "other": int(np.count_nonzero(sat & ((h < 12) | (h > 130)))),
        "white": int(np.count_nonzero(~sat & (v >= 150))),
        "black": int(np.count_nonzero(~sat & (v < 110))),  # black plates look dark grey under light
    }
    best = max(counts, key=lambda k: counts[k])
    if best == "other":
        return None
    # White characters on blue/green and black ones on yellow/white: a light-grey majority with a
    # strong blue minority is a blue plate seen washed out, not a white plate.
    if best in ("white", "black"):
        for hue in ("blue", "yellow", "green"):
            if counts[hue] >= 0.35 * h.size:
                return hue
    return best


def colour_candidates(img: np.ndarray, max_boxes: int = 4) -> list[np.ndarray]:
    """Blue, yellow and green regions of plate shape (aspect 1.5-6), as 4-point boxes, largest first."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    h, w = img.shape[:2]
    out: list[tuple[float, np.ndarray]] = []
    for lo, hi in (((95, 80, 50), (130, 255, 255)), ((12, 80, 80), (34, 255, 255)), ((35, 50, 80), (94, 255, 255))):
        mask = cv2.inRange(hsv, np.array(lo, np.uint8), np.array(hi, np.uint8))
        k = max(3, int(round(min(h, w) / 60)) | 1)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k * 2 + 1, k)))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            (cx, cy), (rw, rh), angle = cv2.minAreaRect(c)
            if rw < rh:
                rw, rh, angle = rh, rw, angle - 90
            if rh < 8 or rw < 20 or not 1.5 <= rw / max(rh, 1e-6) <= 6.0:
                continue
            area = rw * rh
            if area > 0.6 * h * w or cv2.contourArea(c) < 0.5 * area:
                continue
            box = cv2.boxPoints(((cx, cy), (rw * 1.04, rh * 1.08), angle))
            out.append((area, box.astype(np.float32)))
    out.sort(key=lambda t: -t[0])
    return [b for _, b in out[:max_boxes]]


# --- geometry ------------------------------------------------------------------------------------

def _order_points(pts: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left."""
    pts = pts.reshape(4, 2).astype(np.float32)
    s = pts.sum(1)
    d = np.diff(pts, axis=1).ravel()
    return np.array([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]], np.float32)


def _warp(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    p = _order_points(box)
    w = int(max(np.linalg.norm(p[0] - p[1]), np.linalg.norm(p[3] - p[2])))
    h = int(max(np.linalg.norm(p[0] - p[3]), np.linalg.norm(p[1] - p[2])))
    if w < 4 or h < 4:
        return np.zeros((0, 0, 3), np.uint8)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    m = cv2.getPerspectiveTransform(p, dst)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _bbox(box: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x1, y1 = np.floor(box.min(0)).astype(int)
    x2, y2 = np.ceil(box.max(0)).astype(int)
    return max(0, int(x1)), max(0, int(y1)), min(shape[1], int(x2)), min(shape[0], int(y2))


# --- the reader ----------------------------------------------------------------------------------

def model_dir() -> Path:
    """Where the PP-OCR ONNX files of the ``rapidocr-onnxruntime`` wheel are installed."""
    # Found without importing the package: its own code needs libraries we do not install.
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "plate reading needs the PP-OCR models of the rapidocr-onnxruntime wheel: "
            "pip install --no-deps rapidocr-onnxruntime==1.4.4 (scripts/setup does)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass
class _Candidate:
    box: np.ndarray
    source: str  # "det" or "colour"


@dataclass
class PlateReader:
    """Reads plates from BGR pictures (a vehicle crop or a whole frame). Thread-compatible, not thread-safe."""

    models: Path | None = None
    threads: int = 1
    det_side: int = 960  # the text detector sees the picture at most this big (px, longer side)
    min_confidence: float = 0.6  # a read below this (mean character confidence) is dropped
    min_char_confidence: float = 0.1  # ... and so is one with any character below this
    _det: Any = field(init=False, repr=False)
    _rec: Any = field(init=False, repr=False)
    _chars: list[str] = field(init=False, repr=False)
    _allowed: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import onnxruntime as ort

        d = Path(self.models) if self.models is not None else model_dir()
        for name in (DET_MODEL, REC_MODEL):
            if not (d / name).is_file():
                raise FileNotFoundError(f"plate model not found: {d / name}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        prov = ["CPUExecutionProvider"]
        self._det = ort.InferenceSession(str(d / DET_MODEL), opts, providers=prov)
        self._rec = ort.InferenceSession(str(d / REC_MODEL), opts, providers=prov)
        meta = self._rec.get_modelmeta().custom_metadata_map
        # CTC: index 0 is the blank, then the model's dictionary, then the space.
        self._chars = ["", *meta["character"].splitlines(), " "]
        index = {c: i for i, c in enumerate(self._chars) if c}
        self._allowed = {
            "province": np.array([index[c] for c in PROVINCES if c in index]),
            "letter": np.array([index[c] for c in LETTERS if c in index]),
            "alnum": np.array([index[c] for c in LETTERS + DIGITS if c in index]),
            "last": np.array([index[c] for c in LETTERS + DIGITS + SUFFIXES if c in index]),
            "nev": np.array([index[c] for c in "DF" + DIGITS if c in index]),
        }
        self._separators = {index[c] for c in _SEPARATORS if c in index} | {len(self._chars) - 1}

    # -- detection
    def _detect_text(self, img: np.ndarray) -> list[np.ndarray]:
        h, w = img.shape[:2]
        scale = min(1.0, self.det_side / max(h, w))
        if min(h, w) * scale < 64:  # a small crop: enlarge so the plate's characters are a few px
            scale = 64 / min(h, w)
        nh = max(32, int(round(h * scale / 32)) * 32)
        nw = max(32, int(round(w * scale / 32)) * 32)
        x = cv2.resize(img, (nw, nh)).astype(np.float32)
        x = (x / 255.0 - 0.5) / 0.5
        prob = self._det.run(None, {"x": x.transpose(2, 0, 1)[None]})[0][0, 0]
        mask = (prob > 0.3).astype(np.uint8)
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        sx, sy = w / nw, h / nh
        for c in contours[:200]:
            if len(c) < 4:
                continue
            rect = cv2.minAreaRect(c)
            (cx, cy), (rw, rh), angle = rect
            if min(rw, rh) < 3:
                continue
            x1, y1, bw, bh = cv2.boundingRect(c)
            if float(prob[y1:y1 + bh, x1:x1 + bw][mask[y1:y1 + bh, x1:x1 + bw] > 0].mean()) < 0.5:
                continue
            # Unclip as DB does: grow the shrunk text kernel by area * ratio / perimeter.
            grow = rw * rh * 1.6 / (2 * (rw + rh))
            box = cv2.boxPoints(((cx, cy), (rw + 2 * grow, rh + 2 * grow), angle))
            box[:, 0] *= sx
            box[:, 1] *= sy
            boxes.append(box.astype(np.float32))
        return boxes

    def candidates(self, img: np.ndarray) -> list[np.ndarray]:
        """Possible plate boxes (4 points each) in a BGR picture: text boxes, then colour regions."""
        found = [c.box for c in self._candidates(img)]
        return found

    def _candidates(self, img: np.ndarray) -> list[_Candidate]:
        out = [_Candidate(b, "det") for b in self._detect_text(img)]
        out += [_Candidate(b, "colour") for b in colour_candidates(img)]
        keep = []
        for c in out:
            p = _order_points(c.box)
            bw = float(np.linalg.norm(p[0] - p[1]))
            bh = float(np.linalg.norm(p[0] - p[3]))
            # A plate line is 1.3-9 times wider than high (a double-row plate ~2, a text box with margins up to 9).
            if bh >= 6 and 1.3 <= bw / max(bh, 1e-6) <= 9:
                keep.append(c)
        return keep

    # -- recognition
    def _recognise(self, lines: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per line, the CTC probabilities ``[T, classes]``."""
        if not lines:
            return []
        ratios = [ln.shape[1] / max(ln.shape[0], 1) for ln in lines]
        width = int(math.ceil(48 * max(max(ratios), 320 / 48)))
        batch = np.zeros((len(lines), 3, 48, width), np.float32)
        for i, ln in enumerate(lines):
            rw = min(width, int(math.ceil(48 * ratios[i])))
            x = cv2.resize(ln, (max(rw, 1), 48)).astype(np.float32)
            batch[i, :, :, :rw] = ((x / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
        out = self._rec.run(None, {"x": batch})[0]
        return [out[i] for i in range(len(lines))]

    def _decode_plate(
            self, probs: np.ndarray) -> tuple[str, tuple[float, ...], tuple[tuple[str, float], ...]] | None:
        """Grammar-aware CTC decoding: the emitted characters, each re-chosen among those its position allows."""
        best = probs.argmax(1)
        steps: list[int] = []
        prev = 0
        for t, k in enumerate(best):
            if k != prev and k != 0 and int(k) not in self._separators:
                steps.append(t)
            prev = k
        # A read may start with junk before the province (a screw, the frame): anchor on the
        # time step where a province character is most likely among the first emissions.
        if len(steps) < 7:
            return None
        pprob = probs[:, self._allowed["province"]].max(1)
        first = max(range(min(3, len(steps) - 6)), key=lambda i: pprob[steps[i]])
        steps = steps[first:]
        n = 8 if len(steps) >= 8 and self._nev_plausible(probs, steps) else 7
        steps = steps[:n]
        kinds = ["province", "letter"] + ["alnum"] * (n - 3) + ["last"]
        if n == 8:
            kinds = ["province", "letter", "alnum", "alnum", "alnum", "alnum", "alnum", "alnum"]
        text, confs = [], []
        for t, kind in zip(steps, kinds):
            allowed = self._allowed[kind]
            j = int(allowed[np.argmax(probs[t, allowed])])
            text.append(self._chars[j])
            confs.append(float(probs[t, j]))
        p0 = probs[steps[0], self._allowed["province"]]
        top = np.argsort(-p0)[:5]
        provinces = tuple((self._chars[int(self._allowed["province"][k])], float(p0[k])) for k in top)
        return "".join(text), tuple(confs), provinces

    def _nev_plausible(self, probs: np.ndarray, steps: list[int]) -> bool:
        """An 8th emitted character is part of the plate only if it is likely a plate character itself."""
        t = steps[7]
        return float(probs[t, self._allowed["alnum"]].max()) >= 0.5

    def read_all(self, img: np.ndarray) -> list[PlateRead]:
        """Every valid plate in a BGR picture, best first (one per place)."""
        if img is None or img.ndim != 3 or min(img.shape[:2]) < 8:
            return []
        cands = self._candidates(img)
        lines = [_warp(img, c.box) for c in cands]
        keep = [(c, ln) for c, ln in zip(cands, lines) if ln.size]
        probs = self._recognise([ln for _, ln in keep])
        # A box about twice as wide as high may be a double-row plate (trucks, buses, motorcycles:
        # province and letter above, five characters below): its two rows are read and joined too,
        # and the better of the two readings kept.
        double = [i for i, (_, ln) in enumerate(keep) if ln.shape[1] < 2.6 * ln.shape[0]]
        rows = [r for i in double for r in _rows(keep[i][1])]
        row_probs = self._recognise(rows)
        options: list[list[np.ndarray]] = [[p] for p in probs]
        for n, i in enumerate(double):
            options[i].append(np.vstack([row_probs[2 * n], row_probs[2 * n + 1]]))
        reads: list[PlateRead] = []
        for (cand, line), opts in zip(keep, options):
            decoded = []
            for p in opts:
                dec = self._decode_plate(p)
                if dec is not None and (text := normalise(dec[0])) is not None:
                    decoded.append((float(np.mean(dec[1])), text, dec[1], dec[2]))
            if not decoded:
                continue
            conf, text, confs, provinces = max(decoded, key=lambda d: d[0])
            if conf < self.min_confidence:
                continue
            colour = plate_colour(line)
            if colour is None or min(confs) < self.min_char_confidence or not colour_fits(text, colour):
                continue
            reads.append(PlateRead(text, conf, colour, _bbox(cand.box, img.shape), confs, provinces=provinces))
        reads.sort(key=lambda r: -r.confidence)
        out: list[PlateRead] = []
        for r in reads:  # one read per place: the text box and the colour box of one plate overlap
            if all(_overlap(r.box, o.box) < 0.3 for o in out):
                out.append(r)
        return out

    def locate(self, img: np.ndarray) -> list[tuple[tuple[int, int, int, int], str]]:
        """Plate-coloured regions of plate shape, ``(box, colour)``, readable or not (a plate too small to read)."""
        out = []
        for box in colour_candidates(img):
            colour = plate_colour(_warp(img, box))
            if colour in ("blue", "yellow", "green"):
                out.append((_bbox(box, img.shape), colour))
        return out

    def read(self, img: np.ndarray) -> PlateRead | None:
        """The most confident valid plate in a BGR picture (a vehicle crop), or None."""
        found = self.read_all(img)
        return found[0] if found else None


def _rows(plate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two rows of a double-row plate: the upper third (province, letter, centred) and the rest."""
    h, w = plate.shape[:2]
    cut = max(1, int(round(h * 0.36)))
    return plate[:cut, int(w * 0.18):w - int(w * 0.18)], plate[cut:]


def colour_fits(text: str, colour: str) -> bool:
    """Whether a plate's characters fit its colour: white plates are police (警), black ones foreign
    or Hong Kong/Macau (港 澳 使 领); a washed-out picture that makes an ordinary plate look white
    or black is read again from another frame rather than guessed."""
    last = compact(text)[-1]
    if colour == "white":
        return last == "警"
    if colour == "black":
        return last in "港澳使领"
    return True


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


# --- voting ------------------------------------------------------------------------------------

def one_apart(a: str, b: str) -> bool:
    """Same length and at most one character different (compact or normal forms)."""
    a, b = compact(a), compact(b)
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b)) <= 1


@dataclass
class PlateVote:
    """The plate of one track from several reads: per-position majority weighted by confidence."""

    reads: list[PlateRead] = field(default_factory=list)

    def add(self, read: PlateRead | None) -> None:
        if read is not None:
            self.reads.append(read)

    def extend(self, reads: Iterable[PlateRead | None]) -> None:
        for r in reads:
            self.add(r)

    def result(self) -> PlateRead | None:
        if not self.reads:
            return None
        by_len: dict[int, list[PlateRead]] = defaultdict(list)
        for r in self.reads:
            by_len[len(compact(r.text))].append(r)
        n, group = max(by_len.items(), key=lambda kv: sum(r.confidence for r in kv[1]))
        total = sum(r.confidence for r in self.reads)
        chars, confs = [], []
        for i in range(n):
            weight: dict[str, float] = defaultdict(float)
            cconf: dict[str, list[float]] = defaultdict(list)
            for r in group:
                ch = compact(r.text)[i]
                if i == 0 and r.provinces:
                    for alt, prob in r.provinces:
                        weight[alt] += prob
                        cconf[alt].append(prob)
                else:
                    weight[ch] += r.confidence
                    cconf[ch].append(r.char_conf[i] if len(r.char_conf) == n else r.confidence)
            ch = max(weight, key=lambda k: weight[k])
            chars.append(ch)
            if i == 0 and any(r.provinces for r in group):
                confs.append(weight[ch] / len(self.reads))  # the mean probability over every read
            else:
                confs.append(weight[ch] / total * float(np.mean(cconf[ch])))
        text = normalise("".join(chars))
        if text is None:  # positions won by different reads can break the grammar: take the best read
            best = max(group, key=lambda r: r.confidence)
            text, confs = best.text, [best.confidence * sum(
                r.confidence for r in group if r.text == best.text) / total]
        colours = Counter()  # type: Counter[str]
        for r in group:
            colours[r.colour] += r.confidence  # type: ignore[assignment]
        best_box = max(group, key=lambda r: r.confidence).box
        return PlateRead(text, float(np.mean(confs)), colours.most_common(1)[0][0], best_box,
                         tuple(confs), reads=len(self.reads))
