"""Camera content for ``sharpeye bench``: H.264 clips made once at set-up and cached.

Why generate instead of shipping clips: the shared person clip is 768x432 at 10 fps, while the
question the bench answers is "how many real cameras" (720p or 1080p at 25 fps, a keyframe every
2 s, no B-frames, at the bitrates such cameras send).  Decoding cost depends on all of those, so
the clips are re-encoded to match, with PyAV's libx264:

* ``busy``: a segment of the person clip in which someone is in view most of the time
  (40-100 s: a person in 70 % of it, in four visits separated by empty gaps of 5-6.5 s, so alerts
  start and end every 10 s or so and a short run still sees events to time), scaled up and
  brought to 25 fps by repeating frames (10 fps → 25 fps: each source frame 2 or 3 times);
* ``idle``: a still frame of the empty room with fresh sensor noise on every frame, so that no
  two frames are identical (a motion gate must see "almost nothing", not "nothing").  The noise
  is drawn at a quarter of the resolution and scaled up: grain of σ≈2 grey levels rather than
  per-pixel speckle, which x264 would encode slowly and no camera sends.

Rate control is ABR at the target bitrate with a VBV cap (maxrate = bitrate, buffer 2 s), as an
IP camera in CBR/VBR-capped mode sends; the achieved bitrate is measured and reported.
Clips are cached under ``<repo>/.cache/bench/`` keyed on every parameter, so a second bench run
starts at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

Kind = Literal["busy", "idle"]
GENERATOR_VERSION = 2  # bump when the way clips are made changes: old cache entries are then ignored

PERSON_CLIP_NAME = "one-by-one-person-detection.mp4"
BUSY_SEGMENT_START_S = 40.0  # people in view 70 % of the next 60 s, with 3 gaps (scanned with YOLOX-Nano at 2 fps)
EMPTY_ROOM_AT_S = 2.0  # nobody in the room yet
CACHE_ENV = "SHARPEYE_CACHE_DIR"  # generated clips and the verified shared clips (scripts/setup: <repo>/.cache)
CACHE_ROOT = Path(os.environ.get(CACHE_ENV) or Path.cwd() / ".cache")
DEFAULT_CACHE = CACHE_ROOT / "bench"

# (width, height) → target bitrate in bit/s, what city cameras send: 720p ~2, 1080p ~4 Mbit/s; sub-stream 0.5
RESOLUTIONS: dict[str, tuple[int, int]] = {"720p": (1280, 720), "1080p": (1920, 1080), "360p": (640, 360)}
BITRATES: dict[tuple[int, int], int] = {(1280, 720): 2_000_000, (1920, 1080): 4_000_000, (640, 360): 512_000}


@dataclass(frozen=True)
class ClipSpec:
    """Everything that decides the bytes of a generated clip (and so its cache key)."""

    kind: Kind
    width: int
    height: int
    fps: int = 25
    seconds: float = 60.0
    gop: int = 50
    bitrate: int = 2_000_000
    noise_sigma: float = 2.0
    preset: str = "veryfast"
    mirror: bool = False  # a content variant: the picture flipped left-right (other people's paths, same cost)

    @classmethod
    def make(cls, kind: Kind, resolution: str, seconds: float | None = None, mirror: bool = False) -> ClipSpec:
        w, h = RESOLUTIONS[resolution]
        # idle content is noise over a still picture: a 20 s loop is as good as a long one and cheaper to encode
        secs = seconds if seconds is not None else (60.0 if kind == "busy" else 20.0)
        return cls(kind=kind, width=w, height=h, seconds=secs, bitrate=BITRATES[(w, h)], mirror=mirror)

    def key(self, source: Path) -> str:
        st = source.stat()
        fields = asdict(self)
        if not self.mirror:  # clips made before variants existed keep their cache key
            del fields["mirror"]
        raw = json.dumps({**fields, "v": GENERATOR_VERSION, "src": [source.name, st.st_size],
                          "segment": BUSY_SEGMENT_START_S if self.kind == "busy" else EMPTY_ROOM_AT_S},
                         sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:10]

    def filename(self, source: Path) -> str:
        variant = "-mirror" if self.mirror else ""
        return f"{self.kind}{variant}-{self.width}x{self.height}-{self.fps}fps-{self.seconds:g}s-{self.key(source)}.mp4"


@dataclass(frozen=True)
class Clip:
    """A generated clip on disk and what was measured of it."""

    path: Path
    spec: ClipSpec
    frames: int
    bitrate: int  # achieved, bit/s
    keyframe_interval: float  # seconds between keyframes, measured

    def describe(self) -> dict[str, object]:
        return {"kind": self.spec.kind, "mirror": self.spec.mirror, "width": self.spec.width,
                "height": self.spec.height,
                "fps": self.spec.fps, "seconds": self.spec.seconds, "frames": self.frames,
                "bitrate_kbps": round(self.bitrate / 1000), "keyframe_interval_s": self.keyframe_interval,
                "file": self.path.name}


def shared_asset(folder: str, name: str, hint: str) -> Path:
    """A shared asset file ``folder/name``: the project's cache first, then the asset mirror
    (``$SHARPEYE_ASSET_MIRROR``); when neither has it, FileNotFoundError naming both and ``hint``."""
    candidates = [CACHE_ROOT / folder / name]
    mirror = os.environ.get("SHARPEYE_ASSET_MIRROR")
    if mirror:
        candidates.append(Path(mirror) / folder / name)
    for p in candidates:
        if p.is_file():
            return p
    raise FileNotFoundError(f"{name} not found in {' or '.join(str(p.parent) for p in candidates)} ({hint})")


def person_clip() -> Path:
    """The shared person clip: the project's verified cache first, then the asset mirror."""
    return shared_asset("clips", PERSON_CLIP_NAME, f"run scripts/setup, or set SHARPEYE_ASSET_MIRROR / {CACHE_ENV}")


