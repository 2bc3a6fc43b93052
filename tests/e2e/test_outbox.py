"""The durable outbox: nothing raised while Redis is killed, frozen or restarting is lost or duplicated
(after de-duplication on the message id), and a worker killed with an alert open does not leave it open.

Real redis-server processes, real worker threads and processes, real video; figures are printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import load_config
from pipeline.publish import bus
from pipeline.publish.events import camera_message
from pipeline.publish.outbox import Outbox
from pipeline.runtime.redis_server import RedisServer
from tests.integration.test_replay import cut_clip
from tests.support.config import write_config
from tests.support.waits import wait_for

ROOT = Path(__file__).resolve().parents[2]
BUSY = [(40.0, 70.0), (70.0, 100.0)]  # parts of the person clip with people coming and going


def _config(tmp_path: Path, person_clip: Path, prefix: str) -> Path:
    cams = {}
    for i, (a, b) in enumerate(BUSY):
        clip = cut_clip(person_clip, tmp_path / f"busy{i}.mp4", a, b)
        cams[f"cam{i}"] = {"source": str(clip), "detect_fps": 5,
                           "rules": {"people": {"kind": "presence", "labels": ["person"], "severity": "high"}}}
    return write_config(tmp_path, cams, data_dir="data", bus={"prefix": prefix}, recordings={"enabled": False},
                        alerts={"end_after_s": 1.0, "update_interval_s": 1.0})


def _stream(r: Any, keys: bus.BusKeys) -> list[dict[str, Any]]:
    return [m for _, m in bus.decode_entries(r.xrange(keys.events))]


def _message(i: int, phase: str = "update", alert: str = "a1") -> dict[str, Any]:
    return {"schema": "sharpeye.event/1", "type": "alert", "id": f"m{i:05d}", "alert_id": alert, "phase": phase,
            "time": 1.0 + i, "camera": {"id": "c", "name": "C"}}


# --------------------------------------------------------------------------- the outbox alone


def test_delivers_in_order_and_keeps_the_open_alerts(tmp_path: Path, redis_url: str) -> None:
    keys = bus.BusKeys(f"ob-{uuid.uuid4().hex[:6]}")
    r = bus.connect(redis_url)
    ob = Outbox(tmp_path / "o.db", r, keys, maxlen=1000)
    ob.start()
    try:
        ob.send(_message(0, "new"))
        ob.send(_message(1, "update"))
        assert ob.flush(5)
        assert [m["id"] for m in _stream(r, keys)] == ["m00000", "m00001"]
        assert bus.open_alerts(r, keys)["a1"]["id"] == "m00001"
        ob.send(_message(2, "end"))
        assert ob.flush(5)
        assert bus.open_alerts(r, keys) == {}
        assert [m["phase"] for m in _stream(r, keys)] == ["new", "update", "end"]
    finally:
        ob.stop()


def test_a_full_outbox_drops_updates_before_alarms(tmp_path: Path) -> None:
    dead = bus.connect("redis://127.0.0.1:1/0")  # nothing listens: everything stays on disk
    ob = Outbox(tmp_path / "o.db", dead, bus.BusKeys("x"), maxlen=1000, max_messages=100)
    ob.send(_message(0, "new"))
    for i in range(1, 150):
        ob.send(_message(i, "update"))
    ob.send(camera_message(load_config(write_config(tmp_path, {"c": {"source": "x.mp4"}})), "c", "backoff",
                           "refused", online=False))
    ob.send(_message(151, "end"))
    assert ob.depth() == 100
    assert ob.stats.dropped == 52
    with ob._lock:
        kept = [json.loads(b) for (b,) in ob._db.execute("SELECT body FROM outbox ORDER BY seq")]
    phases = Counter(m.get("phase") for m in kept)
    assert phases["new"] == 1 and phases["end"] == 1 and phases["offline"] == 1, phases
    assert kept[1]["id"] == "m00053", "the oldest updates went first"
    ob.stop(drain_s=0)


def test_what_was_not_delivered_survives_a_restart_of_the_worker(tmp_path: Path, redis_url: str) -> None:
    dead = bus.connect("redis://127.0.0.1:1/0")
    keys = bus.BusKeys(f"ob-{uuid.uuid4().hex[:6]}")
    ob = Outbox(tmp_path / "o.db", dead, keys, maxlen=1000)
    for i in range(5):
        ob.send(_message(i, "new" if i == 0 else "update"))
    ob.stop(drain_s=0)
    with pytest.raises(RuntimeError, match="in use"):  # one process per outbox file
        busy = Outbox(tmp_path / "o2.db", dead, keys, maxlen=1000)
        Outbox(tmp_path / "o2.db", dead, keys, maxlen=1000)
    busy.stop(drain_s=0)
    r = bus.connect(redis_url)
    again = Outbox(tmp_path / "o.db", r, keys, maxlen=1000)
    assert again.stats.redelivered_after_restart == 5
    again.start()
    try:
        assert again.flush(5)
        assert [m["id"] for m in _stream(r, keys)] == [f"m{i:05d}" for i in range(5)]
    finally:
        again.stop()


# --------------------------------------------------------------------------- Redis faults under a worker


@pytest.mark.e2e
@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_no_alert_lost_when_redis_is_killed_or_frozen(fault: str, tmp_path: Path, person_clip: Path) -> None:
    from pipeline.runtime.worker import Worker

    prefix = f"fault-{fault}"
    cfg = load_config(_config(tmp_path, person_clip, prefix))
    keys = bus.BusKeys(prefix)
    srv = RedisServer(tmp_path / "redis", persist=True)
    url = srv.start()
    worker = Worker(cfg, url)
    worker.start()
    try:
        r = bus.connect(url)
        wait_for(lambda: any(m["type"] == "alert" for m in _stream(r, keys)), 40, "a first alert on the bus")
        decoded0 = sum(rt.source.stats.decoded for rt in worker.cameras.values())
        raised0 = sum(s.published for s in worker.publisher.stats.values())
        t_fault = time.time()
        assert srv.proc is not None
        if fault == "kill":
            srv.kill()
        else:
            os.kill(srv.proc.pid, signal.SIGSTOP)
        time.sleep(20)
        during = sum(s.published for s in worker.publisher.stats.values()) - raised0
        decoded = sum(rt.source.stats.decoded for rt in worker.cameras.values()) - decoded0
        if fault == "kill":
            srv.start()  # the same folder: AOF replayed
        else:
            os.kill(srv.proc.pid, signal.SIGCONT)
        recovery = wait_for(lambda: worker.outbox.depth() == 0 and worker.outbox.stats.connected, 30,
                            lambda: f"outbox drained (depth {worker.outbox.depth()}, {worker.outbox.stats})")
        time.sleep(2)
    finally:
        worker.stop()
    r = bus.connect(url)
    msgs = _stream(r, keys)
    raised = sum(s.published for s in worker.publisher.stats.values())
    ids = Counter(m["id"] for m in msgs)
    dups = sum(n - 1 for n in ids.values())
    in_outage = [m for m in msgs if t_fault <= m["time"] <= t_fault + 20]
    print(f"\nredis {fault} for 20 s: {raised} messages raised ({during} during the outage, "
          f"{sum(m['phase'] == 'new' for m in msgs if m['type'] == 'alert')} alerts), {len(ids)} distinct "
          f"received, {dups} duplicates before de-duplication, {len(ids) - raised} lost; "
          f"cameras decoded {decoded} frames during the outage; outbox drained {recovery:.1f} s after "
          f"Redis came back; resent after restart {worker.outbox.stats.resent_after_redis_restart}")
    assert during > 0, "the scene raised nothing during the outage: the test proves nothing"
    assert decoded >= 0.9 * 20 * 2 * 10, "both 10 fps cameras keep decoding while Redis is away"
    assert len(ids) == raised, f"{raised} raised, {len(ids)} received"
    assert len(in_outage) >= during * 0.9
    assert bus.open_alerts(r, keys) == {}, "every alert ended (the worker stopped cleanly)"
    srv.stop()


@pytest.mark.e2e
def test_a_worker_killed_with_an_alert_open_does_not_leave_it_open(tmp_path: Path, person_clip: Path,
                                                                   redis_url: str) -> None:
    prefix = f"crash-{uuid.uuid4().hex[:6]}"
    path = _config(tmp_path, person_clip, prefix)
    keys = bus.BusKeys(prefix)
    r = bus.connect(redis_url)
    argv = [sys.executable, "-m", "pipeline.runtime.worker", "--config", str(path), "--redis", redis_url,
            "--log-level", "WARNING"]
    first = subprocess.Popen(argv, cwd=ROOT)
    try:
        wait_for(lambda: bus.open_alerts(r, keys), 60, "an open alert")
        left_open = set(bus.open_alerts(r, keys))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = subprocess.Popen(argv, cwd=ROOT)
    try:
        took = wait_for(lambda: not (left_open & set(bus.open_alerts(r, keys))), 30,
                        lambda: f"alerts {left_open} ended; open now {list(bus.open_alerts(r, keys))}")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    ends = {m["alert_id"]: m for m in _stream(r, keys) if m["type"] == "alert" and m["phase"] == "end"}
    assert left_open <= set(ends)
    reasons = {ends[a].get("end_reason") for a in left_open}
    print(f"\nworker killed with {len(left_open)} alert(s) open: ended {took:.1f} s after the restart "
          f"({reasons})")
    assert reasons == {"worker restarted"}
