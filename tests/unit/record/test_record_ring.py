"""The pre-event ring (pipeline/record/ring.py) and a clip cut from it (pipeline/record/mux.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.record.mux import write_clip
from pipeline.record.ring import PacketRing
from tests.support.media import make_clip
from tests.support.record import GOP_S, decode_check, feed_file


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip30.mp4", 30, picture="texture", tune=None)


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
    assert not list(tmp_path.glob("*.part"))


def test_ring_byte_cap_wins_over_time(clip: Path) -> None:
    stored = feed_file(None, clip)
    cap = sum(len(sp.data) for sp in stored) // 5
    ring = PacketRing(60.0, max_bytes=cap)
    for sp in stored:
        ring.add(sp)
        assert ring.bytes <= cap
    assert ring.packets_since(0)[0].keyframe and ring.duration < 10
