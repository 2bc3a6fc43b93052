"""Continuous recording in the live worker, over a real RTSP server: segments that decode, no
gaps on a healthy stream, an explicit gap when the server goes away."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest

from pipeline.config import parse_config
from pipeline.record.catalog import Recordings
from pipeline.runtime.worker import Worker
from pipeline.tools.simulator import RtspSimulator, camsim_unavailable
from tests.support.media import make_clip

# little CPU, timings bounded by seconds: scripts/test runs it beside the timed e2e tests
pytestmark = pytest.mark.beside

GOP_S = 2.0


@pytest.fixture(scope="module")
def main_and_sub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("media")
    return (make_clip(d / "main.mp4", seconds=20, size=(640, 360), gop=50),
            make_clip(d / "sub.mp4", seconds=20, size=(320, 180), gop=50))


def worker(tmp_path: Path, redis_url: str, source: str, record_source: str | None, prefix: str) -> Worker:
    rec = f"\n    record_source: {record_source}" if record_source else ""
    cfg = parse_config(f"""
data_dir: {tmp_path / 'data'}
bus: {{prefix: {prefix}}}
recordings: {{segment_s: 10, pre_event_s: 10}}
grid_cells: {{G1: {{name: Cell, officer: {{name: Officer, phone: "110110"}}}}}}
cameras:
  cam:
    name: Cam
    source: {source}{rec}
    grid_cell: G1
    idle: {{enabled: false}}
    watchdog: {{stall_s: 3}}
""")
    return Worker(cfg, redis_url)


def decode_all(path: Path) -> tuple[int, float]:
    with av.open(str(path)) as c:
        frames = [f for f in c.decode(video=0)]
    return len(frames), float(frames[-1].time - frames[0].time)


def test_60s_of_healthy_stream_record_without_gaps(tmp_path: Path, redis_url: str,
                                                   main_and_sub: tuple[Path, Path]) -> None:
    if reason := camsim_unavailable():
        pytest.skip(reason)
    main, sub = main_and_sub
    with RtspSimulator({"cam/main": main, "cam/sub": sub}) as sim:
        w = worker(tmp_path, redis_url, sim.url("cam/sub"), sim.url("cam/main"), "rec1")
        t0 = time.time()
        w.start()
        time.sleep(62)
        rt = w.cameras["cam"]
        assert rt.ring is not None and 10 <= rt.ring.duration <= 10 + GOP_S + 0.5  # pre-event buffer
        w.stop()
        t1 = time.time()
    segs = Recordings(tmp_path / "data" / "recordings").segments("cam", t0, t1)
    assert len(segs) >= 5
    for a, b in zip(segs, segs[1:]):
        assert b.start - a.end <= GOP_S + 0.1, f"gap of {b.start - a.end:.2f} s between segments"
    covered = sum(s.duration for s in segs)
    assert covered >= 60 - GOP_S, covered
    for s in segs:
        n, span = decode_all(s.path)
        assert n > 0 and abs((span + 1 / 25) - s.duration) < 0.2, (s.path.name, n, span)
        with av.open(str(s.path)) as c:
            assert c.streams.video[0].codec_context.width == 640  # the main stream, not the decoded sub-stream
    assert rt.record_input is not None and rt.record_input.stats.reconnects == 0


def test_server_restart_records_an_explicit_gap(tmp_path: Path, redis_url: str,
                                                main_and_sub: tuple[Path, Path]) -> None:
    if reason := camsim_unavailable():
        pytest.skip(reason)
    main, _ = main_and_sub
    with RtspSimulator({"cam": main}) as sim:
        w = worker(tmp_path, redis_url, sim.url("cam"), None, "rec2")  # one URL for both roles
        t0 = time.time()
        w.start()
        try:
            time.sleep(12)
            sim.stop()
            time.sleep(4)
            sim.start()
            time.sleep(14)
        finally:
            w.stop()
        t1 = time.time()
    rec = Recordings(tmp_path / "data" / "recordings")
    gaps = [g for g in rec.gaps("cam", t0 + 5, t1 - 5) if g.end - g.start > 1]
    assert gaps, "the outage left no gap record"
    assert any(3 <= g.end - g.start <= 10 for g in gaps), gaps
    segs = rec.segments("cam", t0, t1)
    assert any(s.start > gaps[0].end - 0.5 for s in segs), "recording did not resume after the gap"
    for s in segs:
        assert decode_all(s.path)[0] > 0
