"""Continuous recording: copy a camera's record-stream packets to disk, never decoding them.

Why this shape:

* **Stream copy only.**  Decoding 1080p costs ~1/200 s per frame here; demuxing and muxing a
  packet costs microseconds.  Nothing in this module decodes, so recording stays far below
  1 % of a core per stream (see the report numbers in the module tests / README).
* **Packets are copied to ``bytes`` the moment they arrive** (:class:`PacketCapture`).  The
  muxer takes ownership of a packet's buffer, and the decode loop that shares its packets
  with us (``writer.feed(packet, stream)``) must keep using its own; a copy of ~20 kB per
  frame is far cheaper than any coordination.
* **Timestamps are repaired once, at capture**, onto one strictly increasing timeline that
  continues across reconnects: live RTSP's first packet carries no timestamp, B-frame
  streams start without dts, and two connections have unrelated clocks.  The ring buffer
  and the segment writer then see the same clean packets.
* **Files are named after what readers need**: ``<camera>/<YYYY-MM-DD>/<HH>/<start>-<dur>.mp4``
  (UTC folders, epoch seconds with ms), so ranges, gaps and retention are answered from
  directory listings without opening a single file.  A segment is written under a
  ``.mp4.part`` name and renamed when complete, so no reader ever sees half a file.
* **Gaps are recorded, not hidden**: an append-only ``index.jsonl`` per camera and date holds
  one line per segment and one per gap (with its reason), so the UI can show *why* there is
  no video.  Retention appends ``deleted`` lines instead of rewriting the index.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Literal

import av
import av.error

log = logging.getLogger(__name__)

DEFAULT_RING_BYTES = 64 * 2**20
INDEX_NAME = "index.jsonl"
PART_SUFFIX = ".mp4.part"
SEGMENT_RE = re.compile(r"^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\.mp4$")
MOVFLAGS = {"mp4": "+faststart", "fmp4": "frag_keyframe+empty_moov+default_base_moof"}
# The longest a segment is assumed to last when looking for segments overlapping a window:
# segments start in the hour folder of their start, so readers look one hour further back.
LOOKBACK_S = 3600.0


# --------------------------------------------------------------------------- packets


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

    def to_av(self, stream: av.stream.Stream | None = None) -> av.Packet:
        """A fresh PyAV packet for muxing (muxing consumes it, so build one per use)."""
        p = av.Packet(self.data)
        p.pts, p.dts = self.pts, self.dts
        p.is_keyframe = self.keyframe
        p.time_base = self.template.time_base
        if self.duration:
            p.duration = self.duration
        if stream is not None:
            p.stream = stream
        return p


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
        self.dropped = 0
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
                    self.dropped += 1
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
        self.dropped += len(self._pending)
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


# --------------------------------------------------------------------------- ring buffer


class PacketRing:
    """The newest packets of one stream in memory, always starting at a keyframe.

    It keeps whole GOPs: the oldest one is dropped only once the next keyframe is itself at
    least ``seconds`` old, so ``packets_since(now - seconds)`` can always start at a keyframe
    at or before the requested time.  It therefore holds between ``seconds`` and
    ``seconds`` + one keyframe interval.  ``max_bytes`` is a hard cap that wins over time
    (a 4 Mbit/s stream needs ~5 MB for 10 s; the cap stops a broken or huge stream from
    eating the machine).  Thread-safe: the input thread adds, alert threads read.
    """

    def __init__(self, seconds: float, max_bytes: int = DEFAULT_RING_BYTES):
        if seconds < 0 or max_bytes <= 0:
            raise ValueError("PacketRing needs seconds >= 0 and max_bytes > 0")
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._q: deque[StoredPacket] = deque()
        self._keys: deque[tuple[int, float]] = deque()  # (absolute index, wall) of each keyframe
        self._base = 0  # absolute index of _q[0]
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, sp: StoredPacket) -> None:
        with self._lock:
            if self._q and not self._q[-1].template.compatible(sp.template):
                self._clear()  # new codec parameters: old packets cannot be muxed with new ones
            if not self._q and not sp.keyframe:
                return  # the ring must start at a keyframe
            if sp.keyframe:
                self._keys.append((self._base + len(self._q), sp.wall))
            self._q.append(sp)
            self._bytes += len(sp.data)
            self._trim(sp.wall)

    def _trim(self, newest: float) -> None:
        while len(self._keys) >= 2 and self._keys[1][1] <= newest - self.seconds:
            self._drop_head_gop()
        while self._bytes > self.max_bytes:
            if len(self._keys) >= 2:
                self._drop_head_gop()
            else:  # a single GOP over the cap: start again at the next keyframe
                self._clear()

    def _drop_head_gop(self) -> None:
        self._keys.popleft()
        nxt = self._keys[0][0]
        for _ in range(nxt - self._base):
            self._bytes -= len(self._q.popleft().data)
        self._base = nxt

    def _clear(self) -> None:
        self._base += len(self._q)
        self._q.clear()
        self._keys.clear()
        self._bytes = 0

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def packets_since(self, t: float) -> list[StoredPacket]:
        """Packets from the last keyframe at or before wall time ``t`` (or the oldest one)."""
        with self._lock:
            start = self._base
            for idx, wall in reversed(self._keys):
                if wall <= t:
                    start = idx
                    break
            return list(islice(self._q, start - self._base, None))

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def duration(self) -> float:
        """Wall-clock span from the oldest to the newest packet, in seconds."""
        with self._lock:
            return self._q[-1].wall - self._q[0].wall if self._q else 0.0

    @property
    def start(self) -> float | None:
        with self._lock:
            return self._q[0].wall if self._q else None

    def __len__(self) -> int:
        return len(self._q)


# --------------------------------------------------------------------------- names and index


@dataclass(frozen=True)
class SegmentInfo:
    """A finished segment file; start and end are epoch seconds taken from its name."""

    camera: str
    start: float
    end: float
    path: Path
    bytes: int = 0

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Gap:
    """A time without recording and why: 'no packets for 20.0 s', 'reconnect: ...'."""

    start: float
    end: float
    reason: str


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def date_dir(recordings_dir: Path, camera: str, t: float) -> Path:
    return Path(recordings_dir) / camera / _utc(t).strftime("%Y-%m-%d")


def segment_path(recordings_dir: Path, camera: str, start: float, duration: float) -> Path:
    """Where a segment starting at epoch ``start`` lives: folders by UTC date and hour."""
    return date_dir(recordings_dir, camera, start) / _utc(start).strftime("%H") / f"{start:.3f}-{duration:.3f}.mp4"


def parse_segment_name(name: str) -> tuple[float, float] | None:
    """``'1700000000.040-10.000.mp4'`` → (start, duration); None for anything else (.part files)."""
    m = SEGMENT_RE.match(name)
    return (float(m.group(1)), float(m.group(2))) if m else None


def _append_index(recordings_dir: Path, camera: str, t: float, record: dict) -> None:
    """One JSON line, appended with a single write so concurrent appenders never interleave."""
    d = date_dir(recordings_dir, camera, t)
    d.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(d / INDEX_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _days(start: float, end: float) -> Iterator[float]:
    """One timestamp inside each UTC day from ``start`` to ``end``."""
    day = _utc(start).replace(hour=0, minute=0, second=0, microsecond=0)
    while day.timestamp() <= end:
        yield max(day.timestamp(), start)
        day += timedelta(days=1)


def write_gap(recordings_dir: Path, camera: str, gap: Gap) -> None:
    """Record a gap, one line per UTC day it touches, so a reader needs only the window's days."""
    for t in _days(gap.start, gap.end):
        day_end = (_utc(t).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).timestamp()
        _append_index(recordings_dir, camera, t, {
            "type": "gap", "start": round(max(gap.start, t), 3), "end": round(min(gap.end, day_end), 3),
            "reason": gap.reason})


