"""Small synthetic H.264 clips for tests, encoded with PyAV (libx264, fixed GOP): the one clip maker of the tests."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

PICTURES = ("square", "still", "texture")


Picture = Callable[[int, int], np.ndarray]  # (frame index, frame count) -> a BGR image of the clip's size


def _picture(kind: str, i: int, n: int, w: int, h: int, rng: np.random.Generator,
             texture: np.ndarray | None) -> np.ndarray:
    """Frame ``i`` of ``n``: see :func:`make_clip` for the kinds."""
    if kind == "texture":
        assert texture is not None
        return np.roll(texture, 3 * i, axis=1)
    img = np.full((h, w, 3), 90, np.uint8)
    img += rng.integers(0, 3, size=(h, w, 1), dtype=np.uint8)
    if kind == "square":
        x = int((i / n) * (w - 40))
        img[h // 3:h // 3 + 40, x:x + 40] = (230, 230, 230)
    return img


def make_clip(path: Path, seconds: float = 10.0, size: tuple[int, int] = (320, 240), fps: int = 25,
              gop: int = 50, *, picture: str | Picture = "square", tune: str | None = "zerolatency",
              preset: str = "veryfast", crf: int | None = None, bframes: int = 0, audio: bool = False,
              corrupt_every: int = 0) -> Path:
    """An H.264 MP4 (libx264, a keyframe every ``gop`` frames and nowhere else) of a synthetic picture.

    ``picture``: ``"square"``, a bright square moving across a grey, slightly noisy background;
    ``"still"``, that background alone (nothing for the motion gate); ``"texture"``, a random texture
    scrolling sideways, so every pixel changes and the bitrate is high (about 200 kB/s at 320x240 with
    ``tune=None``: the recording tests size their disk quotas on it); or a function ``(i, n) -> BGR image``
    for a picture of the test's own.  ``tune``, ``preset`` and ``crf`` are x264's (None: its defaults).
    ``bframes`` > 0 makes every run of that many frames B-frames (the reader's reordering); ``audio``
    adds a silent mono AAC track.  ``corrupt_every`` > 0 overwrites the middle of
    every Nth non-key packet with garbage, so a decoder sees broken slices while the container stays valid.
    """
    if isinstance(picture, str) and picture not in PICTURES:
        raise ValueError(f"picture {picture!r}: one of {PICTURES}")
    w, h = size
    rng = np.random.default_rng(7)
    texture = np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8) if picture == "texture" else None
    # the texture goes in as RGB, the rest as BGR: each clip stays byte for byte what its tests were sized on
    pix = "rgb24" if picture == "texture" else "bgr24"
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.codec_context.gop_size = gop
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0" + (f":bframes={bframes}:b-adapt=0" if bframes else "")
        options = {"bf": str(bframes), "preset": preset, "x264-params": params}
        if tune:
            options["tune"] = tune
        if crf is not None:
            options["crf"] = str(crf)
        st.codec_context.options = options
        st.time_base = Fraction(1, fps)
        au = out.add_stream("aac", rate=48000) if audio else None
        n = int(seconds * fps)
        samples = 48000 // fps
        for i in range(n):
            img = picture(i, n) if callable(picture) else _picture(picture, i, n, w, h, rng, texture)
            frame = av.VideoFrame.from_ndarray(img, format=pix)
            frame.pts = i
            frame.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose (else all keyframes)
            for pkt in st.encode(frame):
                if corrupt_every and not pkt.is_keyframe and pkt.pts is not None and pkt.pts % corrupt_every == 0:
                    out.mux(_corrupted(pkt))
                else:
                    out.mux(pkt)
            if au is not None:
                sound = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
                sound.sample_rate, sound.pts = 48000, i * samples
                out.mux(au.encode(sound))
        out.mux(st.encode(None))
        if au is not None:
            out.mux(au.encode(None))
    return path


def _corrupted(pkt: av.Packet) -> av.Packet:
    """A copy of ``pkt`` with 16 bytes of garbage in its middle."""
    data = bytearray(bytes(pkt))
    mid = len(data) // 2
    data[mid:mid + 16] = b"\xff" * min(16, len(data) - mid)
    bad = av.Packet(bytes(data))
    bad.pts, bad.dts, bad.time_base, bad.stream = pkt.pts, pkt.dts, pkt.time_base, pkt.stream
    return bad


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
