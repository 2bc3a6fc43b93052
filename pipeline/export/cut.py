"""One camera's recorded segments over a time range, stream-copied into one MP4 (``+faststart``).

Why stream copy: decoding and encoding 1080p costs about 1/200 s a frame here, demuxing and
muxing a packet microseconds, so ten minutes of one camera are copied in about a second and the
pictures are bit for bit what the camera sent (what an evidence export must be).

The file starts at the keyframe shown at or before the requested start (a decoder cannot start
elsewhere) and ends with the last frame shown before the requested end.  Times are display times
(pts); with B-frames packets come in decode order, so every frame shown before the end is in,
with the reference frames decoded before them (one shown at or after the end is kept, and the
notes say so, when earlier frames are predicted from it), and the file's time 0 is its first
frame shown (the packets decoded before it get negative dts: an MP4 edit list).  Where a file
starts at an open GOP's keyframe (x265's default CRA), the leading pictures after it, predicted
from the GOP before, are left out.  Its timeline is continuous:
segments recorded back to back (the segment writer's normal case) follow each other frame after
frame, so the frame count and duration are exactly those of the range; where the recording has a
hole (a gap, a skipped corrupt segment) the file's clock jumps by the hole's length, so a time in
the file is always the time of the recording's first frame plus that offset.  A segment whose
codec parameters differ from the file's (the camera was reconfigured) starts a second file,
``<camera>-2.mp4``: one MP4 track holds one set of parameters.

``precise`` re-encodes only the first group of pictures, from the first frame shown at or after
the requested start to the next keyframe, with the recording's codec (H.264: libx264, H.265:
libx265), size and profile, without B-frames; everything after stays a copy, with its own
timestamps: the re-encoded frames keep their display times and get dts = pts minus the stream's
reorder delay, so dts rise strictly across the switch and pts is never below dts.  The
re-encoded frames carry their own parameter sets in band and the first copied keyframe after
them gets the original ones back in band (H.265: after an end-of-sequence unit when it is not an
IDR), so one track holds both (FFmpeg and browsers switch parameter sets in band).  Other codecs,
an H.264 stream whose next keyframe is not an IDR picture, or an FFmpeg without the encoder:
the file starts at the keyframe and the notes say why.

A segment that cannot be read (no index, truncated, not a video) is skipped and reported, never
fatal: the time it covered is a hole like any other.  A write that fails (disk full) deletes what
this camera wrote and raises; the caller decides about the rest of the export.

Each segment file is read into memory once; its sha256 is computed from those bytes (on another
thread, while they are demuxed) and the packets are demuxed from the same bytes, so the hash the
manifest gives for a source segment is the hash of exactly what was exported, not of a second read.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import io
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import av.error
from av.video.codeccontext import VideoCodecContext

from pipeline.record.catalog import Recordings
from pipeline.record.layout import SegmentInfo
from pipeline.record.mux import OutputFile
from pipeline.record.packets import StoredPacket, StreamTemplate

log = logging.getLogger(__name__)

BACK_TO_BACK_S = 0.05  # segments whose names are this close in time were recorded back to back
PRECISE_CRF = "16"  # x264 quality of the re-encoded first GOP: visually lossless at camera bitrates
_PROFILES = {66: "baseline", 77: "main", 88: "extended", 100: "high"}

Progress = Callable[[int], None]  # bytes of recordings read since the last call


class CorruptSegment(Exception):
    """A segment file that cannot be read as a video: it is skipped and the reason goes into the manifest."""


@dataclass(frozen=True)
class Skipped:
    path: Path
    start: float
    end: float
    reason: str
    sha256: str | None = None  # of the bytes read (None when the file could not be read at all)
    bytes: int | None = None


@dataclass(frozen=True)
class SourceHash:
    """sha256 and size of a source segment's bytes as the export read them: the link from recording to export."""

    sha256: str
    bytes: int


@dataclass
class OutputInfo:
    """One MP4 written for a camera: its file, the recording time it covers and what it holds."""

    path: Path
    start: float  # epoch seconds of its first frame
    end: float  # epoch seconds after its last frame
    frames: int = 0
    duration_s: float = 0.0  # the file's own duration (its timeline), equal to end - start without holes
    codec: str = ""
    width: int = 0
    height: int = 0
    reencoded_frames: int = 0  # the first GOP with --precise


