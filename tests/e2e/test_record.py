"""The record input end to end (pipeline/ingest/record_input.py into pipeline/record/): over the RTSP
simulator it records segments that decode, reconnects when the server goes away, and shows that as a gap.

The other recording tests mirror the record modules: tests/test_record_{packets,ring,segments,catalog,retention}.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline.ingest.record_input import RecordInput
from pipeline.ingest.source import Backoff, State
from pipeline.record.catalog import Recordings
from pipeline.record.layout import INDEX_NAME
from pipeline.record.ring import PacketRing
from pipeline.record.segments import SegmentWriter
from tests.support.media import make_clip
from tests.support.record import FPS, decode_check


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip30.mp4", 30, picture="texture", tune=None)


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
