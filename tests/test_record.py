"""Recording: stream-copied segments, gaps, the packet ring, retention and the RTSP record input.

Real files throughout: H.264 clips are encoded here with PyAV (320x240, 25 fps, a keyframe
every 2 s, no B-frames), recorded segments are decoded back, and the record input reads
from the RTSP simulator.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.ingest.record_input import RecordInput
from pipeline.ingest.source import Backoff, State
from pipeline.record import (
    INDEX_NAME,
    PacketCapture,
    PacketRing,
    Recordings,
    Retention,
    SegmentWriter,
    StoredPacket,
    iter_index,
    parse_segment_name,
    segment_path,
    write_clip,
)

T0 = 1_700_000_000.0  # simulated wall clock of the first packet
FPS, GOP_S = 25, 2.0


def make_clip(path: Path, seconds: float, width: int = 320, height: int = 240) -> Path:
    """Encode a moving test picture: keyframe every GOP_S, no B-frames."""
    out = av.open(str(path), "w")
    s = out.add_stream("libx264", rate=FPS)
    s.width, s.height, s.pix_fmt = width, height, "yuv420p"
    gop = int(FPS * GOP_S)
    s.codec_context.gop_size = gop
    s.codec_context.options = {"preset": "veryfast", "bf": "0", "g": str(gop), "keyint_min": str(gop),
                               "sc_threshold": "0"}
    base = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    for i in range(int(seconds * FPS)):
        frame = av.VideoFrame.from_ndarray(np.roll(base, 3 * i, axis=1), format="rgb24")
        frame.pts = i
        frame.pict_type = av.video.frame.PictureType.NONE  # else every frame becomes a keyframe
        out.mux(s.encode(frame))
    out.mux(s.encode())
    out.close()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip30.mp4", 30)


def feed_file(writer: SegmentWriter | None, path: Path, shift_at: float | None = None, shift_s: float = 0.0,
              ring: PacketRing | None = None) -> list[StoredPacket]:
    """Demux ``path`` into the writer/ring with a simulated wall clock (T0 + stream time)."""
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


def decode_check(path: Path) -> tuple[int, float, bool]:
    """(frames decoded, container duration in s, first packet is a keyframe at ts 0)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        first = next(p for p in c.demux(v) if p.size)
        starts_clean = first.is_keyframe and first.dts == 0
        c.seek(0)
        frames = sum(1 for _ in c.decode(v))
        return frames, float((v.duration or 0) * (v.time_base or 0)), starts_clean


# --------------------------------------------------------------------------- segments


@pytest.mark.parametrize("fmt", ["mp4", "fmp4"])
def test_segments_start_on_keyframes_decode_and_cover_the_clip(clip: Path, tmp_path: Path, fmt: str) -> None:
    writer = SegmentWriter("cam1", tmp_path, segment_s=10, fmt=fmt)  # type: ignore[arg-type]
    feed_file(writer, clip)
    writer.close()
    segs = Recordings(tmp_path).segments("cam1", T0 - 60, T0 + 60)
    assert [round(s.duration) for s in segs] == [10, 10, 10]
    total_frames = 0
    for seg in segs:
        frames, duration, starts_clean = decode_check(seg.path)
        assert starts_clean, f"{seg.path.name} must start on a keyframe rebased to 0"
        assert duration == pytest.approx(seg.duration, abs=0.05)
        assert frames == round(seg.duration * FPS)
        total_frames += frames
        start, dur = parse_segment_name(seg.path.name)  # type: ignore[misc]
        assert seg.path == segment_path(tmp_path, "cam1", start, dur)
        head = seg.path.read_bytes()[:64]
        assert (b"moov" in head) if fmt == "mp4" else (b"moof" in seg.path.read_bytes())  # faststart / fragmented
    assert total_frames == 30 * FPS
    assert abs(sum(s.duration for s in segs) - 30) <= GOP_S
    assert segs[0].start == T0 and segs[1].start == pytest.approx(segs[0].end)  # back to back
    index = [r for r in iter_index(tmp_path, "cam1", T0, T0 + 60) if r["type"] == "segment"]
    assert [(r["start"], r["end"], r["bytes"]) for r in index] == [
        (round(s.start, 3), round(s.end, 3), s.bytes) for s in segs]
    assert not list(tmp_path.rglob("*.part")), "no half-written file may remain"