def ensure_clip(spec: ClipSpec, cache_dir: Path = DEFAULT_CACHE, source: Path | None = None) -> Clip:
    """The clip for ``spec``: from the cache, or encoded now (atomically, so a crash leaves no half file)."""
    source = source or person_clip()
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / spec.filename(source)
    if not path.is_file():
        log.info("bench: encoding %s (once; cached in %s)", path.name, cache_dir)
        write_atomically(path, lambda tmp: _encode(spec, source, tmp))
    return probe(path, spec)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` fills a temporary file beside ``path`` (same suffix: encoders choose the container by it), which
    then replaces ``path``: a crash leaves no half file that a later run would take for a finished one."""
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def probe(path: Path, spec: ClipSpec) -> Clip:
    """Frames, bitrate and keyframe spacing of a clip, read from its packets (no decoding)."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        tb = float(vs.time_base or Fraction(1, 90000))
        sizes, keys = 0, []
        n = 0
        for pkt in c.demux(vs):
            if pkt.size == 0:
                continue
            n += 1
            sizes += pkt.size
            if pkt.is_keyframe and pkt.pts is not None:
                keys.append(pkt.pts * tb)
    duration = n / spec.fps
    gaps = [b - a for a, b in zip(keys, keys[1:])]
    interval = round(float(np.median(gaps)), 2) if gaps else duration
    return Clip(path, spec, n, int(sizes * 8 / duration) if duration else 0, interval)


def _frames_busy(spec: ClipSpec, source: Path):  # type: ignore[no-untyped-def]
    """Source frames of the busy segment, scaled, each repeated to reach ``spec.fps``."""
    wanted = int(round(spec.seconds * spec.fps))
    with av.open(str(source)) as c:
        vs = c.streams.video[0]
        src_fps = float(vs.average_rate or 10)
        c.seek(int(max(0.0, BUSY_SEGMENT_START_S - 2) / float(vs.time_base)), stream=vs)
        out = 0
        src_index = 0  # source frames since the segment start
        for frame in c.decode(vs):
            if frame.time is None or frame.time < BUSY_SEGMENT_START_S - 1e-3:
                continue
            img = cv2.resize(frame.to_ndarray(format="bgr24"), (spec.width, spec.height),
                             interpolation=cv2.INTER_LINEAR)
            src_index += 1
            # output frame i shows source frame floor(i * src_fps / fps): repeat until the next one is due
            while out < wanted and int(out * src_fps / spec.fps) < src_index:
                yield img
                out += 1
            if out >= wanted:
                return
    if out < wanted:
        raise ValueError(f"{source}: too short for a {spec.seconds:g} s busy segment from {BUSY_SEGMENT_START_S} s")


def _frames_idle(spec: ClipSpec, source: Path):  # type: ignore[no-untyped-def]
    """The empty room, still, with low-frequency grey sensor noise that changes every frame."""
    with av.open(str(source)) as c:
        vs = c.streams.video[0]
        still = None
        for frame in c.decode(vs):
            if frame.time is not None and frame.time >= EMPTY_ROOM_AT_S:
                still = frame.to_ndarray(format="bgr24")
                break
    if still is None:
        raise ValueError(f"{source}: no frame at {EMPTY_ROOM_AT_S} s")
    base = cv2.resize(still, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    rng = np.random.default_rng(1234)  # fixed seed: the same spec gives the same bytes
    small = (max(1, spec.width // 4), max(1, spec.height // 4))
    for _ in range(int(round(spec.seconds * spec.fps))):
        noise = rng.normal(0.0, spec.noise_sigma, (small[1], small[0])).astype(np.float32)
        noise = cv2.resize(noise, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)
        yield np.clip(base + noise[..., None], 0, 255).astype(np.uint8)


def _encode(spec: ClipSpec, source: Path, dest: Path) -> None:
    encode(spec, _frames_busy(spec, source) if spec.kind == "busy" else _frames_idle(spec, source), dest)


def encode(spec: ClipSpec, frames: Iterable[np.ndarray], dest: Path) -> None:
    """BGR ``frames`` as H.264 in ``dest`` (MP4), encoded as a camera sends (see module): ``spec``'s size, rate,
    bitrate cap and fixed keyframe interval, no B-frames."""
    with av.open(str(dest), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=spec.fps)
        vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, "yuv420p"
        vs.bit_rate = spec.bitrate
        vs.codec_context.gop_size = spec.gop
        vs.codec_context.max_b_frames = 0
        vs.options = {
            "preset": spec.preset,
            "maxrate": str(spec.bitrate), "bufsize": str(2 * spec.bitrate),
            # fixed GOP: scene cuts would add keyframes a camera does not send
            "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:bframes=0",
        }
        for img in frames:
            if spec.mirror:
                img = np.ascontiguousarray(img[:, ::-1])
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pict_type = 0  # NONE: let the encoder choose; a decoded frame's type would force keyframes
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)


def main() -> None:
    """Generate every clip the documented benchmarks need (``python -m pipeline.tools.bench.content``)."""
    logging.basicConfig(level="INFO")
    for kind in ("busy", "idle"):
        for res in RESOLUTIONS:
            clip = ensure_clip(ClipSpec.make(kind, res))  # type: ignore[arg-type]
            print(json.dumps(clip.describe()))


if __name__ == "__main__":
    main()