# --------------------------------------------------------------------------- segment writer


@dataclass
class WriterStats:
    packets: int = 0
    bytes: int = 0
    segments: int = 0
    gaps: int = 0
    skipped_to_keyframe: int = 0  # packets dropped while waiting for a keyframe to start a segment
    errors: int = 0
    last_error: str = ""


class _OutputFile:
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
        self.container.close()  # writes the index (and, for mp4, moves it to the front)


def write_clip(packets: Sequence[StoredPacket], path: str | Path, fmt: Literal["mp4", "fmp4"] = "mp4") -> float:
    """Mux stored packets, e.g. ``ring.packets_since(t)``, into one file starting at 0.

    The packets must start at a keyframe and share codec parameters (a PacketRing
    guarantees both).  Written under a temporary name and renamed; returns the duration.
    """
    if not packets or not packets[0].keyframe:
        raise ValueError("a clip needs packets starting at a keyframe")
    path = Path(path)
    out = _OutputFile(path.with_name(path.name + ".part"), packets[0], fmt)
    try:
        for sp in packets:
            out.mux(sp)
        out.close()
    except BaseException:
        out.part.unlink(missing_ok=True)
        raise
    os.replace(out.part, path)
    return out.seconds(out.end_dts())


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
                 on_segment: Callable[[SegmentInfo], None] | None = None):
        if fmt not in MOVFLAGS:
            raise ValueError(f"format must be one of {sorted(MOVFLAGS)}, not {fmt!r}")
        self.camera = camera
        self.dir = Path(recordings_dir)
        self.segment_s = segment_s
        self.fmt = fmt
        self.gap_s = gap_s
        self.on_segment = on_segment
        self.stats = WriterStats()
        self.capture = PacketCapture()
        self._out: _OutputFile | None = None
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
                    self.stats.skipped_to_keyframe += 1
                    return
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
        part = segment_path(self.dir, self.camera, start, 0).with_name(f"{start:.3f}{PART_SUFFIX}")
        try:
            self._out = _OutputFile(part, sp, self.fmt)
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
            size = final.stat().st_size
            _append_index(self.dir, self.camera, start, {
                "type": "segment", "start": round(start, 3), "end": round(start + duration, 3),
                "path": str(final.relative_to(date_dir(self.dir, self.camera, start))),
                "bytes": size, "packets": out.packets})
        except OSError as e:
            self._error(f"cannot store segment {final}: {e}")
            return None
        info = SegmentInfo(self.camera, start, start + duration, final, size)
        self.stats.segments += 1
        if self.on_segment is not None:
            try:
                self.on_segment(info)
            except Exception:  # a listener must never stop the recording
                log.exception("camera %s: on_segment callback failed", self.camera)
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
    cam_dir = Path(recordings_dir) / camera
    if not cam_dir.is_dir():
        return 0
    for part in cam_dir.glob(f"*/*/*{PART_SUFFIX}"):
        try:
            start = float(part.name[: -len(PART_SUFFIX)])
            with av.open(str(part)) as c:
                vs = c.streams.video[0]
                dts = [p.dts for p in c.demux(vs) if p.dts is not None]
            if len(dts) < 2 or vs.time_base is None:
                raise ValueError("no packets")
            span = float((dts[-1] - dts[0]) * vs.time_base)
            duration = span * len(dts) / (len(dts) - 1)  # the last frame lasts one frame too
            final = segment_path(recordings_dir, camera, start, duration)
            os.replace(part, final)
            _append_index(recordings_dir, camera, start, {
                "type": "segment", "start": round(start, 3), "end": round(start + duration, 3),
                "path": str(final.relative_to(date_dir(recordings_dir, camera, start))),
                "bytes": final.stat().st_size, "recovered": True})
            kept += 1
            log.warning("camera %s: recovered unfinished segment %s", camera, final)
        except (OSError, ValueError, IndexError, av.error.FFmpegError) as e:
            log.warning("camera %s: deleting unreadable unfinished segment %s (%s)", camera, part, e)
            part.unlink(missing_ok=True)
    return kept


