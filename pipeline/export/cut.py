"""One camera's recorded segments over a time range, stream-copied into one MP4 (``+faststart``).

Why stream copy: decoding and encoding 1080p costs about 1/200 s a frame here, demuxing and
muxing a packet microseconds, so ten minutes of one camera are copied in about a second and the
pictures are bit for bit what the camera sent (what an evidence export must be).

The file starts at the keyframe at or before the requested start (a decoder cannot start
elsewhere) and ends with the last frame before the requested end.  Its timeline is continuous:
segments recorded back to back (the segment writer's normal case) follow each other frame after
frame, so the frame count and duration are exactly those of the range; where the recording has a
hole (a gap, a skipped corrupt segment) the file's clock jumps by the hole's length, so a time in
the file is always the time of the recording's first frame plus that offset.  A segment whose
codec parameters differ from the file's (the camera was reconfigured) starts a second file,
``<camera>-2.mp4``: one MP4 track holds one set of parameters.

``precise`` re-encodes only the first group of pictures, from the first frame at or after the
requested start to the next keyframe, so the file starts within one frame of it; everything after
stays a copy.  The re-encoded frames carry their own H.264 parameter sets in band and the first
copied keyframe after them gets the original ones back in band, so one track holds both (FFmpeg
and browsers switch parameter sets in band).  Only H.264 without B-frames is re-encoded; other
streams start at the keyframe and the result says so.

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

import av
import av.error

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

    def wall(self, rel: int) -> float:
        return self.info.start + rel * self.tb_s

    def window(self, start: float, end: float) -> tuple[int, int]:
        """Packet indexes [lo, hi) for [start, end): from the keyframe at or before ``start``, up to ``end``."""
        lo = 0
        for i, p in enumerate(self.packets):
            if self.wall(p.dts) > start + 1e-6:
                break
            if p.key:
                lo = i
        hi = len(self.packets)
        while hi > lo and self.wall(self.packets[hi - 1].dts) >= end - 1e-6:
            hi -= 1
        return lo, hi

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
    return seg


class _Output:
    """One MP4 being assembled from segment pieces on one continuous timeline (the file's time base)."""

    def __init__(self, path: Path, template: StreamTemplate):
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.template = template
        self.tb = template.time_base
        self.out: OutputFile | None = None
        self.end_dts = 0  # after the last frame, in tb
        self.first_wall = 0.0
        self.end_wall = 0.0
        self.frames = 0
        self.reencoded = 0
        self.inband: bytes = b""  # parameter sets to put in front of the next copied keyframe

    def append(self, seg: _Segment, lo: int, hi: int, end_rel: int, contiguous: bool, reencoded: int = 0) -> None:
        conv = seg.tb / self.tb
        same = conv == 1

        def rescale(v: int) -> int:
            return v if same else round(v * conv)

        pk = seg.packets
        first_rel = rescale(pk[lo].dts)
        if self.out is None:
            base = -first_rel
            self.first_wall = seg.wall(pk[lo].dts)
        elif contiguous:
            base = self.end_dts - first_rel
        else:  # a hole: the file's clock jumps by its length, never backwards
            at = round((seg.wall(pk[lo].dts) - self.first_wall) / float(self.tb))
            base = max(at, self.end_dts) - first_rel
        for i in range(lo, hi):
            p = pk[i]
            nxt = pk[i + 1].dts if i + 1 < hi else end_rel
            data = p.data
            if p.key and self.inband and i >= lo + reencoded:
                data, self.inband = self.inband + data, b""
            sp = StoredPacket(data, base + rescale(p.pts), base + rescale(p.dts), p.key, seg.wall(p.dts),
                              max(1, rescale(nxt) - rescale(p.dts)), self.template)
            if self.out is None:
                self.out = OutputFile(self.part, sp, "mp4")
            self.out.mux(sp)
            self.frames += 1
        self.end_dts = base + rescale(end_rel)
        self.end_wall = seg.wall(end_rel)
        self.reencoded += reencoded

    def finish(self) -> OutputInfo:
        assert self.out is not None
        self.out.close()
        self.part.replace(self.path)
        t = self.template
        return OutputInfo(self.path, self.first_wall, self.end_wall, self.frames, float(self.end_dts * self.tb),
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
    try:
        for info in segs:
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
                if precise and cur.out is None and not cut.files:
                    seg, lo, hi, reencoded = _precise_start(seg, lo, hi, start, end, cur, cut.notes)
                if lo < hi:
                    cur.append(seg, lo, hi, end_rel, contiguous, reencoded)
                    cut.used.append(info)
                    prev = info
            if progress:
                progress(info.bytes)
        if cur is not None and cur.out is not None:
            cut.files.append(cur.finish())
    except BaseException:
        if cur is not None:
            cur.discard()
        for f in cut.files:
            f.path.unlink(missing_ok=True)
        raise
    return cut


# ------------------------------------------------------------------------------------------ --precise


def _precise_start(seg: _Segment, lo: int, hi: int, start: float, end: float, out: _Output,
                   notes: list[str]) -> tuple[_Segment, int, int, int]:
    """Re-encode the first GOP from the first frame at or after ``start``; returns the new piece and its count.

    Nothing is re-encoded when the keyframe already is within half a frame of ``start``.
    """
    step = seg.step()
    if seg.wall(seg.packets[lo].dts) >= start - float(step * seg.tb) / 2:
        return seg, lo, hi, 0
    why = None
    if seg.template.codec != "h264":
        why = f"{seg.template.codec} is not re-encoded (H.264 only)"
    elif seg.b_frames:
        why = "the stream has B-frames"
    inband = b""
    if why is None:
        try:
            size, nals = avcc_parameter_sets(seg.template.extradata)
            inband = b"".join(len(n).to_bytes(size, "big") + n for n in nals)
        except ValueError as e:
            why = f"its parameter sets cannot be read ({e})"
    if why is not None:
        notes.append(f"--precise: starts at the keyframe {seg.wall(seg.packets[lo].dts) - start:+.3f} s from the "
                     f"requested start: {why}")
        return seg, lo, hi, 0
    k2 = next((i for i in range(lo + 1, len(seg.packets)) if seg.packets[i].key), len(seg.packets))
    half = float(step * seg.tb) / 2
    keep = [i for i in range(lo, min(k2, hi)) if start - half <= seg.wall(seg.packets[i].pts) < end]
    try:
        encoded = _reencode(seg, lo, k2, {seg.packets[i].pts for i in keep}, size)
    except (av.error.FFmpegError, ValueError, OSError) as e:
        notes.append(f"--precise: re-encoding failed ({e}); starts at the keyframe "
                     f"{seg.wall(seg.packets[lo].dts) - start:+.3f} s from the requested start")
        return seg, lo, hi, 0
    if not encoded:
        return seg, lo, hi, 0
    rest = seg.packets[k2:hi] if hi > k2 else []
    out.inband = inband  # the first copied keyframe brings the original parameter sets back
    piece = dataclasses.replace(seg, packets=encoded + rest)
    notes.append(f"--precise: the first {len(encoded)} frames ({float(len(encoded) * step * seg.tb):.2f} s, up to "
                 "the next keyframe) are re-encoded so the file starts at the requested time; the rest is a copy")
    return piece, 0, len(piece.packets), len(encoded)


def _reencode(seg: _Segment, lo: int, k2: int, keep_pts: set[int], size: int) -> list[_Packet]:
    """Decode packets [lo, k2) and encode the frames whose pts is in ``keep_pts`` as H.264 (first one IDR)."""
    with av.open(str(seg.info.path)) as c:
        s = c.streams.video[0]
        d0 = None
        frames = []
        dec = s.codec_context
        for i, p in enumerate(c.demux(s)):
            if p.size == 0:
                continue
            if d0 is None:
                d0 = int(p.dts or 0)
            if i >= k2:
                break
            if i >= lo:
                frames += dec.decode(p)
        frames += dec.decode(None)
    assert d0 is not None
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = seg.template.width, seg.template.height, "yuv420p"
    enc.time_base = seg.tb
    profile = _PROFILES.get(seg.template.extradata[1] if len(seg.template.extradata) > 1 else 0, "high")
    enc.options = {"preset": "veryfast", "crf": PRECISE_CRF, "bf": "0", "g": "100000", "profile": profile,
                   "x264-params": "repeat-headers=1:scenecut=0"}
    out: list[_Packet] = []
    kept = [f for f in frames if f.pts is not None and f.pts - d0 in keep_pts]
    encoded: list[av.Packet] = []
    for f in kept:
        f = f if f.format.name == "yuv420p" else f.reformat(format="yuv420p")
        f.pict_type = av.video.frame.PictureType.NONE
        encoded += enc.encode(f)
    encoded += enc.encode(None)
    for p in encoded:
        if p.pts is None:
            raise ValueError("the encoder returned a packet without a timestamp")
        rel = int(p.pts) - d0  # no B-frames: dts = pts
        out.append(_Packet(annexb_to_length_prefixed(bytes(p), size), rel, rel, bool(p.is_keyframe)))
    if out and not out[0].key:
        raise ValueError("the encoder did not start with a keyframe")
    return out


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
            length = int.from_bytes(extradata[i:i + 2], "big")
            nal = extradata[i + 2:i + 2 + length]
            if len(nal) != length:
                raise ValueError("avcC record cut short")
            nals.append(nal)
            i += 2 + length
    if not nals:
        raise ValueError("avcC record without parameter sets")
    return size, nals
