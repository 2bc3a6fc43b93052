"""Continuous recording: one camera's stored packets cut into back-to-back segment files, gaps recorded.

Stream copy only: decoding 1080p costs ~1/200 s a frame, muxing a packet microseconds, so
recording stays far below 1 % of a core per stream.  A failure to write is counted and logged,
never raised into the caller's loop: detection must go on when recording cannot.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import av.error

from pipeline.record.layout import (
    Gap,
    SegmentInfo,
    part_files,
    part_path,
    part_start,
    segment_path,
    write_gap,
    write_segment,
)
from pipeline.record.mux import MOVFLAGS, OutputFile
from pipeline.record.packets import PacketCapture, StoredPacket

log = logging.getLogger(__name__)


@dataclass
class WriterStats:
    packets: int = 0
    bytes: int = 0
    segments: int = 0
    gaps: int = 0
    errors: int = 0
    last_error: str = ""  # also keeps a repeated failure from being logged 25 times a second


class SegmentWriter:
    """Stream-copies one camera's packets into segment files of about ``segment_s`` seconds.

    A segment starts on a keyframe and is cut at the first keyframe after ``segment_s``;
    its timestamps are rebased to start at 0.  Consecutive segments are back to back: the
    start of the next is the end of the previous, kept within 1 s of the receive clock.
    Packets more than ``gap_s`` apart in wall time (default: twice the measured keyframe
    interval, at least 2 s) close the segment and write a gap; so do ``mark_gap(reason)``
    (the input lost its connection) and a new input stream.  Thread-safe.  A failure to
    write (disk full, odd stream) is counted and logged, never raised into the caller's
    loop: detection must go on when recording cannot.
    """

    def __init__(self, camera: str, recordings_dir: str | Path, segment_s: float = 10.0,
                 fmt: Literal["mp4", "fmp4"] = "mp4", gap_s: float | None = None):
        if fmt not in MOVFLAGS:
            raise ValueError(f"format must be one of {sorted(MOVFLAGS)}, not {fmt!r}")
        self.camera = camera
        self.dir = Path(recordings_dir)
        self.segment_s = segment_s
        self.fmt = fmt
        self.gap_s = gap_s
        self.stats = WriterStats()
        self.capture = PacketCapture()
        self._out: OutputFile | None = None
        self._start = 0.0  # wall start of the open segment
        self._next_start: float | None = None  # end of the previous segment, to continue back to back
        self._last_end: float | None = None  # wall end of the last segment written
        self._pending_gap: str | None = None
        self._last_key_dts: int | None = None
        self._key_interval: float | None = None  # seconds between the last two keyframes
        self._lock = threading.RLock()
        recover_partials(self.dir, camera)

    # ------------------------------------------------------------------ input
    def feed(self, packet: av.Packet, stream: av.stream.Stream, wall: float | None = None) -> list[StoredPacket]:
        """Copy, repair and write a demuxed packet; returns what was stored (for ``ring.add``).

        The caller keeps its packet: only its bytes are copied and nothing refers to it
        after return, so the decode loop can go on decoding it.
        """
        with self._lock:
            try:
                out = self.capture.capture(packet, stream, wall)
            except (ValueError, av.error.FFmpegError) as e:  # e.g. a codec MP4 cannot hold
                self._error(f"cannot take packets of this stream: {e}")
                return []
            for sp in out:
                self.write(sp)
            return out

    def write(self, sp: StoredPacket) -> None:
        """Write a captured packet: cut, gap and rebase decisions happen here."""
        with self._lock:
            out = self._out
            if out is not None:
                silent = sp.wall - out.last_wall
                if sp.template is not out.template:
                    self._close(out.end_dts())
                    if silent > self._gap_threshold():
                        self._pending_gap = self._pending_gap or f"stream restarted after {silent:.1f} s"
                elif silent > self._gap_threshold():
                    self._close(out.end_dts())
                    self._pending_gap = f"no packets for {silent:.1f} s"
                elif sp.keyframe and out.seconds(sp.dts) >= self.segment_s:
                    self._close(sp.dts)
            if sp.keyframe:
                self._learn_key_interval(sp)
            if self._out is None:
                if not sp.keyframe:
                    return  # a segment starts on a keyframe
                self._open(sp)
                if self._out is None:
                    return
            try:
                self._out.mux(sp)
            except (OSError, av.error.FFmpegError, ValueError) as e:
                self._error(f"writing {self._out.part} failed: {e}")
                self._close(self._out.end_dts())
                return
            self.stats.packets += 1
            self.stats.bytes += len(sp.data)

    # ------------------------------------------------------------------ control
    def mark_gap(self, reason: str) -> None:
        """The input lost its stream (disconnect, error): close the segment, remember a gap.

        The gap runs from the end of the last segment to the start of the next one and is
        written when recording resumes, so both ends are known.
        """
        with self._lock:
            if self._out is not None:
                self._close(self._out.end_dts())
            if self._last_end is not None:
                self._pending_gap = self._pending_gap or reason

    def close_segment(self) -> SegmentInfo | None:
        """Finish the open segment now (stop, shutdown); the next one starts at a keyframe."""
        with self._lock:
            return self._close(self._out.end_dts()) if self._out is not None else None

    def close(self) -> None:
        """End of life: finish the open segment so it becomes visible."""
        self.close_segment()

    @property
    def pending_gap(self) -> str | None:
        """Why nothing is being recorded right now (after ``mark_gap`` or a pause), else None."""
        return self._pending_gap

    # ------------------------------------------------------------------ internals
    def _gap_threshold(self) -> float:
        if self.gap_s is not None:
            return self.gap_s
        return max(2.0, 2 * (self._key_interval or 5.0))

    def _learn_key_interval(self, sp: StoredPacket) -> None:
        if self._last_key_dts is not None and sp.dts > self._last_key_dts:
            self._key_interval = float((sp.dts - self._last_key_dts) * sp.template.time_base)
        self._last_key_dts = sp.dts

    def _open(self, sp: StoredPacket) -> None:
        start = sp.wall
        if self._next_start is not None and abs(self._next_start - sp.wall) < 1.0:
            start = self._next_start  # back to back with the previous segment
        self._next_start = None
        if self._pending_gap is not None and self._last_end is not None:
            gap = Gap(min(self._last_end, start), start, self._pending_gap)
            try:
                write_gap(self.dir, self.camera, gap)
                self.stats.gaps += 1
            except OSError as e:
                self._error(f"cannot write gap record: {e}")
            log.info("camera %s: recording gap of %.1f s (%s)", self.camera, gap.end - gap.start, gap.reason)
        self._pending_gap = None
        part = part_path(self.dir, self.camera, start)
        try:
            self._out = OutputFile(part, sp, self.fmt)
            self._start = start
        except (OSError, av.error.FFmpegError, ValueError) as e:
            self._error(f"cannot open segment {part}: {e}")

    def _close(self, end_dts: int) -> SegmentInfo | None:
        """Finish the file, rename it to its final name and index it."""
        out, self._out = self._out, None
        if out is None:
            return None
        duration = out.seconds(end_dts)
        start = self._start
        self._last_end = self._next_start = start + duration
        try:
            out.close()
        except (OSError, av.error.FFmpegError, ValueError) as e:
            self._error(f"cannot finish segment {out.part}: {e}")
        if out.packets == 0 or duration <= 0:
            out.part.unlink(missing_ok=True)
            return None
        final = segment_path(self.dir, self.camera, start, duration)
        try:
            os.replace(out.part, final)
            info = SegmentInfo(self.camera, start, start + duration, final, final.stat().st_size)
            write_segment(self.dir, info, packets=out.packets)
        except OSError as e:
            self._error(f"cannot store segment {final}: {e}")
            return None
        self.stats.segments += 1
        return info

    def _error(self, msg: str) -> None:
        self.stats.errors += 1
        if msg != self.stats.last_error:  # once per distinct problem, not 25 times a second
            log.error("camera %s: %s", self.camera, msg)
        self.stats.last_error = msg


def recover_partials(recordings_dir: Path, camera: str) -> int:
    """Finish ``.part`` files a crash left behind; returns how many were kept.

    A fragmented MP4 is readable up to its last fragment: it is renamed with the duration
    read from its packets (no decoding).  A plain MP4 without its index is unreadable and
    deleted.  Runs once when a writer starts, before it creates its own ``.part`` file.
    """
    kept = 0
    for part in part_files(recordings_dir, camera):
        try:
            start = part_start(part)
            with av.open(str(part)) as c:
                vs = c.streams.video[0]
                dts = [p.dts for p in c.demux(vs) if p.dts is not None]
            if len(dts) < 2 or vs.time_base is None:
                raise ValueError("no packets")
            span = float((dts[-1] - dts[0]) * vs.time_base)
            duration = span * len(dts) / (len(dts) - 1)  # the last frame lasts one frame too
            final = segment_path(recordings_dir, camera, start, duration)
            os.replace(part, final)
            write_segment(recordings_dir, SegmentInfo(camera, start, start + duration, final, final.stat().st_size),
                          recovered=True)
            kept += 1
            log.warning("camera %s: recovered unfinished segment %s", camera, final)
        except (OSError, ValueError, IndexError, av.error.FFmpegError) as e:
            log.warning("camera %s: deleting unreadable unfinished segment %s (%s)", camera, part, e)
            part.unlink(missing_ok=True)
    return kept