# --------------------------------------------------------------------------- readers


class Recordings:
    """Answers "what was recorded when" from file names and the gap index, opening no video."""

    def __init__(self, recordings_dir: str | Path):
        self.dir = Path(recordings_dir)

    def segments(self, camera: str, start: float, end: float) -> list[SegmentInfo]:
        """Finished segments overlapping [start, end], oldest first."""
        out: list[SegmentInfo] = []
        seen_hours: set[Path] = set()
        t = start - LOOKBACK_S
        while t <= end + 3600:
            hour_dir = date_dir(self.dir, camera, t) / _utc(t).strftime("%H")
            t += 3600
            if hour_dir in seen_hours:
                continue
            seen_hours.add(hour_dir)
            try:
                entries = list(os.scandir(hour_dir))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                parsed = parse_segment_name(e.name)
                if parsed is None:
                    continue
                s, d = parsed
                if s < end and s + d > start:
                    try:
                        size = e.stat().st_size
                    except FileNotFoundError:  # deleted by retention meanwhile
                        continue
                    out.append(SegmentInfo(camera, s, s + d, Path(e.path), size))
        out.sort(key=lambda s: s.start)
        return out

    def recorded_ranges(self, camera: str, start: float, end: float, join_s: float = 1.0) -> list[tuple[float, float]]:
        """Recorded time inside [start, end] as merged (start, end) ranges; holes over ``join_s`` split."""
        ranges: list[list[float]] = []
        for seg in self.segments(camera, start, end):
            s, e = max(seg.start, start), min(seg.end, end)
            if ranges and s - ranges[-1][1] <= join_s:
                ranges[-1][1] = max(ranges[-1][1], e)
            else:
                ranges.append([s, e])
        return [(s, e) for s, e in ranges]

    def recorded_gaps(self, camera: str, start: float, end: float) -> list[Gap]:
        """Gap records (with their reasons) overlapping [start, end], oldest first."""
        out: list[Gap] = []
        for t in _days(start, end):
            try:
                with open(date_dir(self.dir, camera, t) / INDEX_NAME, encoding="utf-8") as f:
                    for line in f:
                        if '"gap"' not in line:  # skip the many segment lines without parsing them
                            continue
                        try:
                            r = json.loads(line)
                        except ValueError:
                            continue  # a torn last line after a crash
                        if r.get("type") == "gap" and r["start"] < end and r["end"] > start:
                            out.append(Gap(float(r["start"]), float(r["end"]), str(r.get("reason", ""))))
            except FileNotFoundError:
                continue
        out.sort(key=lambda g: g.start)
        return _merge_gaps(out)

    def gaps(self, camera: str, start: float, end: float, join_s: float = 1.0) -> list[Gap]:
        """Every hole in [start, end]: recorded gaps with their reason, other holes as 'not recorded'.

        A hole nobody recorded (the process was down, the segment was deleted) is still a
        hole: the UI must show it.  The live edge is not a hole while a segment is being
        written: the window is cut at the start of an open ``.part`` file.
        """
        open_start = self._open_segment_start(camera)
        if open_start is not None and open_start < end:
            end = max(start, open_start)
        known = self.recorded_gaps(camera, start, end)
        covered = sorted([(s, e) for s, e in self.recorded_ranges(camera, start, end, join_s)]
                         + [(g.start, g.end) for g in known])
        holes: list[Gap] = []
        t = start
        for s, e in covered:
            if s - t > join_s:
                holes.append(Gap(t, s, "not recorded"))
            t = max(t, e)
        if end - t > join_s:
            holes.append(Gap(t, end, "not recorded"))
        return sorted([Gap(max(g.start, start), min(g.end, end), g.reason) for g in known] + holes,
                      key=lambda g: g.start)

    def _open_segment_start(self, camera: str) -> float | None:
        cam = self.dir / camera
        starts = []
        for part in cam.glob(f"*/*/*{PART_SUFFIX}") if cam.is_dir() else ():
            try:
                starts.append(float(part.name[: -len(PART_SUFFIX)]))
            except ValueError:
                continue
        return max(starts) if starts else None


