"""Continuous recording: one camera's stored packets cut into back-to-back segment files, gaps recorded.

Stream copy only: decoding 1080p costs ~1/200 s a frame, muxing a packet microseconds, so
recording stays far below 1 % of a core per stream.  A failure to write is counted and logged,
never raised into the caller's loop: detection must go on when recording cannot.

A segment whose writing or finishing failed (disk full while muxing, writing the index at close,
renaming) is deleted, never renamed as valid, and the time it covered becomes a gap with the
reason.  When the disk is full the writer does not depend on anyone else for its own safety: it
drops packets, tries again ``retry_s`` later (at a keyframe), and shows ``stats.disk_full``
meanwhile; the janitor (``pipeline.record.janitor``) is what frees the space.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import threading
from collections.abc import Callable
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

DISK_FULL_RETRY_S = 5.0  # after a write failed for want of space, wait this long (stream time) before trying again
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(e: BaseException) -> bool:
    """Whether a write failed for want of space (PyAV's errors carry the errno like the OS's)."""
    return getattr(e, "errno", None) in DISK_FULL_ERRNOS


@dataclass
class WriterStats:
    packets: int = 0
    bytes: int = 0
    segments: int = 0
    gaps: int = 0
    errors: int = 0
    last_error: str = ""  # also keeps a repeated failure from being logged 25 times a second
    discarded: int = 0  # segments deleted because writing or finishing them failed (each left a gap)
    disk_full: bool = False  # the last write failed for want of space; true until a segment is stored again


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
                 fmt: Literal["mp4", "fmp4"] = "mp4", gap_s: float | None = None,
                 retry_s: float = DISK_FULL_RETRY_S):
        if fmt not in MOVFLAGS:
            raise ValueError(f"format must be one of {sorted(MOVFLAGS)}, not {fmt!r}")
        self.camera = camera
        self.dir = Path(recordings_dir)
        self.segment_s = segment_s
        self.fmt = fmt
        self.gap_s = gap_s
        self.retry_s = retry_s
        self.stats = WriterStats()
        self.capture = PacketCapture()
        self._out: OutputFile | None = None
        self._start = 0.0  # wall start of the open segment
        self._next_start: float | None = None  # end of the previous segment, to continue back to back
        self._last_end: float | None = None  # wall end of the last segment written
        self._pending_gap: str | None = None
        self._retry_at: float | None = None  # disk full: no new segment before this wall time
        self._full_since: float | None = None  # wall time of the first disk-full failure, for the log
        self._last_key_dts: int | None = None
        self._key_interval: float | None = None  # seconds between the last two keyframes
        self._lock = threading.RLock()
        self._closed = threading.Condition(self._lock)  # a segment was finished (``finish_soon`` waits on it)
        self._closes = 0
        self._finish_wanted = False
        self.index_extra: dict[str, object] = {}  # added to every segment's index row (the cluster's fence)
        # told of every stored segment with index_extra (pipeline/record/announce.py: the cluster's catalogue)
        self.on_segment: Callable[[SegmentInfo, dict[str, object]], None] | None = None
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
                elif sp.keyframe and (out.seconds(sp.dts) >= self.segment_s
                                      or (self._finish_wanted and out.packets > 0)):
                    self._close(sp.dts)
            if sp.keyframe:
                self._learn_key_interval(sp)
            if self._out is None:
                if not sp.keyframe:
                    return  # a segment starts on a keyframe
                if self._retry_at is not None and sp.wall < self._retry_at:
                    return  # the disk was full a moment ago: do not hammer it at every keyframe
                self._open(sp)
                if self._out is None:
                    return
            try:
                self._out.mux(sp)
            except OSError as e:  # the file itself is broken (disk full, I/O error): it cannot be kept
                broken, self._out = self._out, None
                self._discard(broken, self._start, f"writing {broken.part} failed: {e}", e)
                return
            except (av.error.FFmpegError, ValueError) as e:  # a packet the muxer refused: keep what came before
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

    def finish_soon(self, timeout: float) -> float | None:
        """Finish the open segment at its next keyframe, so readers of finished segments see up to about now.

        Why: the clip of an alert that is still open is cut from finished segments only, and the
        open segment holds the last ``segment_s`` seconds (a plain MP4 is unreadable until closed).
        Cutting at the next keyframe, as the length rule does, loses no packet and leaves no gap;
        it only makes that one segment shorter.  Waits at most ``timeout`` seconds (one keyframe
        interval normally) and returns where the finished recording ends now (None: nothing yet).
        """
        with self._closed:
            if self._out is not None:
                seen = self._closes
                self._finish_wanted = True
                self._closed.wait_for(lambda: self._closes != seen or self._out is None, timeout)
                if self._closes == seen:
                    self._finish_wanted = False  # nobody waits any more: the length rule alone cuts
            return self._last_end

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
        part = part_path(self.dir, self.camera, start)
        try:
            out = OutputFile(part, sp, self.fmt)
        except (OSError, av.error.FFmpegError, ValueError) as e:
            part.unlink(missing_ok=True)
            self._failed(start, sp.wall, f"cannot open segment {part}: {e}", e)
            return
        if self._pending_gap is not None and self._last_end is not None:
            gap = Gap(min(self._last_end, start), start, self._pending_gap)
            try:
                write_gap(self.dir, self.camera, gap)
            except OSError as e:
                if is_disk_full(e):  # no room for the record either: keep the gap pending, try again later
                    out.discard()
                    self._failed(start, sp.wall, f"cannot write gap record: {e}", e)
                    return
                self._error(f"cannot write gap record: {e}")
            else:
                self.stats.gaps += 1
                self._last_end = start  # what was not recorded up to here is now on record
            log.info("camera %s: recording gap of %.1f s (%s)", self.camera, gap.end - gap.start, gap.reason)
        self._pending_gap = None
        self._out = out
        self._start = start

    def _close(self, end_dts: int) -> SegmentInfo | None:
        """Finish the file, rename it to its final name and index it; a file that cannot be finished is discarded."""
        out, self._out = self._out, None
        if out is None:
            return None
        try:
            return self._finish(out, end_dts)
        finally:
            self._closes += 1
            self._finish_wanted = False
            self._closed.notify_all()

    def _finish(self, out: OutputFile, end_dts: int) -> SegmentInfo | None:
        duration = out.seconds(end_dts)
        start = self._start
        try:
            out.close()
        except (OSError, av.error.FFmpegError, ValueError) as e:
            self._discard(out, start, f"cannot finish segment {out.part}: {e}", e)
            return None
        if out.packets == 0 or duration <= 0:
            out.part.unlink(missing_ok=True)
            self._last_end = self._next_start = start + duration
            return None
        final = segment_path(self.dir, self.camera, start, duration)
        try:
            os.replace(out.part, final)
        except OSError as e:
            self._discard(out, start, f"cannot store segment {final}: {e}", e)
            return None
        self._last_end = self._next_start = start + duration
        self.stats.segments += 1
        self._recovered(out.last_wall)
        info = SegmentInfo(self.camera, start, start + duration, final, out.bytes)
        try:
            info = dataclasses.replace(info, bytes=final.stat().st_size)
            write_segment(self.dir, info, packets=out.packets, **self.index_extra)
        except OSError as e:  # the file is complete and valid and readers find it by its name: keep it
            self._error(f"segment {final} stored but not indexed: {e}")
            if is_disk_full(e):
                self._back_off(out.last_wall)
        if self.on_segment is not None:
            try:
                self.on_segment(info, self.index_extra)
            except Exception as e:  # announcing must never stop recording
                self._error(f"segment {final} not announced: {e}")
        return info

    def _discard(self, out: OutputFile, start: float, msg: str, e: BaseException) -> None:
        """A segment that could not be written or finished: delete it and make its time a gap."""
        out.discard()
        self.stats.discarded += 1
        self._failed(start, out.last_wall, msg, e)

    def _failed(self, start: float, wall: float, msg: str, e: BaseException) -> None:
        """Nothing is recorded from ``start`` on: remember a gap (written when recording resumes)."""
        full = is_disk_full(e)
        self._error(msg, quiet=full and self.stats.disk_full)  # the pause itself was logged once
        if self._last_end is None:
            self._last_end = start  # the first segment failed: the gap starts with it
        self._next_start = None
        why = getattr(e, "strerror", None) or str(e)
        self._pending_gap = self._pending_gap or (f"disk full ({why})" if full else f"recording failed ({why})")
        if full:
            self._back_off(wall)

    def _back_off(self, wall: float) -> None:
        if not self.stats.disk_full:
            self._full_since = wall
            log.error("camera %s: disk full under %s: recording paused, retrying every %.0f s",
                      self.camera, self.dir, self.retry_s)
        self.stats.disk_full = True
        self._retry_at = wall + self.retry_s

    def _recovered(self, wall: float) -> None:
        """A segment was stored: whatever made the disk full is over."""
        if self.stats.disk_full:
            log.warning("camera %s: recording resumed after %.1f s without disk space", self.camera,
                        wall - (self._full_since or wall))
        self.stats.disk_full = False
        self._retry_at = self._full_since = None

    def _error(self, msg: str, quiet: bool = False) -> None:
        self.stats.errors += 1
        if msg != self.stats.last_error:  # once per distinct problem, not 25 times a second
            log.log(logging.DEBUG if quiet else logging.ERROR, "camera %s: %s", self.camera, msg)
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
                time_base = vs.time_base  # read while open: a closed container's streams refuse
                dts = [p.dts for p in c.demux(vs) if p.dts is not None]
            if len(dts) < 2 or time_base is None:
                raise ValueError("no packets")
            span = float((dts[-1] - dts[0]) * time_base)
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