def test_a_pause_in_packets_closes_the_segment_and_records_a_gap(clip: Path, tmp_path: Path) -> None:
    writer = SegmentWriter("cam1", tmp_path, segment_s=10)
    feed_file(writer, clip, shift_at=15.3, shift_s=20.0)  # nothing arrives for 20 s after 15.3 s
    writer.close()
    rec = Recordings(tmp_path)
    ranges = rec.recorded_ranges("cam1", T0, T0 + 100)
    assert len(ranges) == 2
    assert ranges[0] == (T0, pytest.approx(T0 + 15.32))
    assert ranges[1][0] == pytest.approx(T0 + 36.0)  # resumes on the next keyframe (stream time 16 s)
    (gap,) = rec.recorded_gaps("cam1", T0, T0 + 100)
    assert (gap.start, gap.end) == (pytest.approx(T0 + 15.32), pytest.approx(T0 + 36.0))
    assert "no packets for 20.0 s" in gap.reason
    assert writer.stats.gaps == 1 and writer.stats.segments == 4
    # the UI's view: explicit gap with its reason, plus unrecorded time at the window's edges
    holes = rec.gaps("cam1", T0 - 10, T0 + 60)
    assert [h.reason for h in holes] == ["not recorded", gap.reason, "not recorded"]
    for seg in rec.segments("cam1", T0, T0 + 100):
        assert decode_check(seg.path)[2]


def test_mark_gap_records_the_callers_reason(clip: Path, tmp_path: Path) -> None:
    writer = SegmentWriter("cam1", tmp_path, segment_s=10)
    stored = feed_file(None, clip)
    for sp in stored[:100]:
        writer.write(sp)
    writer.mark_gap("input lost: camera rebooted")
    assert writer.pending_gap == "input lost: camera rebooted"
    later = [StoredPacket(sp.data, sp.pts, sp.dts, sp.keyframe, sp.wall + 3.0, sp.duration, sp.template)
             for sp in stored[100:]]
    for sp in later:
        writer.write(sp)
    writer.close()
    (gap,) = Recordings(tmp_path).recorded_gaps("cam1", T0, T0 + 60)
    assert gap.reason == "input lost: camera rebooted"
    assert gap.start == pytest.approx(T0 + 4.0) and gap.end == pytest.approx(T0 + 7.0)


def test_feed_copies_the_packet_so_the_decoder_can_still_use_it(clip: Path, tmp_path: Path) -> None:
    writer = SegmentWriter("cam1", tmp_path, segment_s=2)
    decoded = 0
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        for i, p in enumerate(c.demux(s)):
            writer.feed(p, s, T0 + i / FPS)
            decoded += len(p.decode())  # the decode loop keeps using its packet
            if i == 124:
                break
    writer.close()
    assert decoded >= 120
    segs = Recordings(tmp_path).segments("cam1", T0, T0 + 60)
    assert sum(decode_check(seg.path)[0] for seg in segs) == 125


def test_capture_repairs_live_timestamps(clip: Path) -> None:
    """RTSP's first packet has no timestamp and later ones may repeat or jump: all repaired."""
    capture = PacketCapture()
    out: list[StoredPacket] = []
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        assert s.time_base == Fraction(1, 12800)  # one frame = 512 ticks
        for i, p in enumerate(c.demux(s)):
            raw = p.dts or 0
            if i in (0, 1):
                p.pts = p.dts = None  # like live RTSP's first packets
            elif i == 60:
                p.dts = p.pts = raw - 5 * 512  # a step backwards
            elif i >= 100:
                p.dts = p.pts = raw + 3600 * 12800  # the camera clock jumps an hour
            out.extend(capture.capture(p, s, T0 + i / FPS))
            if i == 150:
                break
    assert len(out) == 151 and out[0].keyframe and out[0].dts == 0  # back-filled, not lost
    dts = [sp.dts for sp in out]
    assert all(b > a for a, b in itertools.pairwise(dts))
    assert max(b - a for a, b in itertools.pairwise(dts)) <= 2 * 512  # the jump is re-anchored, not recorded
    assert all(sp.pts >= sp.dts for sp in out)


# --------------------------------------------------------------------------- ring