def iter_index(recordings_dir: str | Path, camera: str, start: float, end: float) -> Iterable[dict]:
    """Raw index records of the days touching [start, end] (segments, gaps, deletions)."""
    for t in _days(start, end):
        try:
            with open(date_dir(Path(recordings_dir), camera, t) / INDEX_NAME, encoding="utf-8") as f:
                for line in f:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
        except FileNotFoundError:
            continue


def _merge_gaps(gaps: list[Gap]) -> list[Gap]:
    """Join the per-day pieces of one gap back together."""
    out: list[Gap] = []
    for g in gaps:
        if out and out[-1].reason == g.reason and abs(g.start - out[-1].end) < 1e-3:
            out[-1] = Gap(out[-1].start, g.end, g.reason)
        else:
            out.append(g)
    return out


# --------------------------------------------------------------------------- retention


@dataclass
class SweepResult:
    deleted_files: int = 0
    freed_bytes: int = 0
    kept_protected: int = 0  # segments that were due but protected
    errors: int = 0
    deleted: list[SegmentInfo] = field(default_factory=list)


Protected = Callable[[str, float, float], bool]


class Retention:
    """Deletes old recordings: by age, then oldest first over the total and per-camera quotas.

    Everything is decided from file names and ``stat`` sizes.  ``protected(camera, start,
    end)`` vetoes a deletion (exports, open incidents); a protected segment still counts
    towards the quota, so a quota can be exceeded by protected video, never by deleting it.
    The segment being written (a ``.part`` file) is never touched.
    """

    def __init__(self, recordings_dir: str | Path, retain_days: float, quota_bytes: int | None = None,
                 camera_quota_bytes: int | None = None, protected: Protected | None = None):
        self.dir = Path(recordings_dir)
        self.retain_days = retain_days
        self.quota_bytes = quota_bytes
        self.camera_quota_bytes = camera_quota_bytes
        self.protected = protected

    def scan(self) -> list[SegmentInfo]:
        """All finished segments on disk, oldest first."""
        out: list[SegmentInfo] = []
        if not self.dir.is_dir():
            return out
        for cam in _subdirs(self.dir):
            for day in _subdirs(cam):
                for hour in _subdirs(day):
                    for e in os.scandir(hour):
                        parsed = parse_segment_name(e.name)
                        if parsed is None:
                            continue
                        try:
                            size = e.stat().st_size
                        except FileNotFoundError:
                            continue
                        out.append(SegmentInfo(cam.name, parsed[0], parsed[0] + parsed[1], Path(e.path), size))
        out.sort(key=lambda s: s.start)
        return out

    def sweep(self, now: float | None = None) -> SweepResult:
        now = time.time() if now is None else now
        result = SweepResult()
        segs = self.scan()
        alive: list[SegmentInfo] = []
        cutoff = now - self.retain_days * 86400
        for s in segs:
            if s.end < cutoff and self._may_delete(s, result):
                self._delete(s, "age", result)
            else:
                alive.append(s)
        if self.quota_bytes is not None:
            alive = self._enforce(alive, self.quota_bytes, "quota", result)
        if self.camera_quota_bytes is not None:
            by_cam: dict[str, list[SegmentInfo]] = {}
            for s in alive:
                by_cam.setdefault(s.camera, []).append(s)
            for cam_segs in by_cam.values():
                self._enforce(cam_segs, self.camera_quota_bytes, "camera_quota", result)
        self._remove_empty(cutoff)
        if result.deleted_files:
            log.info("retention: deleted %d segments, freed %.1f MB (%d protected kept)",
                     result.deleted_files, result.freed_bytes / 1e6, result.kept_protected)
        return result

    def _enforce(self, segs: list[SegmentInfo], quota: int, why: str, result: SweepResult) -> list[SegmentInfo]:
        """Delete the oldest deletable segments until ``segs`` fit ``quota``; returns the survivors."""
        total = sum(s.bytes for s in segs)
        keep: list[SegmentInfo] = []
        for s in segs:  # oldest first
            if total > quota and self._may_delete(s, result) and self._delete(s, why, result):
                total -= s.bytes
                continue
            keep.append(s)
        return keep

    def _may_delete(self, s: SegmentInfo, result: SweepResult) -> bool:
        if self.protected is not None and self.protected(s.camera, s.start, s.end):
            result.kept_protected += 1
            return False
        return True

    def _delete(self, s: SegmentInfo, why: str, result: SweepResult) -> bool:
        try:
            s.path.unlink()
        except FileNotFoundError:
            return True
        except OSError as e:
            result.errors += 1
            log.error("retention: cannot delete %s: %s", s.path, e)
            return False
        result.deleted_files += 1
        result.freed_bytes += s.bytes
        result.deleted.append(s)
        try:
            _append_index(self.dir, s.camera, s.start, {
                "type": "deleted", "path": str(s.path.relative_to(date_dir(self.dir, s.camera, s.start))),
                "start": round(s.start, 3), "reason": why, "at": round(time.time(), 3)})
        except OSError as e:
            result.errors += 1
            log.error("retention: cannot mark %s deleted in the index: %s", s.path, e)
        return True

    def _remove_empty(self, cutoff: float) -> None:
        """Drop empty hour folders; then a day with no hour left goes with its index.

        A day folder that still holds only gap records is kept until it is older than the
        retention, so gaps stay visible as long as the video around them would have been.
        """
        for cam in _subdirs(self.dir):
            for day in _subdirs(cam):
                for hour in _subdirs(day):
                    _rmdir_quiet(hour)
                if any(p.is_dir() for p in day.iterdir()):
                    continue
                try:
                    day_end = datetime.strptime(day.name, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() + 86400
                except ValueError:
                    continue  # not ours
                if day_end < cutoff or not _has_gap_records(day / INDEX_NAME):
                    (day / INDEX_NAME).unlink(missing_ok=True)
                    _rmdir_quiet(day)
            _rmdir_quiet(cam)


def _has_gap_records(index: Path) -> bool:
    try:
        with open(index, encoding="utf-8") as f:
            return any('"gap"' in line for line in f)
    except FileNotFoundError:
        return False


def _subdirs(p: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(p) if e.is_dir())
    except FileNotFoundError:
        return []


def _rmdir_quiet(p: Path) -> None:
    try:
        p.rmdir()
    except OSError:  # not empty (a writer is busy there), or gone already
        pass
