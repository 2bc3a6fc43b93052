"""Busy street scenes for measuring the motion gate: a 2x2 mosaic of the shared person clip.

    .venv/bin/python scripts/make_busy.py [--variant day|night] [--start S] [--seconds S] [--offsets S S S S]

Why: the shared person clip shows one person at a time walking into an empty room, which a
motion gate handles well (nothing moves between visits).  A street camera sees people entering,
walking and crossing all the time, so "is there motion?" is answered yes on every frame and the
gate saves nothing.  Four copies of the clip side by side, each started at a different offset
(and two of them mirrored so the tiles do not look alike), make such a scene from footage the
project already has: at any moment somebody is usually entering, walking to the table,
standing there or leaving in one of the tiles.

* Offsets: 0, 7, 34 and 45 s into the clip, so that the 24 visits (6 per tile) enter 1-11 s
  apart (5.8 s on average) and no tile starts with somebody halfway out of view; each tile loops
  the 139.4 s clip, so the full-length scene shows every visit of the clip once per tile (the
  loop point is a cut, like a person walking out of view).
* ``night``: the same scene as a camera sees it at night or in rain: gain 0.35 over a black
  level of 12, low-frequency grain (sigma 6 grey levels) on every frame, and a slight blur.
  Motion edges are weaker and noise is stronger, so the gate's threshold and the detector's
  confidence are both tested.
* Encoding: H.264 (libx264, no B-frames, a keyframe every 2 s) at 10 fps, 1280x720, 2 Mbit/s
  capped, as a street camera's main stream at a reduced frame rate.

Clips are cached under ``$SHARPEYE_CACHE_DIR/busy`` (default ``./.cache/busy``), keyed on every
parameter and the source clip, so a second call returns at once.  ``tests/quality_busy.yaml``
has zones and lines per tile for this geometry (tile k: columns k % 2, rows k // 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from pipeline.tools.bench.content import write_atomically

GENERATOR_VERSION = 1  # bump when the way scenes are made changes: old cache entries are then ignored
PERSON_CLIP = "one-by-one-person-detection.mp4"
CLIP_S = 139.4  # length of the shared person clip (1394 frames at 10 fps)
OFFSETS_S = (0.0, 7.0, 34.0, 45.0)
MIRRORED = (False, True, True, False)  # per tile: flipped left-right
Variant = Literal["day", "night"]


@dataclass(frozen=True)
class BusySpec:
    """Everything that decides the bytes of a generated scene (and so its cache key)."""

    variant: Variant = "day"
    start_s: float = 0.0  # scene time of the first frame: excerpts for quick tests
    seconds: float = CLIP_S
    width: int = 1280
    height: int = 720
    fps: int = 10
    gop: int = 20
    bitrate: int = 2_000_000
    offsets_s: tuple[float, ...] = OFFSETS_S

    def filename(self, source: Path) -> str:
        raw = json.dumps({**asdict(self), "v": GENERATOR_VERSION, "src": [source.name, source.stat().st_size]},
                         sort_keys=True)
        key = hashlib.sha256(raw.encode()).hexdigest()[:10]
        offsets = "" if self.offsets_s == OFFSETS_S else "-at" + "_".join(f"{o:g}" for o in self.offsets_s)
        return (f"busy-{self.variant}{offsets}-{self.width}x{self.height}-{self.fps}fps-from{self.start_s:g}s-"
                f"{self.seconds:g}s-{key}.mp4")


def cache_dir() -> Path:
    """``$SHARPEYE_CACHE_DIR/busy``, default ``./.cache/busy``."""
    return Path(os.environ.get("SHARPEYE_CACHE_DIR") or Path.cwd() / ".cache") / "busy"


def person_clip() -> Path:
    """The shared person clip: the project's verified cache first, then the asset mirror."""
    root = Path(__file__).resolve().parents[1]
    candidates = [Path(os.environ.get("SHARPEYE_CACHE_DIR") or root / ".cache") / "clips" / PERSON_CLIP,
                  Path(os.environ.get("SHARPEYE_ASSET_MIRROR") or root.parent / "shared") / "clips" / PERSON_CLIP]
    for p in candidates:
        if p.is_file():
            return p
    raise FileNotFoundError(f"{PERSON_CLIP} not found in {' or '.join(str(p.parent) for p in candidates)} "
                            "(run scripts/setup, or set SHARPEYE_ASSET_MIRROR / SHARPEYE_CACHE_DIR)")