def test_ring_keeps_the_last_seconds_from_a_keyframe(clip: Path) -> None:
    ring = PacketRing(5.0)
    stored = feed_file(None, clip, ring=ring)
    first = ring.packets_since(0)[0]
    assert first.keyframe
    assert 5.0 <= ring.duration <= 5.0 + GOP_S  # whole GOPs: N s covered, at most one GOP more
    assert ring.bytes == sum(len(sp.data) for sp in ring.packets_since(0))
    newest = stored[-1].wall
    since = ring.packets_since(newest - 3.0)
    assert since[0].keyframe and since[0].wall <= newest - 3.0 < since[0].wall + GOP_S
    assert since[-1] is stored[-1]


def test_a_clip_cut_from_the_ring_decodes_from_its_first_frame(clip: Path, tmp_path: Path) -> None:
    ring = PacketRing(5.0)
    stored = feed_file(None, clip, ring=ring)
    packets = ring.packets_since(stored[-1].wall - 5.0)
    duration = write_clip(packets, tmp_path / "pre-roll.mp4")
    frames, file_duration, starts_clean = decode_check(tmp_path / "pre-roll.mp4")
    assert starts_clean and frames == len(packets)
    assert duration == pytest.approx(file_duration, abs=0.05) and 5.0 <= duration <= 5.0 + GOP_S


def test_ring_byte_cap_wins_over_time(clip: Path) -> None:
    stored = feed_file(None, clip)
    cap = sum(len(sp.data) for sp in stored) // 5
    ring = PacketRing(60.0, max_bytes=cap)
    for sp in stored:
        ring.add(sp)
        assert ring.bytes <= cap
    assert ring.packets_since(0)[0].keyframe and ring.duration < 10


# --------------------------------------------------------------------------- retention


def fake_segments(root: Path, camera: str, starts: list[float], size: int = 1000, dur: float = 10.0) -> list[Path]:
    """Real files in the real layout (retention never opens them, so the content is filler)."""
    paths = []
    for s in starts:
        p = segment_path(root, camera, s, dur)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\0" * size)
        paths.append(p)
    return paths


def test_retention_by_age_keeps_protected_segments(tmp_path: Path) -> None:
    now = T0 + 30 * 86400
    old = fake_segments(tmp_path, "cam1", [now - 10 * 86400 + i * 10 for i in range(5)])
    new = fake_segments(tmp_path, "cam1", [now - 86400 + i * 10 for i in range(5)])
    keep_start = now - 10 * 86400 + 20  # an exported incident covers the third old segment
    ret = Retention(tmp_path, retain_days=7, protected=lambda cam, s, e: s <= keep_start < e)
    result = ret.sweep(now)
    assert result.deleted_files == 4 and result.freed_bytes == 4000 and result.kept_protected == 1
    assert [p.exists() for p in old] == [False, False, True, False, False]
    assert all(p.exists() for p in new)
    deleted = [r for r in iter_index(tmp_path, "cam1", now - 11 * 86400, now) if r["type"] == "deleted"]
    assert sorted(r["start"] for r in deleted) == sorted(round(now - 10 * 86400 + i * 10, 3) for i in (0, 1, 3, 4))


def test_retention_quota_deletes_oldest_first_never_protected(tmp_path: Path) -> None:
    now = T0 + 86400
    a = fake_segments(tmp_path, "a", [now - 3600 + i * 10 for i in range(10)])  # older camera
    b = fake_segments(tmp_path, "b", [now - 1800 + i * 10 for i in range(10)])
    protected_start = now - 3600  # the very oldest is protected
    ret = Retention(tmp_path, retain_days=7, quota_bytes=12_000,
                    protected=lambda cam, s, e: cam == "a" and s == protected_start)
    result = ret.sweep(now)
    assert result.deleted_files == 8
    assert [p.exists() for p in a] == [True] + [False] * 8 + [True]
    assert all(p.exists() for p in b)
    # per-camera quota: each camera on its own, oldest first
    result = Retention(tmp_path, retain_days=7, camera_quota_bytes=4000).sweep(now)
    assert [p.exists() for p in b] == [False] * 6 + [True] * 4
    assert result.deleted_files == 6 + 0  # camera a holds 2000 bytes, under its quota


