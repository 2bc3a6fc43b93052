"""Helpers for the recording tests: a real H.264 clip fed through a simulated clock.

The clip is :func:`tests.support.media.make_clip` with ``picture="texture", tune=None`` (320x240,
``FPS`` fps, a keyframe every ``GOP_S``, no B-frames, the muxer's 1/12800 time base); packets carry a
simulated wall clock (``T0`` + stream time) so tests about cuts, gaps and the ring run in
milliseconds, not in real time.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from pipeline.record.layout import segment_path
from pipeline.record.packets import PacketCapture, StoredPacket
from pipeline.record.ring import PacketRing
from pipeline.record.segments import SegmentWriter
from tests.support.media import make_clip

T0 = 1_700_000_000.0  # simulated wall clock of the first packet
FPS, GOP_S = 25, 2.0


def feed_file(writer: SegmentWriter | None, path: Path, shift_at: float | None = None, shift_s: float = 0.0,
              ring: PacketRing | None = None) -> list[StoredPacket]:
    """Demux ``path`` into the writer/ring with a simulated wall clock (T0 + stream time).

    From stream time ``shift_at`` on, the wall clock is ``shift_s`` later: a pause in packets.
    """
    stored: list[StoredPacket] = []
    capture = PacketCapture()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        tb = s.time_base or Fraction(1, 90000)
        for p in c.demux(s):
            if p.dts is None:
                continue
            t = float(p.dts * tb)
            wall = T0 + t + (shift_s if shift_at is not None and t >= shift_at else 0.0)
            out = writer.feed(p, s, wall) if writer is not None else capture.capture(p, s, wall)
            for sp in out:
                stored.append(sp)
                if ring is not None:
                    ring.add(sp)
    return stored


def record_clip(folder: Path, camera: str = "lobby", seconds: int = 30) -> None:
    """Record ``seconds`` of a textured test clip as ``camera``'s 10 s segments under ``folder/data/recordings``,
    from T0 to T0 + ``seconds`` (the clip itself is written to ``folder/clip.mp4``)."""
    writer = SegmentWriter(camera, folder / "data" / "recordings", segment_s=10)
    feed_file(writer, make_clip(folder / "clip.mp4", seconds, picture="texture", tune=None))
    writer.close()


def decode_check(path: Path) -> tuple[int, float, bool]:
    """(frames decoded, container duration in s, first packet is a keyframe at ts 0)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        first = next(p for p in c.demux(v) if p.size)
        starts_clean = first.is_keyframe and first.dts == 0
        c.seek(0)
        frames = sum(1 for _ in c.decode(v))
        return frames, float((v.duration or 0) * (v.time_base or 0)), starts_clean


def fake_segments(root: Path, camera: str, starts: list[float], size: int = 1000, dur: float = 10.0) -> list[Path]:
    """Real files in the real layout (retention and the catalog never open them, so the content is filler)."""
    paths = []
    for s in starts:
        p = segment_path(root, camera, s, dur)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\0" * size)
        paths.append(p)
    return paths
