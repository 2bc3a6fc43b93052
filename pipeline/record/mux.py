"""Stored packets into one MP4, stream copy: the file both segments and clips are written through.

``write_clip`` is the entry point for a clip cut from the pre-event ring (alert clips, export);
the segment writer drives :class:`OutputFile` itself because it decides where files are cut.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import av
import av.error

from pipeline.record.packets import StoredPacket

MOVFLAGS = {"mp4": "+faststart", "fmp4": "frag_keyframe+empty_moov+default_base_moof"}


class OutputFile:
    """One MP4 being written from stored packets, rebased so its first packet has dts 0."""

    def __init__(self, part: Path, first: StoredPacket, fmt: str):
        part.parent.mkdir(parents=True, exist_ok=True)
        self.part = part
        self.template = first.template
        self.container = av.open(str(part), "w", format="mp4", options={"movflags": MOVFLAGS[fmt]})
        try:
            self.stream = self.container.add_stream_from_template(first.template.stream)
        except BaseException:
            self.container.close()
            raise
        self.first_dts = first.dts
        self.last_dts = first.dts
        self.last_dur = first.duration
        self.last_wall = first.wall
        self.packets = 0
        self.bytes = 0

    def mux(self, sp: StoredPacket) -> None:
        if self.packets and sp.dts <= self.last_dts:
            return  # PacketCapture guarantees increasing dts; never hand the muxer a bad one
        p = av.Packet(sp.data)
        p.dts = sp.dts - self.first_dts
        p.pts = sp.pts - self.first_dts
        p.is_keyframe = sp.keyframe
        p.time_base = sp.template.time_base
        if sp.duration:
            p.duration = sp.duration
        p.stream = self.stream
        self.container.mux(p)
        self.last_dts, self.last_dur, self.last_wall = sp.dts, sp.duration, sp.wall
        self.packets += 1
        self.bytes += len(sp.data)

    def end_dts(self, next_key_dts: int | None = None) -> int:
        """Where the file ends: the next keyframe when cut there, else after its last frame."""
        if next_key_dts is not None:
            return next_key_dts
        step = self.last_dur or (self.last_dts - self.first_dts) // max(1, self.packets - 1) or 1
        return self.last_dts + step

    def seconds(self, end_dts: int) -> float:
        return float((end_dts - self.first_dts) * self.template.time_base)

    def close(self) -> None:
        """Write the index (and, for mp4, move it to the front); raises when that fails (disk full)."""
        self.container.close()

    def discard(self) -> None:
        """Give up on the file (a write or the close failed): release the muxer, delete what was written.

        Half a file is never kept: a plain MP4 without its index is unreadable, and a reader must be
        able to trust every file that has a final name.
        """
        try:
            self.container.close()
        except (OSError, av.error.FFmpegError, ValueError):
            pass  # the same failure again: the muxer is released all the same
        self.part.unlink(missing_ok=True)


def write_clip(packets: Sequence[StoredPacket], path: str | Path, fmt: Literal["mp4", "fmp4"] = "mp4") -> float:
    """Mux stored packets, e.g. ``ring.packets_since(t)``, into one file starting at 0.

    The packets must start at a keyframe and share codec parameters (a PacketRing
    guarantees both).  Written under a temporary name and renamed; returns the duration.
    """
    if not packets or not packets[0].keyframe:
        raise ValueError("a clip needs packets starting at a keyframe")
    path = Path(path)
    out = OutputFile(path.with_name(path.name + ".part"), packets[0], fmt)
    try:
        for sp in packets:
            out.mux(sp)
        out.close()
    except BaseException:
        out.discard()  # never renamed as a valid clip
        raise
    os.replace(out.part, path)
    return out.seconds(out.end_dts())
