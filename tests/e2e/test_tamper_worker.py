"""A covered camera on the real worker: a file source made from the shared person clip with a grey
card over the lens in the middle (12-24 s), the real Worker (decoder, motion gate,
detector, tamper checks on the source thread, the publisher on the detect thread) and a real
Redis: one tamper alert, ``new`` while covered and ``end`` after, valid against the event schema.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from pipeline.config import load_config
from tests.support.buswatch import BusWatch
from tests.support.config import write_config
from tests.support.media import reencode

# little CPU, timings bounded by seconds: scripts/test runs it beside the timed e2e tests
pytestmark = pytest.mark.beside

ROOT = Path(__file__).resolve().parents[2]
FPS = 10
COVERED = (12.0, 24.0)  # seconds of the file with the lens covered
LENGTH = 36.0


@pytest.fixture(scope="module")
def covered_clip(tmp_path_factory: pytest.TempPathFactory, person_clip: Path) -> Path:
    """36 s of the person clip at 640x360, 10 fps, with a flat grey card over the lens from 12 to 24 s."""
    path = tmp_path_factory.mktemp("tamper") / "covered.mp4"

    def card(img: np.ndarray, t: float) -> np.ndarray:
        return np.full_like(img, 120) if COVERED[0] <= t < COVERED[1] else img
    return reencode(person_clip, path, LENGTH, FPS, (640, 360), card, tune="zerolatency")


def test_covered_camera_raises_a_tamper_alert_and_ends_it_on_the_bus(
        tmp_path: Path, covered_clip: Path, redis_url: str) -> None:
    from pipeline.runtime.worker import Worker

    prefix = f"tamper-{uuid.uuid4().hex[:8]}"  # the session's Redis is shared with other tests
    tamper = {"warmup_s": 4, "interval_s": 0.2, "clear_s": 2, "covered": {"for_s": 4}}
    path = write_config(tmp_path, {"lobby": {"source": covered_clip, "detect_fps": 5, "tamper": tamper}},
                        data_dir="data", bus={"prefix": prefix}, recordings={"enabled": False})
    cfg = load_config(path)
    schema = json.loads((ROOT / "docs/schemas/event.schema.json").read_text())
    watch = BusWatch(redis_url, prefix)
    worker = Worker(cfg, redis_url)
    worker.start()
    try:
        watch.until(lambda ev: any(m["phase"] == "end" for m in watch.alerts("tamper")), LENGTH + 20)
        msgs = watch.alerts("tamper")
        rt = worker.cameras["lobby"]
        sampled, tamper_s = rt.source.stats.sampled, rt.stage_s["tamper"]
        checks = rt.tamper.checks if rt.tamper else 0
    finally:
        worker.stop()

    timeline = [(m["phase"], m["tamper"]["kind"], round(m["time"] - m["start_time"], 1)) for m in msgs]
    assert [(m["phase"], m["tamper"]["kind"]) for m in msgs] == [("new", "covered"), ("end", "covered")], timeline
    new, end = msgs
    for m in msgs:
        jsonschema.validate(m, schema)
    assert new["alert_id"] == end["alert_id"]
    assert new["rule"] == {"id": "tamper:covered", "kind": "tamper", "severity": "high"}
    assert 4.0 <= new["time"] - new["start_time"] <= 6.0, timeline  # covered.for_s 4, checked every 0.2 s
    covered_for = end["end_time"] - new["start_time"]
    assert COVERED[1] - COVERED[0] - 1.5 <= covered_for <= COVERED[1] - COVERED[0] + 1.0, timeline
    assert new["clip"]["start"] < new["start_time"] and end["clip"]["end"] > end["end_time"]
    snap = new["snapshot"]
    assert snap is not None, new.get("snapshot_error")
    img = cv2.imread(str(tmp_path / "data" / snap["path"]), cv2.IMREAD_GRAYSCALE)
    assert img is not None and float(img.std()) < 3.0, "the snapshot shows the covered lens"
    per_check_ms = 1000 * tamper_s / max(1, sampled)
    print(f"tamper alert {new['alert_id']}: new {new['time'] - new['start_time']:.1f} s after the lens was covered, "
          f"covered for {covered_for:.1f} s (file: {COVERED[1] - COVERED[0]:.0f} s); "
          f"{checks} checks over {sampled} sampled frames, {per_check_ms:.3f} ms per sampled frame in the worker")
    # the cost goal (under 1 ms per sampled frame on an idle core) is a benchmark's (docs/benchmarks.md); under
    # a loaded CI machine the same code measured 1.1-4.2 ms, so the test only catches an order-of-magnitude slip
    assert per_check_ms < 10.0
