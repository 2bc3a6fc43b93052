"""Stored packets into fragmented MP4 for Media Source Extensions: an init segment, then one fragment per frame.

FFmpeg's MP4 muxer (through PyAV) does the container work, including turning RTSP's Annex-B H.264
into the length-prefixed form MP4 needs: ``empty_moov`` writes ftyp+moov at once (the init segment),
``frag_every_frame`` cuts a ``moof+mdat`` per frame and ``default_base_moof`` gives each fragment
the base-data-offset MSE expects.  The output is a non-seekable in-memory sink that is cut at box
boundaries.  Fragmenting per keyframe instead would delay the picture by a whole GOP.

The muxer closes a fragment when the next frame arrives, so a fragment leaves one frame after its
packet came in (40 ms at 25 fps).  Timestamps are rebased to the first packet's dts, so a frame's
place on the browser's timeline (``mediaTime``) is ``(pts - first_dts) * time_base``: the overlay
of a detection is keyed by exactly that (:meth:`FragmentMuxer.media_time`).
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from fractions import Fraction

import av

from pipeline.record.packets import StoredPacket

MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"


@dataclass(frozen=True, slots=True)
class Fragment:
    """One ``moof+mdat`` holding one frame."""

    data: bytes
    media_time: float  # seconds on the fMP4 timeline (what requestVideoFrameCallback reports as mediaTime)
    keyframe: bool
    wall: float  # when its packet was received (epoch s)


class _Sink:
    """The non-seekable file the muxer writes into; whoever reads takes what was written."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)

    def flush(self) -> None:
        pass


def top_level_boxes(buf: bytes | bytearray) -> tuple[list[tuple[str, int, int]], int]:
    """Complete top-level boxes at the start of ``buf`` as (type, offset, size), and the bytes they span."""
    out: list[tuple[str, int, int]] = []
    i = 0
    while i + 8 <= len(buf):
        size, typ = struct.unpack_from(">I4s", buf, i)
        if size == 1:  # 64-bit size
            if i + 16 > len(buf):
                break
            size = struct.unpack_from(">Q", buf, i + 8)[0]
        if size < 8 or i + size > len(buf):
            break
        out.append((typ.decode("latin-1"), i, size))
        i += size
    return out, i


def codec_string(init: bytes) -> str | None:
    """The RFC 6381 codec name MSE needs (``avc1.PPCCLL``), read from the init segment's avcC box.

    None for codecs other than H.264: the page then uses the JPEG fallback.
    """
    at = init.find(b"avcC")
    if at < 0 or at + 8 > len(init):
        return None
    profile, compat, level = init[at + 5], init[at + 6], init[at + 7]
    return f"avc1.{profile:02x}{compat:02x}{level:02x}"


class FragmentMuxer:
    """One fMP4 timeline: ``init`` once, then :meth:`mux` per packet returns the fragments completed.

    Packets must start with a keyframe and share codec parameters (the tap starts a new muxer when
    they change).  Not thread-safe: the tap serialises calls.
    """

    def __init__(self, first: StoredPacket):
        if not first.keyframe:
            raise ValueError("an fMP4 timeline must start at a keyframe")
        self.template = first.template
        self.time_base: Fraction = first.template.time_base
        self.first_dts = first.dts
        self._sink = _Sink()
        self._out = av.open(self._sink, "w", format="mp4",
                            options={"movflags": MOVFLAGS, "flush_packets": "1"})
        try:
            self._stream = self._out.add_stream_from_template(first.template.stream)
            self._out.start_encoding()  # writes ftyp + moov (empty_moov): the init segment
        except BaseException:
            self._out.close()
            raise
        boxes, end = top_level_boxes(self._sink.buf)
        if [b[0] for b in boxes] != ["ftyp", "moov"]:
            self._out.close()
            raise RuntimeError(f"unexpected fMP4 header boxes {[b[0] for b in boxes]}")
        self.init = bytes(self._sink.buf[:end])
        del self._sink.buf[:end]
        self.codec = codec_string(self.init)
        self.width, self.height = first.template.width, first.template.height
        self._waiting: collections.deque[tuple[float, bool, float]] = collections.deque()  # muxed, not yet out
        self._last_dts: int | None = None
        self.fragments = 0
        self.closed = False

    def media_time(self, pts: int) -> float:
        """Where a packet with this (stored) pts sits on this timeline, in seconds."""
        return float((pts - self.first_dts) * self.time_base)

    def mux(self, sp: StoredPacket) -> list[Fragment]:
        """Add one packet; returns the fragments that became complete (normally the previous frame's)."""
        if sp.dts < self.first_dts or (self._last_dts is not None and sp.dts <= self._last_dts):
            return []  # PacketCapture keeps dts increasing; never hand the muxer a bad one
        p = av.Packet(sp.data)
        p.dts = sp.dts - self.first_dts
        p.pts = sp.pts - self.first_dts
        p.is_keyframe = sp.keyframe
        p.time_base = self.time_base
        if sp.duration:
            p.duration = sp.duration
        p.stream = self._stream
        self._out.mux(p)
        self._last_dts = sp.dts
        self._waiting.append((self.media_time(sp.pts), sp.keyframe, sp.wall))
        return self._take()

    def _take(self) -> list[Fragment]:
        buf = self._sink.buf
        boxes, _end = top_level_boxes(buf)
        out: list[Fragment] = []
        used = 0
        i = 0
        while i + 1 < len(boxes):
            (t1, o1, _s1), (t2, o2, s2) = boxes[i], boxes[i + 1]
            if t1 != "moof":
                used = o1 + _s1  # anything else at top level (none expected) is skipped
                i += 1
                continue
            if t2 != "mdat":
                break
            media_time, key, wall = self._waiting.popleft() if self._waiting else (0.0, False, 0.0)
            out.append(Fragment(bytes(buf[o1:o2 + s2]), media_time, key, wall))
            used = o2 + s2
            i += 2
        if used:
            del buf[:used]
        self.fragments += len(out)
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._out.close()
            except (av.error.FFmpegError, OSError, ValueError):
                pass  # nothing is kept of a live timeline
