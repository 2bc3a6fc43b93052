"""The bus on a real redis-server: capped stream, round trip, camera staleness, message schema."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from pipeline.analyse.alerts import AlertTracker
from pipeline.analyse.rules import RuleHit, TrackedObject
from pipeline.config import parse_config
from pipeline.publish import bus
from pipeline.publish.events import alert_message, camera_message
from pipeline.publish.status import CameraStatus
from tests.support.config import config_text

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "event.schema.json").read_text())
CFG = parse_config(config_text({"cam1": {"name": "Gate", "source": "rtsp://127.0.0.1/x"}}))


@pytest.fixture()
def r(redis_url: str):  # type: ignore[no-untyped-def]
    client = bus.connect(redis_url)
    client.flushdb()
    yield client
    client.close()


def lifecycle_messages() -> list[dict]:
    tracker = AlertTracker("cam1", CFG.alerts)
    person = TrackedObject(3, "person", 0.8, (10.0, 20.0, 50.0, 120.0))
    hit = RuleHit("presence", "presence", "medium", [person])
    t0 = 1_795_000_000.0
    updates = tracker.update([hit], t0, t0) + tracker.update([], t0 + 10, t0 + 10)
    snap = {"path": "snapshots/cam1/2026-11-29/x.jpg", "width": 768, "height": 432, "score": 0.8}
    return [alert_message(u, CFG, "cam1", snap if u.phase == "new" else None, t0) for u in updates]


def test_alert_and_camera_messages_match_the_schema() -> None:
    msgs = lifecycle_messages()
    assert [m["phase"] for m in msgs] == ["new", "end"]
    assert msgs[0]["alert_id"] == msgs[1]["alert_id"]
    assert msgs[0]["grid_cell"]["officer"] == {"name": "Wang Wei", "phone": "13800000000"}
    assert msgs[1]["end_time"] is not None and msgs[1]["clip"]["end"] == pytest.approx(msgs[1]["end_time"] + 5)
    assert msgs[0]["clip"]["start"] == pytest.approx(msgs[0]["start_time"] - 5)
    for m in msgs + [camera_message(CFG, "cam1", "backoff", "connection refused", online=False)]:
        jsonschema.validate(m, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(msgs[0], phase="maybe"), SCHEMA)


def test_round_trip_in_order(r) -> None:  # type: ignore[no-untyped-def]
    keys = bus.BusKeys("t1")
    msgs = lifecycle_messages()
    ids = [bus.publish_event(r, keys, m, maxlen=1000) for m in msgs]
    got = bus.read_events(r, keys, "0-0")
    assert [sid for sid, _ in got] == ids
    assert [m["phase"] for _, m in got] == ["new", "end"]
    assert [m["phase"] for _, m in bus.latest_events(r, keys, 1)] == ["end"]
    entry = r.xrange(keys.events)[0][1]
    assert entry[b"type"] == b"alert" and entry[b"camera"] == b"cam1"


def test_stream_is_capped(r) -> None:  # type: ignore[no-untyped-def]
    keys = bus.BusKeys("t2")
    msg = lifecycle_messages()[0]
    for _ in range(3000):
        bus.publish_event(r, keys, msg, maxlen=200)
    # MAXLEN ~ trims whole macro-nodes: never far above the cap, never unbounded
    assert 200 <= r.xlen(keys.events) < 400


def test_blocking_read_wakes_on_new_message(r, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    import threading

    keys = bus.BusKeys("t3")
    msg = lifecycle_messages()[0]
    writer = bus.connect(redis_url)  # its own connection: the reader's is blocked in XREAD
    timer = threading.Timer(0.3, lambda: bus.publish_event(writer, keys, msg, maxlen=100))
    timer.start()
    t0 = time.monotonic()
    got = bus.read_events(r, keys, "$", block_ms=5000)
    timer.join(5)
    writer.close()
    assert got and got[0][1]["alert_id"] == msg["alert_id"]
    assert time.monotonic() - t0 < 4


def test_camera_status_goes_stale(r) -> None:  # type: ignore[no-untyped-def]
    keys = bus.BusKeys("t4")
    bus.set_camera_status(r, keys, CameraStatus("cam1", state="streaming", detected=7))
    now = time.time()
    fresh = bus.camera_statuses(r, keys, now)["cam1"]
    assert fresh.online is True and fresh.detected == 7
    stale = bus.camera_statuses(r, keys, now + bus.STALE_S + 1)["cam1"]
    assert stale.online is False and stale.state == "offline"


def test_camera_status_reads_fields_of_other_versions(r) -> None:  # type: ignore[no-untyped-def]
    """A newer worker's extra field is ignored and an older worker's missing one takes its default."""
    keys = bus.BusKeys("t5")
    r.hset(keys.cameras, "cam1", json.dumps({"state": "streaming", "updated": time.time(), "from_the_future": 1}))
    st = bus.camera_statuses(r, keys)["cam1"]
    assert st.state == "streaming" and st.online and st.detected == 0 and not hasattr(st, "from_the_future")


def test_events_cli_json(r, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    keys = bus.BusKeys("sharpeye")
    for m in lifecycle_messages():
        bus.publish_event(r, keys, m, maxlen=1000)
    out = subprocess.run([sys.executable, "-m", "cli.main", "events", "--redis", redis_url, "--json",
                          "--count", "5"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [m["phase"] for m in lines] == ["new", "end"]
    for m in lines:
        jsonschema.validate(m, SCHEMA)
