"""Make a 640x360 sub-stream of each demo clip, as a real camera offers next to its main stream.

Scaled and re-encoded once with PyAV (libx264, no B-frames, a keyframe every 2 s); the camera
simulator serves ``<name>`` as the main stream and ``<name>.sub.mp4`` as the sub-stream.
Skips clips whose sub-stream is already newer than the clip. Usage: make_substreams.py DIR
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av

SIZE = (640, 360)


def make_sub(src: Path, dest: Path) -> None:
    tmp = dest.with_suffix(".tmp.mp4")
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or Fraction(25)
        gop = max(1, round(float(rate) * 2))
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        vout.codec_context.options = {"bf": "0", "preset": "veryfast",
                                      "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i, frame in enumerate(inp.decode(vin)):
            small = frame.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p")
            small.pts = i
            small.time_base = 1 / rate
            small.pict_type = av.video.frame.PictureType.NONE
            for pkt in vout.encode(small):
                out.mux(pkt)
        for pkt in vout.encode(None):
            out.mux(pkt)
    tmp.replace(dest)


def main(folder: str) -> int:
    for src in sorted(Path(folder).glob("*.mp4")):
        if src.name.endswith(".sub.mp4") or src.name.endswith(".tmp.mp4"):
            continue
        dest = src.with_name(src.stem + ".sub.mp4")
        if dest.exists() and dest.stat().st_mtime >= src.stat().st_mtime:
            continue
        make_sub(src, dest)
        print(f"== sub-stream: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