@dataclass
class CameraCut:
    """What one camera's export produced: files, the segments used, the ones skipped and why."""

    camera: str
    files: list[OutputInfo] = field(default_factory=list)
    used: list[SegmentInfo] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hashes: dict[Path, SourceHash] = field(default_factory=dict)  # every segment read, by path (used and skipped)

    @property
    def start(self) -> float | None:
        return self.files[0].start if self.files else None

    @property
    def end(self) -> float | None:
        return self.files[-1].end if self.files else None


@dataclass
class _Packet:
    data: bytes
    pts: int  # relative to the segment's first dts, in the segment's time base
    dts: int
    key: bool


@dataclass
class _Segment:
    """A segment read into memory (a few MB): packets with segment-relative timestamps."""

    info: SegmentInfo
    template: StreamTemplate
    tb: Fraction
    packets: list[_Packet]
    end_rel: int  # where the segment ends (after its last frame), relative, in tb
    b_frames: bool
    tb_s: float = 0.0  # float(tb): per-packet arithmetic in Fractions costs more than the copy itself
    source: SourceHash | None = None
    shift: int = 0  # reorder delay: shown(pts) puts the segment's frames on its own [start, end) (see shown)

    def wall(self, rel: int) -> float:
        """The recording's clock at a decode timestamp (segment names and ends are on this clock)."""
        return self.info.start + rel * self.tb_s

    def shown(self, pts: int) -> float:
        """When a frame is shown, on the recording's clock.

        The segment's name and end are decode times (the time the packets arrived); frames are
        shown later by the stream's reorder delay.  ``shift`` (the last frame shown minus the last
        decoded, 0 without B-frames) takes it off, so the frames of a segment are shown within its
        own [start, end): whole segments give exactly their packets, however a live source's
        timestamps were repaired, and a segment's last frame is not counted in the next one's time.
        """
        return self.info.start + (pts - self.shift) * self.tb_s

    def window(self, start: float, end: float) -> tuple[int, int]:
        """Packet indexes [lo, hi) for [start, end): from the keyframe at or before ``start``, up to ``end``.

        Times are display times (pts).  Without B-frames (pts = dts) that is the packets from the
        keyframe to the last frame before ``end``.  With B-frames the packets are in decode order:
        ``hi`` is one past the last packet shown before ``end``, so every frame shown before ``end``
        is in, with the reference frames decoded before it (shown at or after ``end``: they cannot
        be left out, the B-frames before ``end`` are predicted from them).
        """
        lo = 0
        for i, p in enumerate(self.packets):
            if p.key:
                if self.shown(p.pts) > start + 1e-6:
                    break
                lo = i
        hi = len(self.packets)
        while hi > lo and self.shown(self.packets[hi - 1].pts) >= end - 1e-6:
            hi -= 1
        return lo, hi

    def leading(self, lo: int) -> list[int]:
        """Packets after keyframe ``lo`` (decode order) that are shown before it: an open GOP's leading pictures.

        They are predicted from the GOP before ``lo``: where a file starts at ``lo`` they cannot be
        decoded and are left out.  Empty for closed GOPs (H.264 IDR, x264's default).
        """
        k = self.packets[lo].pts
        out = []
        for i in range(lo + 1, len(self.packets)):  # leading pictures precede the trailing ones in decode order
            if self.packets[i].key or self.packets[i].pts > k:
                break
            out.append(i)
        return out

    def step(self) -> int:
        """One frame, in tb (the median spacing of its packets)."""
        d = sorted(b.dts - a.dts for a, b in zip(self.packets, self.packets[1:]))
        return d[len(d) // 2] if d else max(1, self.end_rel)


_hash_pool: cf.ThreadPoolExecutor | None = None
_hash_pool_lock = threading.Lock()


def _hasher() -> cf.ThreadPoolExecutor:
    """Threads that hash segment bytes while the cutting thread demuxes them (hashlib releases the GIL)."""
    global _hash_pool
    with _hash_pool_lock:
        if _hash_pool is None:
            _hash_pool = cf.ThreadPoolExecutor(2, thread_name_prefix="export-segment-hash")
        return _hash_pool


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_segment(info: SegmentInfo, hashes: dict[Path, SourceHash] | None = None) -> _Segment:
    """Demux a whole segment (no decoding); CorruptSegment when it is not a complete, readable video.

    The file is read once; its sha256 (of those bytes) goes into ``hashes`` even when the segment
    then turns out to be corrupt, so a skipped segment is identified as precisely as a used one.
    """
    try:
        data = info.path.read_bytes()
    except OSError as e:
        raise CorruptSegment(f"unreadable: {e}") from None
    digest = _hasher().submit(_sha256, data)
    try:
        seg = _demux(info, data)
    finally:
        source = SourceHash(digest.result(), len(data))
        if hashes is not None:
            hashes[info.path] = source
    seg.source = source
    return seg


def _demux(info: SegmentInfo, data: bytes) -> _Segment:
    try:
        # skip_frame=all: opening must not decode a frame to learn the pixel format (8 ms of a 9 ms open
        # at 1080p); stream copy never needs it
        with av.open(io.BytesIO(data), "r", options={"skip_frame": "all"}) as c:
            if not c.streams.video:
                raise CorruptSegment("no video stream")
            s = c.streams.video[0]
            template = StreamTemplate(s)
            expected = int(s.frames or 0)
            raw: list[tuple[bytes, int, int, bool, int]] = []
            for p in c.demux(s):
                if p.size == 0:
                    continue
                if p.dts is None or p.is_corrupt:
                    raise CorruptSegment(f"damaged or truncated: frame {len(raw) + 1} of {expected or '?'} "
                                         "cannot be read whole")
                raw.append((bytes(p), int(p.pts if p.pts is not None else p.dts), int(p.dts), bool(p.is_keyframe),
                            int(p.duration or 0)))
    except CorruptSegment:
        raise
    except (OSError, av.error.FFmpegError, ValueError, IndexError) as e:
        raise CorruptSegment(f"unreadable: {e}") from None
    if not raw:
        raise CorruptSegment("no packets")
    if expected and len(raw) < expected:
        raise CorruptSegment(f"truncated: {len(raw)} of {expected} frames readable")
    if not raw[0][3]:
        raise CorruptSegment("does not start with a keyframe")
    d0 = raw[0][2]
    packets = [_Packet(data, pts - d0, dts - d0, key) for data, pts, dts, key, _ in raw]
    seg = _Segment(info, template, template.time_base, packets, 0, any(p.pts != p.dts for p in packets),
                   float(template.time_base))
    last_dur = raw[-1][4] or seg.step()
    seg.end_rel = packets[-1].dts + last_dur
    if seg.b_frames:
        seg.shift = max(0, max(p.pts for p in packets) - packets[-1].dts)
    return seg


class _File(OutputFile):
    """OutputFile that keeps the timestamps it is given (the file's own timeline) instead of starting dts at 0.

    The timeline here puts the first *shown* frame at 0; with B-frames the packets decoded before
    it have negative dts, which the MP4 muxer writes as an edit list (players start at frame 0).
    """

    def __init__(self, part: Path, first: StoredPacket, fmt: str):
        super().__init__(part, first, fmt)
        self.first_dts = 0


class _Output:
    """One MP4 being assembled from segment pieces on one continuous timeline (the file's time base)."""

    def __init__(self, path: Path, template: StreamTemplate):
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.template = template
        self.tb = template.time_base
        self.out: OutputFile | None = None
        self.end_dts = 0  # after the last frame in decode order, in tb (where the next contiguous piece goes on)
        self.end_shown = 0  # after the last frame shown, in tb
        self.first_wall = 0.0
        self.end_wall = 0.0
        self.frames = 0
        self.reencoded = 0
        self.inband: list[bytes] = []  # parameter sets to put in front of the next copied keyframe
        self.nal_size = 4

    def append(self, seg: _Segment, lo: int, hi: int, end_rel: int, contiguous: bool, reencoded: int = 0,
               shown_end: int | None = None) -> None:
        """Mux packets [lo, hi) of ``seg``; ``end_rel``: where the piece ends in decode order (the next
        contiguous piece goes on there); ``shown_end``: after its last frame shown, when not end_rel + the
        reorder tail (a re-encoded piece, whose decode times are its own)."""
        conv = seg.tb / self.tb
        same = conv == 1

        def rescale(v: int) -> int:
            return v if same else round(v * conv)

        pk = seg.packets
        if self.out is None:  # the file's time 0 is its first frame shown
            shown = min(pk[i].pts for i in range(lo, hi)) if seg.b_frames else pk[lo].pts
            base = -rescale(shown)
            self.first_wall = seg.shown(shown)
        elif contiguous:
            base = self.end_dts - rescale(pk[lo].dts)
        else:  # a hole: the file's clock jumps by its length, never backwards
            at = round((seg.shown(pk[lo].pts) - self.first_wall) / float(self.tb))
            base = max(at - rescale(pk[lo].pts), self.end_dts - rescale(pk[lo].dts))
        for i in range(lo, hi):
            p = pk[i]
            nxt = pk[i + 1].dts if i + 1 < hi else end_rel
            data = p.data
            if p.key and self.inband and i >= lo + reencoded:
                data, self.inband = _resume(self.template.codec, data, self.inband, self.nal_size), []
            sp = StoredPacket(data, base + rescale(p.pts), base + rescale(p.dts), p.key, seg.wall(p.dts),
                              max(1, rescale(nxt) - rescale(p.dts)), self.template)
            if self.out is None:
                self.out = _File(self.part, sp, "mp4")
            self.out.mux(sp)
            self.frames += 1
        # after the last frame shown: the end in decode order plus the reorder delay of the last frames
        tail = (max(pk[i].pts for i in range(lo, hi)) - pk[hi - 1].dts) if seg.b_frames and hi > lo else 0
        shown = shown_end if shown_end is not None else end_rel + tail
        self.end_dts = base + rescale(end_rel)
        self.end_shown = max(self.end_shown, base + rescale(shown))
        self.end_wall = seg.shown(shown)
        self.reencoded += reencoded

    def finish(self) -> OutputInfo:
        assert self.out is not None
        self.out.close()
        self.part.replace(self.path)
        t = self.template
        return OutputInfo(self.path, self.first_wall, self.end_wall, self.frames, float(self.end_shown * self.tb),
                          t.codec, t.width, t.height, self.reencoded)

    def discard(self) -> None:
        if self.out is not None:
            self.out.discard()
        self.part.unlink(missing_ok=True)


def cut_camera(recordings_dir: Path, camera: str, start: float, end: float, dest: Path, precise: bool = False,
               progress: Progress | None = None, segments: list[SegmentInfo] | None = None) -> CameraCut:
    """Stream-copy ``camera``'s recordings overlapping [start, end) into ``dest/<camera>.mp4``.

    Returns what was written (no file when nothing was recorded in the range).  On a write error
    every file of this camera is deleted before the error is raised.
    """
    segs = segments if segments is not None else Recordings(recordings_dir).segments(camera, start, end)
    cut = CameraCut(camera)
    cur: _Output | None = None
    prev: SegmentInfo | None = None
    extra = 0  # frames shown at or after the end, kept because B-frames before it are predicted from them
    try:
        i = 0
        while i < len(segs):
            info = segs[i]
            i += 1
            try:
                seg = read_segment(info, cut.hashes)
            except CorruptSegment as e:
                h = cut.hashes.get(info.path)
                cut.skipped.append(Skipped(info.path, info.start, info.end, str(e), h.sha256 if h else None,
                                           h.bytes if h else None))
                log.warning("export %s: skipping corrupt segment %s: %s", camera, info.path, e)
                if progress:
                    progress(info.bytes)
                continue
            lo, hi = seg.window(start, end)
            if lo < hi:
                end_rel = seg.packets[hi].dts if hi < len(seg.packets) else seg.end_rel
                if cur is None or not cur.template.compatible(seg.template):
                    if cur is not None:
                        cut.files.append(cur.finish())
                        cut.notes.append(f"the stream changed at {info.start:.3f} (codec, size or parameters): "
                                         "a new file starts there")
                    n = len(cut.files) + 1
                    cur = _Output(dest / (f"{camera}.mp4" if n == 1 else f"{camera}-{n}.mp4"), seg.template)
                contiguous = prev is not None and abs(info.start - prev.end) <= BACK_TO_BACK_S
                reencoded = 0
                shown_end = None
                joined: list[SegmentInfo] = []
                if precise and cur.out is None and not cut.files:
                    # the first GOP runs to the end of the segment: re-encode it with the next segment at hand,
                    # whose open-GOP leading pictures are predicted from it
                    while (not any(p.key for p in seg.packets[lo + 1:]) and i < len(segs) and segs[i].start < end
                           and abs(segs[i].start - (joined[-1] if joined else info).end) <= BACK_TO_BACK_S):
                        try:
                            nxt = read_segment(segs[i], cut.hashes)
                        except CorruptSegment:
                            break  # the loop skips and reports it
                        if nxt.tb != seg.tb or not nxt.template.compatible(seg.template):
                            break
                        seg = _join(seg, nxt)
                        joined.append(segs[i])
                        if progress:
                            progress(segs[i].bytes)
                        i += 1
                        lo, hi = seg.window(start, end)
                        end_rel = seg.packets[hi].dts if hi < len(seg.packets) else seg.end_rel
                    seg, lo, hi, reencoded, end_rel, shown_end = _precise_start(seg, lo, hi, start, end, cur,
                                                                                cut.notes, end_rel)
                if not reencoded and (cur.out is None or not contiguous) and (drop := seg.leading(lo)):
                    # a file (or the piece after a hole) starting at an open GOP's keyframe: its leading
                    # pictures refer to frames that are not in the file
                    gone = set(drop)
                    seg = dataclasses.replace(seg, packets=[p for i, p in enumerate(seg.packets) if i not in gone])
                    hi -= sum(1 for i in drop if i < hi)
                if lo < hi:
                    if seg.b_frames:
                        extra += sum(1 for i in range(lo, hi) if seg.shown(seg.packets[i].pts) >= end - 1e-6)
                    cur.append(seg, lo, hi, end_rel, contiguous, reencoded, shown_end)
                    cut.used += [info, *joined]
                    prev = joined[-1] if joined else info
            if progress:
                progress(info.bytes)
        if cur is not None and cur.out is not None:
            cut.files.append(cur.finish())
        if extra:
            cut.notes.append(f"{extra} frame(s) shown at or after the requested end are in the file: frames shown "
                             "before the end are predicted from them (stream copy cannot leave them out)")
    except BaseException:
        if cur is not None:
            cur.discard()
        for f in cut.files:
            f.path.unlink(missing_ok=True)
        raise
    return cut


# ------------------------------------------------------------------------------------------ --precise


def _join(a: _Segment, b: _Segment) -> _Segment:
    """Two contiguous segments (same time base and parameters) as one: ``b``'s timestamps go on from ``a``'s end."""
    off = a.end_rel
    packets = a.packets + [_Packet(p.data, p.pts + off, p.dts + off, p.key) for p in b.packets]
    return dataclasses.replace(a, packets=packets, end_rel=off + b.end_rel, b_frames=a.b_frames or b.b_frames)


def _precise_start(seg: _Segment, lo: int, hi: int, start: float, end: float, out: _Output, notes: list[str],
                   end_rel: int) -> tuple[_Segment, int, int, int, int, int | None]:
    """Re-encode the first GOP from the first frame at or after ``start``.

    Returns (piece, lo, hi, frames re-encoded, end_rel, shown_end): the new piece, where it ends in
    decode order and (when it is all re-encoded) after its last frame shown.  ``seg`` may be two
    segments joined (see cut_camera) when the first GOP runs into the next one.

    The frames shown from ``start`` up to the next keyframe (``k2``) are decoded (from the keyframe
    before ``start``, through the leading pictures of an open GOP at ``k2``) and encoded again with
    the same codec, size and profile, without B-frames, so decode order = display order.  They keep
    their display times; their dts are their pts minus the stream's reorder delay, so they come
    strictly before ``k2``'s dts and the copied rest keeps its own timestamps: one continuous,
    strictly increasing dts line, pts never below dts.  ``k2``'s open-GOP leading pictures (shown
    before it, predicted from the GOP being replaced) are among the re-encoded frames and leave the
    copy.  Nothing is re-encoded when the keyframe already is within half a frame of ``start``.
    """
    step = seg.step()
    half = float(step * seg.tb) / 2
    pk = seg.packets
    if seg.shown(pk[lo].pts) >= start - half:
        return seg, lo, hi, 0, end_rel, None
    codec = seg.template.codec
    k2 = next((i for i in range(lo + 1, len(pk)) if pk[i].key), len(pk))
    lead = seg.leading(k2) if k2 < len(pk) else []
    why = None
    params: list[bytes] = []
    size = 4
    if codec not in _ENCODERS:
        why = f"{codec} is not re-encoded (H.264 and H.265 only)"
    else:
        try:
            size, params = parameter_sets(codec, seg.template.extradata)
        except ValueError as e:
            why = f"its parameter sets cannot be read ({e})"
    if why is None and k2 < len(pk) and codec == "h264" and not _is_idr(codec, pk[k2].data, size):
        why = "the next keyframe is not an IDR picture (open GOP): the original parameter sets cannot resume there"
    if why is None and not _has_encoder(codec):
        why = f"this FFmpeg has no {_ENCODERS[codec]} encoder"
    if why is not None:
        notes.append(f"--precise: starts at the keyframe {seg.shown(pk[lo].pts) - start:+.3f} s from the "
                     f"requested start: {why}")
        return seg, lo, hi, 0, end_rel, None
    shown_end = pk[k2].pts if k2 < len(pk) else None
    decode_to = (lead[-1] if lead else k2) + 1 if k2 < len(pk) else len(pk)
    keep = sorted(p.pts for i, p in enumerate(pk[lo:decode_to], lo)
                  if start - half <= seg.shown(p.pts) < end and (shown_end is None or p.pts < shown_end))
    delay = max(p.pts - p.dts for p in pk[lo:decode_to])
    try:
        encoded = _reencode(seg, lo, decode_to, keep, size, delay)
        if not encoded:
            return seg, lo, hi, 0, end_rel, None
        gone = set(lead)
        # the copy: from k2, without its leading pictures, to the last frame shown before the end (and the
        # references decoded before it); nothing when every frame before the end was re-encoded
        last = max((i for i in range(k2, hi) if i not in gone and seg.shown(pk[i].pts) < end - 1e-6), default=-1)
        rest = [pk[i] for i in range(k2, last + 1) if i not in gone]
        shown_end = None
        if rest:
            end_rel = pk[last + 1].dts if last + 1 < len(pk) else seg.end_rel
        else:
            shown_end = encoded[-1].pts + step
            # re-encoded to the segment's end: a next segment goes on where this one ended
            end_rel = seg.end_rel if k2 == len(pk) and hi == len(pk) else encoded[-1].dts + step
        if rest and encoded[-1].dts >= rest[0].dts:
            raise ValueError("the re-encoded frames would not come before the next keyframe in decode order")
        if not rest and hi == len(pk) and encoded[-1].dts >= seg.end_rel:
            raise ValueError("the re-encoded frames would run past the segment's end in decode order")
    except (av.error.FFmpegError, ValueError, OSError) as e:
        notes.append(f"--precise: re-encoding failed ({e}); starts at the keyframe "
                     f"{seg.shown(pk[lo].pts) - start:+.3f} s from the requested start")
        return seg, lo, hi, 0, end_rel, None
    out.inband, out.nal_size = params, size  # the first copied keyframe brings the original parameter sets back
    piece = dataclasses.replace(seg, packets=encoded + rest)
    notes.append(f"--precise: the first {len(encoded)} frames ({float(len(encoded) * step * seg.tb):.2f} s, up to "
                 f"the next keyframe) are re-encoded ({_ENCODERS[codec]}, no B-frames) so the file starts at the "
                 "requested time; the rest is a copy")
    return piece, 0, len(piece.packets), len(encoded), end_rel, shown_end


_ENCODERS = {"h264": "libx264", "hevc": "libx265"}
_HEVC_PROFILES = {1: "main", 2: "main10"}


def _has_encoder(codec: str) -> bool:
    try:
        av.codec.Codec(_ENCODERS[codec], "w")
        return True
    except (av.error.FFmpegError, ValueError, KeyError):
        return False


def _reencode(seg: _Segment, lo: int, decode_to: int, keep_pts: list[int], size: int, delay: int) -> list[_Packet]:
    """Decode packets [lo, decode_to) from memory; encode the frames shown at ``keep_pts`` (first one a keyframe).

    Same codec, size and profile as the recording; no B-frames; parameter sets in band (they differ
    from the track's).  Returned packets: length-prefixed NAL units, segment-relative pts, dts = pts - delay.
    """
    t = seg.template
    dec = cast(VideoCodecContext, av.CodecContext.create(t.codec, "r"))
    dec.extradata = t.extradata
    frames: list[av.VideoFrame] = []
    for sp in seg.packets[lo:decode_to]:
        pkt = av.Packet(sp.data)
        pkt.pts, pkt.dts = sp.pts, sp.dts
        pkt.time_base = seg.tb
        frames += dec.decode(pkt)
    frames += dec.decode(None)
    wanted = set(keep_pts)
    kept = sorted((f for f in frames if f.pts is not None and f.pts in wanted), key=lambda f: int(f.pts or 0))
    if len(kept) != len(wanted):
        raise ValueError(f"{len(kept)} of {len(wanted)} frames decoded")
    enc = cast(VideoCodecContext, av.CodecContext.create(_ENCODERS[t.codec], "w"))
    enc.width, enc.height = t.width, t.height
    fmt = kept[0].format.name if kept else "yuv420p"
    if fmt.endswith(("10le", "10be")):
        enc.pix_fmt = "yuv420p10le"
    elif fmt == "yuvj420p":
        enc.pix_fmt = "yuvj420p"  # full-range camera streams stay full range (the encoder signals it in its SPS)
    else:
        enc.pix_fmt = "yuv420p"
    enc.time_base = seg.tb
    if t.codec == "h264":
        profile = _PROFILES.get(t.extradata[1] if len(t.extradata) > 1 else 0, "high")
        enc.options = {"preset": "veryfast", "crf": PRECISE_CRF, "bf": "0", "g": "100000", "profile": profile,
                       "x264-params": "repeat-headers=1:scenecut=0"}
    else:
        profile = _HEVC_PROFILES.get(t.extradata[1] & 0x1F if len(t.extradata) > 1 else 1, "main")
        enc.options = {"preset": "veryfast", "crf": PRECISE_CRF, "profile": profile,
                       "x265-params": "bframes=0:keyint=100000:min-keyint=100000:scenecut=0:open-gop=0:"
                                      "repeat-headers=1:log-level=error"}
    encoded: list[av.Packet] = []
    for f in kept:
        f = f if f.format.name == enc.pix_fmt else f.reformat(format=enc.pix_fmt)
        f.pict_type = av.video.frame.PictureType.NONE
        encoded += enc.encode(f)
    encoded += enc.encode(None)
    out: list[_Packet] = []
    for p in encoded:
        if p.pts is None:
            raise ValueError("the encoder returned a packet without a timestamp")
        rel = int(p.pts)  # no B-frames: decode order = display order
        out.append(_Packet(annexb_to_length_prefixed(bytes(p), size), rel, rel - delay, bool(p.is_keyframe)))
    if len(out) != len(kept):
        raise ValueError(f"the encoder returned {len(out)} packets for {len(kept)} frames")
    if out and not out[0].key:
        raise ValueError("the encoder did not start with a keyframe")
    if [p.pts for p in out] != sorted(keep_pts):
        raise ValueError("the encoder changed the frames' order or times")
    return out


# ------------------------------------------------------------------------------------------ NAL units

_AUD = {"h264": 9, "hevc": 35}
_EOS = {"h264": b"\x0a", "hevc": b"\x48\x01"}  # end of sequence: the next picture starts a new coded sequence


def _nal_type(codec: str, nal: bytes) -> int:
    return (nal[0] & 0x1F) if codec == "h264" else (nal[0] >> 1) & 0x3F


def split_length_prefixed(data: bytes, size: int) -> list[bytes]:
    """The NAL units of one MP4 sample (each prefixed by its length in ``size`` bytes)."""
    out, i = [], 0
    while i + size <= len(data):
        n = int.from_bytes(data[i:i + size], "big")
        out.append(data[i + size:i + size + n])
        i += size + n
    return out


def _is_idr(codec: str, data: bytes, size: int) -> bool:
    types = {_nal_type(codec, n) for n in split_length_prefixed(data, size) if n}
    return 5 in types if codec == "h264" else bool(types & {19, 20})


def _resume(codec: str, data: bytes, params: list[bytes], size: int) -> bytes:
    """A copied keyframe with the track's own parameter sets in front (after its access unit delimiter).

    An H.265 keyframe that is not an IDR (a CRA, x265's default) also gets an end-of-sequence unit
    first, so decoders start a new coded sequence there (the new parameter sets take effect and
    its leading pictures, already left out, would be skipped anyway).
    """
    nals = split_length_prefixed(data, size)
    at = 1 if nals and nals[0] and _nal_type(codec, nals[0]) == _AUD[codec] else 0
    head = list(params)
    if codec == "hevc" and not _is_idr(codec, data, size):
        head = [_EOS[codec]] + head
    return b"".join(len(n).to_bytes(size, "big") + n for n in nals[:at] + head + nals[at:])


def parameter_sets(codec: str, extradata: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, parameter sets) from the track's ``avcC`` (H.264) or ``hvcC`` (H.265) record."""
    return avcc_parameter_sets(extradata) if codec == "h264" else hvcc_parameter_sets(extradata)


def hvcc_parameter_sets(extradata: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, [VPS..., SPS..., PPS..., SEI...]) from an MP4 ``hvcC`` record; ValueError when not one."""
    if len(extradata) < 23 or extradata[0] != 1:
        raise ValueError("no hvcC record")
    size = (extradata[21] & 3) + 1
    nals: list[bytes] = []
    i = 23
    for _ in range(extradata[22]):
        if i + 3 > len(extradata):
            raise ValueError("hvcC record cut short")
        count = int.from_bytes(extradata[i + 1:i + 3], "big")
        i += 3
        for _ in range(count):
            i = _take_nal(extradata, i, nals, "hvcC")
    if not nals:
        raise ValueError("hvcC record without parameter sets")
    return size, nals


def _take_nal(record: bytes, i: int, into: list[bytes], kind: str) -> int:
    """Append the parameter set at ``i`` of an avcC/hvcC record (16-bit length, then the NAL unit) to
    ``into``; the offset after it.  ValueError when the record ends inside it."""
    length = int.from_bytes(record[i:i + 2], "big")
    nal = record[i + 2:i + 2 + length]
    if len(nal) != length:
        raise ValueError(f"{kind} record cut short")
    into.append(nal)
    return i + 2 + length


_START_CODE = re.compile(b"\x00\x00\x00\x01|\x00\x00\x01")


def annexb_to_length_prefixed(data: bytes, size: int = 4) -> bytes:
    """H.264 Annex B (start codes) → the MP4 form (each NAL unit prefixed by its length in ``size`` bytes)."""
    nals = [n.rstrip(b"\x00") for n in _START_CODE.split(data)]
    return b"".join(len(n).to_bytes(size, "big") + n for n in nals if n)


def avcc_parameter_sets(extradata: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, [SPS..., PPS...]) from an MP4 ``avcC`` record; ValueError when it is not one."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise ValueError("no avcC record")
    size = (extradata[4] & 3) + 1
    nals: list[bytes] = []
    i = 5
    for count_mask in (0x1F, 0xFF):  # SPS count (5 bits), then PPS count (8 bits)
        if i >= len(extradata):
            raise ValueError("avcC record cut short")
        n = extradata[i] & count_mask
        i += 1
        for _ in range(n):
            i = _take_nal(extradata, i, nals, "avcC")
    if not nals:
        raise ValueError("avcC record without parameter sets")
    return size, nals
