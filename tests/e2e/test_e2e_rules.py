"""End to end on real parts: an RTSP camera showing people walk in one by one → the real Worker
(motion gate, detector, tracker, intrusion rule, alert lifecycle) → alerts on a real Redis bus.

The camera serves 48-92 s of the person clip (44 s, cut without re-encoding).  The exhaustive
replay of that excerpt (``sharpeye replay --exhaustive``) finds exactly two people walking onto
the floor: the first enters at ~3 s and leaves at ~21.5 s, the second enters at ~26.5 s and leaves
at ~38.5 s.  With ``end_after_s: 3`` each alert ends ~3 s after its person leaves, so both
alerts are over by ~42 s, before the simulator loops the file (44 s) and the first person walks
in again (~47 s): the test stops reading as soon as it has two ends.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pipeline.config import load_config
from pipeline.tools.simulator import RtspSimulator
from tests.integration.test_replay import cut_clip, lobby_config
from tests.support.assets import require_camsim
from tests.support.buswatch import BusWatch

# little CPU, timings bounded by seconds: scripts/test runs it beside the timed e2e tests
pytestmark = [pytest.mark.e2e, pytest.mark.beside]

EXCERPT = (48.0, 92.0)
PEOPLE = 2
ROOT = Path(__file__).resolve().parents[2]


def test_one_alert_per_person_entering(tmp_path: Path, person_clip: Path, redis_url: str) -> None:
    require_camsim()
    from pipeline.runtime.worker import Worker

    clip = cut_clip(person_clip, tmp_path / "people.mp4", *EXCERPT)
    length = EXCERPT[1] - EXCERPT[0]
    prefix = f"e2e-rules-{uuid.uuid4().hex[:8]}"  # the session's Redis is shared with other tests
    schema = json.loads((ROOT / "docs/schemas/event.schema.json").read_text())
    with RtspSimulator({"lobby": clip}) as sim:
        path = lobby_config(tmp_path, sim.url("lobby"), end_after_s=3.0, name="streams.yaml", data_dir="data",
                            bus={"prefix": prefix}, recordings={"enabled": False})
        cfg = load_config(path)
        watch = BusWatch(redis_url, prefix)
        worker = Worker(cfg, redis_url)
        t0 = time.monotonic()
        worker.start()
        try:
            # stop before the looped file brings the first person back (~47 s after connecting)
            watch.until(lambda ev: sum(m["type"] == "alert" and m["phase"] == "end" for m in ev) >= PEOPLE,
                        length + 2.0)
            seen_s = time.monotonic() - t0
        finally:
            worker.stop()
        watch.drain()  # anything the stop flushed
        alerts = watch.alerts()

    timeline = [(m["phase"], m["alert_id"], round(m["time"] - alerts[0]["time"], 1)) for m in alerts]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for m in alerts:
        jsonschema.validate(m, schema)
        by_id.setdefault(m["alert_id"], []).append(m)
    assert len(by_id) == PEOPLE, timeline
    for msgs in by_id.values():
        phases = [m["phase"] for m in msgs]
        assert phases[0] == "new" and phases[-1] == "end" and set(phases[1:-1]) <= {"update"}, timeline
        assert msgs[-1]["frame_time"] is not None, "ended by the lifecycle, not by the worker's stop"
        assert msgs[0]["snapshot"] is not None and (tmp_path / "data" / msgs[0]["snapshot"]["path"]).is_file()
    episodes = list(by_id.values())
    first, second = episodes[0][0]["start_time"], episodes[1][0]["start_time"]
    end_first = episodes[0][-1]["end_time"]
    assert end_first < second  # one after another, not overlapping
    assert 20.0 <= second - first <= 27.0, timeline  # 3.1 s and 26.8 s into the excerpt
    updates = sum(m["phase"] == "update" for m in alerts)
    print(f"{PEOPLE} alerts, {updates} updates, both ended {seen_s:.1f} s after the worker started: "
          f"{timeline}")
