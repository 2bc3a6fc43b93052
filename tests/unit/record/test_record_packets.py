"""Packet capture (pipeline/record/packets.py): live timestamps repaired onto one increasing timeline."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import pytest

from pipeline.record.packets import PacketCapture, StoredPacket
from tests.support.media import make_clip
from tests.support.record import FPS, T0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip30.mp4", 30, picture="texture", tune=None)


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