def test_retention_removes_empty_folders_and_is_fast(tmp_path: Path) -> None:
    now = T0 + 30 * 86400
    starts = [now - 20 * 86400 + i * 10 for i in range(3000)]  # 3000 segments over 8 hours
    fake_segments(tmp_path, "cam1", starts, size=10)
    t = time.perf_counter()
    result = Retention(tmp_path, retain_days=7).sweep(now)
    elapsed = time.perf_counter() - t
    assert result.deleted_files == 3000
    assert elapsed < 3.0, f"sweep of 3000 files took {elapsed:.2f} s"
    assert not any(tmp_path.iterdir()), "camera, day and hour folders (and the index) must go"


def test_retention_never_touches_the_segment_being_written(clip: Path, tmp_path: Path) -> None:
    writer = SegmentWriter("cam1", tmp_path, segment_s=10)
    stored = feed_file(None, clip)
    for sp in stored[:375]:  # 15 s: one finished segment, one open
        writer.write(sp)
    (part,) = tmp_path.rglob("*.part")
    result = Retention(tmp_path, retain_days=7, quota_bytes=1).sweep(T0 + 60)
    assert result.deleted_files == 1 and part.exists()
    writer.close()
    assert len(Recordings(tmp_path).segments("cam1", T0, T0 + 60)) == 1


def test_a_fragmented_part_left_by_a_crash_is_recovered(clip: Path, tmp_path: Path) -> None:
    writer = SegmentWriter("cam1", tmp_path, segment_s=10, fmt="fmp4")
    feed_file(writer, clip)
    writer.close()
    seg = Recordings(tmp_path).segments("cam1", T0, T0 + 60)[0]
    os.replace(seg.path, seg.path.with_name(f"{seg.start:.3f}.mp4.part"))
    broken = seg.path.with_name(f"{seg.start + 1:.3f}.mp4.part")
    broken.write_bytes(b"not a video")
    SegmentWriter("cam1", tmp_path)  # a restarted writer cleans up first
    assert seg.path.exists() and not broken.exists()
    assert any(r.get("recovered") for r in iter_index(tmp_path, "cam1", T0, T0 + 60))


# --------------------------------------------------------------------------- RTSP record input


def test_record_input_over_rtsp_records_reconnects_and_shows_the_gap(clip: Path, tmp_path: Path) -> None:
    from pipeline.tools.simulator import RtspSimulator, camsim_unavailable

    if reason := camsim_unavailable():
        pytest.skip(reason)
    states: list[State] = []
    writer = SegmentWriter("lobby", tmp_path, segment_s=2)
    ring = PacketRing(4.0)
    with RtspSimulator({"lobby": clip}) as sim:
        rec = RecordInput("lobby", sim.url("lobby"), None, writer, ring,
                          on_state=lambda cam, st, detail: states.append(st), backoff=Backoff(0.3, 1.0))
        t_start = time.time()
        rec.start()
        _wait(lambda: rec.stats.packets >= 6 * FPS, 15)
        sim.stop()
        _wait(lambda: rec.state == State.BACKOFF, 5)
        sim.start()
        n = rec.stats.packets
        _wait(lambda: rec.stats.packets >= n + 3 * FPS, 15)
        rec.stop()
    assert not rec.running
    assert rec.stats.reconnects >= 1 and rec.stats.connects == 2 and rec.stats.bytes > 0
    assert State.STREAMING in states and State.BACKOFF in states and states[-1] == State.STOPPED
    recs = Recordings(tmp_path)
    segs = recs.segments("lobby", t_start - 5, time.time() + 5)
    assert len(segs) >= 4
    for seg in segs:
        frames, duration, starts_clean = decode_check(seg.path)
        assert starts_clean and frames == round(duration * FPS)
    (gap,) = recs.recorded_gaps("lobby", t_start - 5, time.time() + 5)
    assert gap.reason.startswith("input lost")
    assert any(s.start >= gap.end - 0.01 for s in segs), "recording resumes after the gap"
    assert sum(s.duration for s in segs) >= 8.0
    assert ring.packets_since(0)[0].keyframe
    with open(next(tmp_path.rglob(INDEX_NAME))) as f:
        assert all(json.loads(line)["type"] in ("segment", "gap") for line in f)


def _wait(cond, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)
