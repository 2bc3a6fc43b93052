"""The record role of a camera input: packets stream-copied (never decoded) into the segment writer
and the pre-event ring.

The reconnecting lifecycle is :class:`pipeline.ingest.reader.Reader`'s; a lost connection becomes an
explicit gap in the recording (``writer.mark_gap``), and the open segment is finished on stop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import av

from pipeline.ingest.reader import Backoff, Reader, ReaderStats, StateCallback
from pipeline.record.packets import PacketCapture, StoredPacket
from pipeline.record.ring import PacketRing
from pipeline.record.segments import SegmentWriter


@dataclass
class RecordStats(ReaderStats):
    bytes: int = 0
    last_packet_wall: float = 0.0


class RecordInput(Reader):
    """Reads a record URL packet by packet into a writer (and ring); without a writer, into the ring only."""

    role = "record"
    stats: RecordStats

    def __init__(self, camera_id: str, url: str, options: dict[str, str] | None, writer: SegmentWriter | None,
                 ring: PacketRing | None = None, on_state: StateCallback | None = None,
                 backoff: Backoff | None = None, open_timeout_s: float = 10.0, read_timeout_s: float = 10.0,
                 loop: bool = True, on_stored: Callable[[list[StoredPacket]], None] | None = None):
        super().__init__(camera_id, url, options=options, open_timeout_s=open_timeout_s,
                         read_timeout_s=read_timeout_s, loop=loop, backoff=backoff, on_state=on_state,
                         on_disconnect=self._gap if writer is not None else None, stats=RecordStats())
        self.writer = writer
        self.ring = ring
        self._capture = PacketCapture()  # only used when there is no writer
        self.on_stored = on_stored  # also sees every stored packet (live view of the main stream); never raises

    def _gap(self, reason: str) -> None:
        assert self.writer is not None
        self.writer.mark_gap(f"input lost: {reason}")

    def _packet(self, packet: av.Packet, stream: av.video.stream.VideoStream) -> None:
        stored = (self.writer.feed(packet, stream) if self.writer is not None
                  else self._capture.capture(packet, stream))
        if self.ring is not None:
            for sp in stored:
                self.ring.add(sp)
        if stored and self.on_stored is not None:
            self.on_stored(stored)
        if stored:
            ctx = stream.codec_context
            self._streaming(f"{ctx.name} {ctx.width}x{ctx.height}")
            self.stats.packets += len(stored)
            self.stats.bytes += sum(len(sp.data) for sp in stored)
            self.stats.last_packet_wall = stored[-1].wall

    def _finished(self) -> None:
        if self.writer is not None:
            self.writer.close_segment()
