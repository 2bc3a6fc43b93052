"""Motion gating and idle mode in the live worker: a still scene costs almost nothing, a person
walking in is still detected."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from pipeline.config import parse_config
from pipeline.publish import bus
from pipeline.runtime.worker import Worker
from tests.media import make_clip


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 25 fps, keyframe every 2 s, nothing moves but sensor noise
    return make_clip(tmp_path_factory.mktemp("media") / "still.mp4", seconds=20, moving=False, gop=50)


def config(source: Path, prefix: str, **cam: str) -> str:
    extra = "".join(f"\n    {k}: {v}" for k, v in cam.items())
    data = Path(tempfile.mkdtemp(prefix="sharpeye-gating-"))
    return f"""
data_dir: {data}
bus: {{prefix: {prefix}}}
alerts: {{end_after_s: 2}}
grid_cells: {{G1: {{name: Cell, officer: {{name: Officer, phone: "110110"}}}}}}
cameras:
  cam:
    name: Cam
    source: {source}
    grid_cell: G1
    detect_fps: 5{extra}
"""


def run_for(cfg_text: str, redis_url: str, seconds: float) -> Worker:
    w = Worker(parse_config(cfg_text), redis_url)
    w.start()
    try:
        time.sleep(seconds)
    finally:
        w.stop()
    return w


def test_still_scene_detects_only_at_the_periodic_rate(still_clip: Path, redis_url: str) -> None:
    w = run_for(config(still_clip, "gate1", motion="{periodic_s: 2}"), redis_url, 8)
    rt = w.cameras["cam"]
    st = rt.source.stats
    assert st.sampled >= 30  # ~5 fps for ~8 s
    # the first frame, then one check every 2 s: about 5 in 8 s, never the 40 of ungated detection
    assert 3 <= rt.detected <= 7, (rt.detected, st.sampled, rt.analytics.gate.stats())
    assert rt.gated == st.sampled - rt.detected


def test_idle_mode_decodes_only_keyframes(still_clip: Path, redis_url: str) -> None:
    text = config(still_clip, "gate2", idle="{enabled: true, after_s: 1}", motion="{periodic_s: 2}")
    w = run_for(text, redis_url, 9)
    st = w.cameras["cam"].source.stats
    # after ~1 s the camera goes idle: ~30 frames decoded, then one keyframe per 2 s (of ~225 packets)
    assert st.idle_skipped > 100, vars(st)
    assert st.decoded < 50 and st.idle_skipped > 0.75 * st.packets, vars(st)


def test_person_walking_into_an_idle_room_is_detected(tmp_path: Path, person_clip: Path, redis_url: str) -> None:
    # the person clip: an empty room, the first person walks in at about 7 s
    text = config(person_clip, "gate3", idle="{enabled: true, after_s: 1}")
    w = Worker(parse_config(text), redis_url)
    r = bus.connect(redis_url)
    r.delete("gate3:events")
    t0 = time.time()
    w.start()
    try:
        deadline = time.monotonic() + 20
        news: list[dict] = []
        while time.monotonic() < deadline and not news:
            news = [m for _, m in bus.read_events(r, bus.BusKeys("gate3"), "0-0") if m.get("phase") == "new"]
            time.sleep(0.2)
        assert news, "no alert for the person walking in"
        assert news[0]["labels"] == ["person"]
        # the room really was idle (keyframes only) before the person came
        assert w.cameras["cam"].source.stats.idle_skipped > 0
        delay = news[0]["frame_time"] - (t0 + 7.0)
        print(f"alert {delay:.2f} s after the person entered (idle mode on)")
    finally:
        w.stop()
