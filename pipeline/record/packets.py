"""Packets we own: copied out of the demuxer the moment they arrive, timestamps repaired once.

The muxer takes ownership of a packet's buffer while the decode loop that shares its packets
with us must keep using its own, so every packet is copied to ``bytes`` (~20 kB a frame, far
cheaper than any coordination).  Live RTSP's first packet carries no timestamp, B-frame
streams start without dts and two connections have unrelated clocks, so timestamps are put on
one strictly increasing timeline here; the ring and the segment writer see the same clean packets.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from fractions import Fraction

import av

log = logging.getLogger(__name__)


class StreamTemplate:
    """Codec parameters of one input stream, kept alive independently of its container.

    A segment (or a clip cut from the ring) may be muxed after the input that produced its
    packets was closed by a reconnect; the input's ``AVStream`` is freed then.  Copying the
    parameters into a never-written in-memory output keeps a valid template for
    ``add_stream_from_template`` for as long as a packet refers to it (a few hundred bytes).
    """

    def __init__(self, stream: av.stream.Stream):
        self._holder = av.open(io.BytesIO(), "w", format="mp4")
        self.stream = self._holder.add_stream_from_template(stream)
        tb = stream.time_base
        if tb is None:
            raise ValueError("input stream has no time base")
        self.time_base: Fraction = Fraction(tb)
        ctx = stream.codec_context
        self.codec: str = ctx.name
        self.width: int = int(getattr(ctx, "width", 0) or 0)
        self.height: int = int(getattr(ctx, "height", 0) or 0)
        self.extradata: bytes = bytes(ctx.extradata or b"")

    def compatible(self, other: StreamTemplate) -> bool:
        """True when packets of both can share one file (same codec, size and parameter sets)."""
        return other is self or (self.codec, self.width, self.height, self.extradata) == (
            other.codec, other.width, other.height, other.extradata)

    def __repr__(self) -> str:
        return f"StreamTemplate({self.codec} {self.width}x{self.height} tb={self.time_base})"


@dataclass(slots=True, frozen=True)
class StoredPacket:
    """One packet, owned by us: data copied, timestamps repaired (in ``template.time_base``)."""

    data: bytes
    pts: int
    dts: int
    keyframe: bool
    wall: float  # epoch seconds when it was received
    duration: int  # in time_base; 0 when unknown
    template: StreamTemplate


class PacketCapture:
    """Copies demuxed packets and repairs their timestamps onto one continuous timeline.

    Repairs, in the order live streams need them:

    * empty packets (the demuxer's flush packet) are dropped;
    * packets before the first one with a dts (RTSP's first keyframe has no pts at all,
      B-frame streams start with a few dts-less packets) are held, up to ``max_pending``,
      and back-filled one frame apart once a dts arrives, instead of losing a whole GOP;
    * a dts that is missing later gets ``last + one frame``; one that does not increase
      gets ``last + 1``; a jump of more than ``jump_s`` either way (camera clock reset,
      RTP wrap) or a new input stream re-anchors the timeline one frame after the last
      packet, so timestamps stay strictly increasing across reconnects;
    * pts is never below dts.
    """

    def __init__(self, max_pending: int = 16, jump_s: float = 10.0, default_fps: float = 25.0):
        self.max_pending = max_pending
        self.jump_s = jump_s
        self.default_fps = default_fps
        self.template: StreamTemplate | None = None
        self._stream: av.stream.Stream | None = None  # identity of the current input stream
        self._offset: int | None = None  # out = raw + offset; None until anchored on this stream
        self._last: int | None = None  # last emitted dts, in the current time base
        self._step = 0  # one frame, in the current time base
        self._pending: list[tuple[bytes, int | None, bool, float, int]] = []

    def capture(self, packet: av.Packet, stream: av.stream.Stream, wall: float | None = None) -> list[StoredPacket]:
        """Copy ``packet``; returns 0..n packets ready to store (n > 1 after back-filling)."""
        if packet.size == 0:
            return []
        if stream is not self._stream:
            self._new_stream(stream)
        wall = time.time() if wall is None else wall
        dur = int(packet.duration or 0)
        if dur > 0:
            self._step = dur
        item = (bytes(packet), packet.pts, bool(packet.is_keyframe), wall, dur)
        if packet.dts is None:
            if self._offset is None:  # nothing anchored yet on this stream: wait for a dts
                self._pending.append(item)
                if len(self._pending) > self.max_pending:
                    self._pending.pop(0)
                return []
            assert self._last is not None
            return [self._emit(item, self._last + self._step - self._offset)]
        out: list[StoredPacket] = []
        raw = int(packet.dts)
        if self._offset is None:
            first = raw - len(self._pending) * self._step
            self._anchor(first)
            for i, held in enumerate(self._pending):
                out.append(self._emit(held, first + i * self._step))
            self._pending.clear()
        else:
            assert self._last is not None
            jump = self.jump_s / self._tb
            if raw + self._offset <= self._last - jump or raw + self._offset > self._last + jump:
                log.info("timestamp jump of %.1f s: re-anchoring", (raw + self._offset - self._last) * self._tb)
                self._anchor(raw)
        out.append(self._emit(item, raw))
        return out

    @property
    def _tb(self) -> float:
        return float(self.template.time_base) if self.template else 1 / 90000

    def _new_stream(self, stream: av.stream.Stream) -> None:
        """A new input stream (reconnect): new template; continue the timeline in its time base."""
        old_tb = self.template.time_base if self.template else None
        self._stream = stream
        self.template = StreamTemplate(stream)
        tb = self.template.time_base
        if self._last is not None and old_tb is not None and old_tb != tb:
            self._last = round(self._last * old_tb / tb)
        rate = stream.average_rate or stream.guessed_rate or self.default_fps
        self._step = max(1, round(1 / (Fraction(rate) * tb)))
        self._offset = None
        self._pending.clear()

    def _anchor(self, raw_first: int) -> None:
        # the first packet of a stream keeps its own timestamps; later ones continue the timeline
        self._offset = 0 if self._last is None else self._last + self._step - raw_first

    def _emit(self, item: tuple[bytes, int | None, bool, float, int], raw_dts: int) -> StoredPacket:
        data, raw_pts, key, wall, dur = item
        assert self._offset is not None and self.template is not None
        dts = raw_dts + self._offset
        if self._last is not None and dts <= self._last:
            dts = self._last + 1
        elif self._last is not None and 0 < dts - self._last <= 10 * self._step and dur == 0:
            self._step = dts - self._last  # learn the frame spacing when packets carry no duration
        pts = dts if raw_pts is None else max(dts, raw_pts + self._offset)
        self._last = dts
        return StoredPacket(data, pts, dts, key, wall, dur, self.template)