def _source_frames(source: Path, size: tuple[int, int]) -> list[np.ndarray]:
    """Every frame of the clip, shrunk to the tile size (1394 tiles of 640x360: about 1 GB less
    than keeping full frames, and decoded once instead of four times)."""
    out: list[np.ndarray] = []
    with av.open(str(source)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        for frame in c.decode(vs):
            out.append(cv2.resize(frame.to_ndarray(format="bgr24"), size, interpolation=cv2.INTER_AREA))
    return out


def frames(spec: BusySpec, source: Path) -> Iterator[np.ndarray]:
    """The mosaic's frames (BGR), tile k showing the clip at scene time + ``offsets_s[k]``, looped."""
    if len(spec.offsets_s) != 4:
        raise ValueError("a 2x2 mosaic needs 4 offsets")
    tw, th = spec.width // 2, spec.height // 2
    tiles = _source_frames(source, (tw, th))
    n_src = len(tiles)
    src_fps = n_src / CLIP_S
    rng = np.random.default_rng(2024)  # fixed seed: the same spec gives the same bytes
    canvas = np.zeros((th * 2, tw * 2, 3), np.uint8)
    for i in range(int(round(spec.seconds * spec.fps))):
        t = spec.start_s + i / spec.fps
        for k, off in enumerate(spec.offsets_s):
            img = tiles[int(round((t + off) * src_fps)) % n_src]
            if MIRRORED[k]:
                img = img[:, ::-1]
            r, c = divmod(k, 2)
            canvas[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = img
        yield _night(canvas, rng) if spec.variant == "night" else canvas.copy()


def _night(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gain down, black level up, grain, a little blur: a street camera at night or in rain."""
    h, w = img.shape[:2]
    dark = img.astype(np.float32) * 0.35 + 12.0
    grain = rng.normal(0.0, 6.0, (h // 2, w // 2)).astype(np.float32)
    dark += cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    return cv2.GaussianBlur(np.clip(dark, 0, 255).astype(np.uint8), (3, 3), 0)


def _encode(spec: BusySpec, source: Path, dest: Path) -> None:
    with av.open(str(dest), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=spec.fps)
        vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, "yuv420p"
        vs.time_base = Fraction(1, spec.fps)
        vs.bit_rate = spec.bitrate
        vs.codec_context.gop_size = spec.gop
        vs.codec_context.max_b_frames = 0
        vs.options = {"preset": "veryfast", "maxrate": str(spec.bitrate), "bufsize": str(2 * spec.bitrate),
                      "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:bframes=0"}
        for i, img in enumerate(frames(spec, source)):
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            frame.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose (else all keyframes)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)


def ensure_busy(spec: BusySpec, folder: Path | None = None, source: Path | None = None) -> Path:
    """The scene for ``spec``: from the cache, or encoded now (atomically: a crash leaves no half file)."""
    source = source or person_clip()
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.filename(source)
    if not path.is_file():
        write_atomically(path, lambda tmp: _encode(spec, source, tmp))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Make (or find in the cache) a busy 2x2 mosaic of the person clip; "
                                 "prints its path.")
    ap.add_argument("--variant", choices=["day", "night"], default="day")
    ap.add_argument("--start", type=float, default=0.0, help="scene time of the first frame (default 0)")
    ap.add_argument("--seconds", type=float, default=CLIP_S, help=f"length (default {CLIP_S}: one loop)")
    ap.add_argument("--offsets", type=float, nargs=4, default=list(OFFSETS_S), metavar="S",
                    help="the four tiles' offsets into the clip (default %(default)s); other offsets make "
                    "another scene with the same people, to check that tuning did not fit one scene")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.start < 0:
        print("make_busy: --seconds must be > 0 and --start >= 0", file=sys.stderr)
        return 2
    print(ensure_busy(BusySpec(variant=args.variant, start_s=args.start, seconds=args.seconds,
                               offsets_s=tuple(args.offsets))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
