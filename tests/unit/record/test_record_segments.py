"""The segment writer (pipeline/record/segments.py): keyframe cuts, back-to-back files, gaps, crash recovery."""

from __future__ import annotations

import os
from pathlib import Path

import av
import pytest

from pipeline.record.catalog import Recordings
from pipeline.record.layout import iter_index, parse_segment_name, segment_path
from pipeline.record.packets import StoredPacket
from pipeline.record.segments import SegmentWriter
from tests.support.media import make_clip
from tests.support.record import FPS, GOP_S, T0, decode_check, feed_file


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip30.mp4", 30, picture="texture", tune=None)


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
