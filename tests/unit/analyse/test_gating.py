"""Motion gating and idle mode in the live worker: a still scene costs almost nothing, a person
walking in is still detected."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config, load_config
from pipeline.publish import bus
from pipeline.publish.status import stage_table
from pipeline.runtime.worker import Worker
from tests.support.config import write_config
from tests.support.media import make_clip
from tests.support.waits import wait_for


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 25 fps, keyframe every 2 s, nothing moves but sensor noise
    return make_clip(tmp_path_factory.mktemp("media") / "still.mp4", seconds=20, picture="still", gop=50)


def gating_config(folder: Path, source: Path, prefix: str, **cam: Any) -> Config:
    """One camera on ``source`` at 5 detections a second, its own bus prefix, alerts ending after 2 s."""
    path = write_config(folder, {"cam": {"source": source, "detect_fps": 5, **cam}},
                        bus={"prefix": prefix}, alerts={"end_after_s": 2})
    return load_config(path)


def run_until(cfg: Config, redis_url: str, done: Callable[[Worker], bool], timeout: float, what: str) -> Worker:
    """Run a worker until ``done`` says enough of the file has streamed, then stop it.

    Waiting on the source's own counters (not on a wall-clock sleep) measures the same stretch of
    video however slow the shared machine is.
    """
    w = Worker(cfg, redis_url)
    w.start()
    try:
        wait_for(lambda: done(w), timeout, what)
    finally:
        w.stop()
    return w


def test_still_scene_detects_only_at_the_periodic_rate(tmp_path: Path, still_clip: Path, redis_url: str) -> None:
    cfg = gating_config(tmp_path, still_clip, "gate1", motion={"periodic_s": 2})
    # 40 frames sampled at 5 fps: 8 s of the clip
    w = run_until(cfg, redis_url, lambda w: w.cameras["cam"].source.stats.sampled >= 40, 40, "40 sampled frames")
    rt = w.cameras["cam"]
    st = rt.source.stats
    assert st.sampled >= 40
    # the first frame, then one check every 2 s: about 5 in 8 s, never the 40 of ungated detection
    assert 3 <= rt.detected <= 7, (rt.detected, st.sampled, rt.analytics.gate.stats())
    assert rt.gated == st.sampled - rt.detected
    # per-stage timing: every stage the frames went through has time, the table divides it per frame
    stages = w.status_of(rt).stage_s
    assert all(stages[s] > 0 for s in ("decode", "gray", "gate", "convert", "detect", "track", "rules")), stages
    assert stages["detect"] / rt.detected > 0.001, "YOLOX-Nano takes more than 1 ms a frame on a CPU"
    table = stage_table({"cam": w.status_of(rt)})
    assert table.splitlines()[0].split()[:3] == ["camera", "decode", "gray"] and "cam" in table


def test_idle_mode_decodes_only_keyframes(tmp_path: Path, still_clip: Path, redis_url: str) -> None:
    cfg = gating_config(tmp_path, still_clip, "gate2", idle={"enabled": True, "after_s": 1},
                        motion={"periodic_s": 2})
    # 225 packets at 25 fps: 9 s of the clip
    w = run_until(cfg, redis_url, lambda w: w.cameras["cam"].source.stats.packets >= 225, 40, "225 packets read")
    st = w.cameras["cam"].source.stats
    # after ~1 s the camera goes idle: ~30 frames decoded, then one keyframe per 2 s (of ~225 packets)
    assert st.idle_skipped > 100, vars(st)
    assert st.decoded < 50 and st.idle_skipped > 0.75 * st.packets, vars(st)


def test_person_walking_into_an_idle_room_is_detected(tmp_path: Path, person_clip: Path, redis_url: str) -> None:
    # the person clip: an empty room, the first person walks in at about 7 s
    cfg = gating_config(tmp_path, person_clip, "gate3", idle={"enabled": True, "after_s": 1})
    w = Worker(cfg, redis_url)
    r = bus.connect(redis_url)
    r.delete("gate3:events")
    t0 = time.time()
    w.start()
    try:
        news: list[dict[str, Any]] = []

        def alerted() -> bool:
            news[:] = [m for _, m in bus.read_events(r, bus.BusKeys("gate3"), "0-0") if m.get("phase") == "new"]
            return bool(news)

        wait_for(alerted, 20, "an alert for the person walking in (at ~7 s)", interval=0.2)
        assert news[0]["labels"] == ["person"]
        # the room really was idle (keyframes only) before the person came
        assert w.cameras["cam"].source.stats.idle_skipped > 0
        delay = news[0]["frame_time"] - (t0 + 7.0)
        print(f"alert {delay:.2f} s after the person entered (idle mode on)")
    finally:
        w.stop()
