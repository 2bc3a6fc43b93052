"""Small synthetic H.264 clips for tests, encoded with PyAV (libx264, no B-frames, fixed GOP)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, seconds: float = 10.0, size: tuple[int, int] = (320, 240), fps: int = 25,
              gop: int = 50, moving: bool = True, corrupt_every: int = 0) -> Path:
    """A clip with a bright square moving across a grey, slightly noisy background.

    ``corrupt_every`` > 0 overwrites the middle of every Nth non-key packet with garbage, so a
    decoder sees broken slices while the container stays valid.
    """
    w, h = size
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.codec_context.gop_size = gop
        st.codec_context.options = {"bf": "0", "preset": "veryfast", "tune": "zerolatency",
                                    "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        st.time_base = Fraction(1, fps)
        n = int(seconds * fps)
        for i in range(n):
            img = np.full((h, w, 3), 90, np.uint8)
            img += rng.integers(0, 3, size=(h, w, 1), dtype=np.uint8)
            if moving:
                x = int((i / n) * (w - 40))
                img[h // 3:h // 3 + 40, x:x + 40] = (230, 230, 230)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            frame.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose (else all keyframes)
            for pkt in st.encode(frame):
                if corrupt_every and not pkt.is_keyframe and pkt.pts is not None and pkt.pts % corrupt_every == 0:
                    data = bytearray(bytes(pkt))
                    mid = len(data) // 2
                    data[mid:mid + 16] = b"\xff" * min(16, len(data) - mid)
                    bad = av.Packet(bytes(data))
                    bad.pts, bad.dts, bad.time_base, bad.stream = pkt.pts, pkt.dts, pkt.time_base, pkt.stream
                    out.mux(bad)
                else:
                    out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return path


def reencode(src: Path, dest: Path, seconds: float, fps: int, size: tuple[int, int],
             edit: Callable[[np.ndarray, float], np.ndarray] | None = None, tune: str | None = None) -> Path:
    """``seconds`` of ``src`` at ``size`` and ``fps`` (libx264, no B-frames, a keyframe every 2 s), each
    frame passed through ``edit(bgr, t)`` first (t: seconds into the new clip); AssertionError when
    ``src`` is shorter.  The tamper tests put a card over the lens, blur it, turn it away with this."""
    import cv2

    with av.open(str(src)) as inp, av.open(str(dest), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
        st.codec_context.gop_size = 2 * fps
        options = {"bf": "0", "preset": "veryfast", "x264-params": f"keyint={2 * fps}:min-keyint={2 * fps}:scenecut=0"}
        if tune:
            options["tune"] = tune
        st.codec_context.options = options
        st.time_base = Fraction(1, fps)
        vin = inp.streams.video[0]
        step = max(1, round(float(vin.average_rate) / fps))
        n = 0
        for i, f in enumerate(inp.decode(vin)):
            if i % step:
                continue
            img = cv2.resize(f.to_ndarray(format="bgr24"), size, interpolation=cv2.INTER_AREA)
            if edit is not None:
                img = edit(img, n / fps)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = n
            frame.pict_type = av.video.frame.PictureType.NONE
            for pkt in st.encode(frame):
                out.mux(pkt)
            n += 1
            if n >= seconds * fps:
                break
        for pkt in st.encode(None):
            out.mux(pkt)
    assert n >= seconds * fps, f"{src} is shorter than {seconds} s"
    return dest
