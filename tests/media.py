"""Small synthetic H.264 clips for tests, encoded with PyAV (libx264, no B-frames, fixed GOP)."""

from __future__ import annotations

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
