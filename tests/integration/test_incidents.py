"""Incidents: alerts of one camera and one zone or line within the window are one room item, every alert kept.

The messages go over a real Redis bus into the real archiver (consumer group) and a real SQLite or
PostgreSQL history database; the room's list is read through the dashboard's API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from dashboard.app import create_app
from dashboard.users import add_user
from history import open_database
from history.archiver import Archiver
from history.incidents import Grouping
from history.schema import alert_messages, alerts, incidents
from pipeline.analyse.alerts import AlertUpdate
from pipeline.config import Config, load_config
from pipeline.publish import bus
from pipeline.publish.events import alert_message
from tests.support.config import write_config
from tests.support.dashboard import (
    alert_msg,
    fresh_pg_database,
    postgres_url,  # noqa: F401  (fixture)
)

PW = "correct horse battery"
CELLS = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}}}
CAMERAS: dict[str, dict[str, Any]] = {
    "lobby": {
        "name": "Lobby camera", "source": "rtsp://127.0.0.1:9/lobby", "grid_cell": "G1",
        "zones": {"floor": {"polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]},
                  "desk": {"polygon": [[0, 0], [0.3, 0], [0.3, 0.3], [0, 0.3]]}},
        "lines": {"door": {"a": [0.5, 0], "b": [0.5, 1]}},
        "rules": {
            "intruder": {"kind": "intrusion", "zone": "floor", "severity": "high", "name": "大堂入侵"},
            "loiterer": {"kind": "loitering", "zone": "floor", "severity": "medium"},
            "crowd": {"kind": "crowding", "zone": "floor", "severity": "critical"},
            "desk": {"kind": "intrusion", "zone": "desk", "severity": "high", "incident_window_s": 10},
            "door": {"kind": "line_crossing", "line": "door", "severity": "medium"},
        },
    },
    "gate": {"name": "School gate", "source": "rtsp://127.0.0.1:9/gate", "grid_cell": "G1"},
}


def msg(alert_id: str, rule: str, kind: str, phase: str, t: float, start: float, camera: str = "lobby",
        severity: str = "high") -> dict[str, Any]:
    m = alert_msg(alert_id, phase, t=t, camera=camera, severity=severity, kind=kind, start=start)
    m["rule"] = {"id": rule, "kind": kind, "severity": severity}
    m["id"] = f"{alert_id}-{phase}-{t:.3f}"
    return m


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"inc{time.monotonic_ns()}"
    top: dict[str, Any] = {"data_dir": "data", "timezone": "Asia/Shanghai", "bus": {"prefix": prefix}}
    if request.param == "postgresql":
        top["dashboard"] = {"database_url": fresh_pg_database(request.getfixturevalue("postgres_url"),
                                                              f"inc{time.monotonic_ns() % 10**9}")}
    cfg = load_config(write_config(tmp_path, CAMERAS, grid_cells=CELLS, **top))
    engine = open_database(cfg)
    r = bus.connect(redis_url)
    keys = bus.BusKeys(prefix)
    arch = Archiver(engine, r, keys, consumer="test", grouping=Grouping(cfg))
    arch.ensure_group()
    published: list[dict[str, Any]] = []

    def publish(*msgs: dict[str, Any]) -> None:
        for m in msgs:
            bus.publish_event(r, keys, m, 10_000)
            published.append(m)

    def archive() -> None:
        arch.step(block_ms=50)  # its own pending entries first (none)
        while arch.step(block_ms=50):
            pass

    yield {"cfg": cfg, "engine": engine, "publish": publish, "archive": archive, "published": published,
           "redis_url": redis_url}
    engine.dispose()


def stored_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(alerts.c.id)).scalars())


def incident_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(incidents).order_by(incidents.c.first_seen)))


def test_alerts_of_one_zone_within_the_window_are_one_incident_with_every_alert_stored(
        env: dict[str, Any]) -> None:
    t0 = time.time() - 3000
    n = 12
    for i in range(n):  # a person comes and goes: each alert lasts 20 s, the next starts 60 s after its end
        s = t0 + i * 80
        env["publish"](msg(f"a{i}", "intruder", "intrusion", "new", s, s),
                       msg(f"a{i}", "intruder", "intrusion", "end", s + 20, s))
    env["archive"]()
    engine = env["engine"]
    assert stored_ids(engine) == {f"a{i}" for i in range(n)}  # nothing dropped
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(alert_messages)).scalar_one() == 2 * n
        members = conn.execute(select(alerts.c.id, alerts.c.incident_id)).all()
    (inc,) = incident_rows(engine)
    assert inc.id == "a0" and inc.occurrences == n and inc.group_key == "zone:floor"
    assert {m.incident_id for m in members} == {"a0"}
    assert inc.first_seen == pytest.approx(t0, abs=0.01)
    assert inc.last_end == pytest.approx(t0 + (n - 1) * 80 + 20, abs=0.01)


def test_a_gap_longer_than_the_window_opens_a_new_incident_and_other_zones_lines_cameras_are_apart(
        env: dict[str, Any]) -> None:
    t0 = time.time() - 3000
    env["publish"](msg("b1", "intruder", "intrusion", "new", t0, t0),
                   msg("b1", "intruder", "intrusion", "end", t0 + 10, t0),
                   msg("b2", "intruder", "intrusion", "new", t0 + 10 + 121, t0 + 10 + 121),  # 121 s after the end
                   msg("d1", "door", "line_crossing", "new", t0 + 140, t0 + 140, severity="medium"),
                   msg("k1", "desk", "intrusion", "new", t0 + 150, t0 + 150),
                   msg("k1", "desk", "intrusion", "end", t0 + 151, t0 + 150),
                   msg("k2", "desk", "intrusion", "new", t0 + 162, t0 + 162),  # the desk rule's window is 10 s
                   msg("g1", "zone", "intrusion", "new", t0 + 140, t0 + 140, camera="gate"))
    env["archive"]()
    groups = {r.id: (r.group_key, r.occurrences) for r in incident_rows(env["engine"])}
    assert groups == {"b1": ("zone:floor", 1), "b2": ("zone:floor", 1), "d1": ("line:door", 1),
                      "k1": ("zone:desk", 1), "k2": ("zone:desk", 1), "g1": ("rule:zone", 1)}


def test_rules_of_one_zone_on_one_person_are_one_incident_with_several_reasons(env: dict[str, Any]) -> None:
    t0 = time.time() - 1000
    env["publish"](msg("i1", "intruder", "intrusion", "new", t0, t0),
                   msg("l1", "loiterer", "loitering", "new", t0 + 10, t0 + 10, severity="medium"),
                   msg("c1", "crowd", "crowding", "new", t0 + 12, t0 + 12, severity="critical"),
                   msg("i1", "intruder", "intrusion", "end", t0 + 30, t0))
    env["archive"]()
    (inc,) = incident_rows(env["engine"])
    assert inc.occurrences == 3 and inc.severity == "critical"
    assert json.loads(inc.reasons) == [{"rule_id": "intruder", "kind": "intrusion"},
                                       {"rule_id": "loiterer", "kind": "loitering"},
                                       {"rule_id": "crowd", "kind": "crowding"}]


def test_the_room_lists_one_item_per_incident_and_handling_it_handles_every_occurrence(
        env: dict[str, Any], tmp_path: Path) -> None:
    cfg: Config = env["cfg"]
    engine = env["engine"]
    add_user(engine, "wang", PW, "operator", ["G1"], "Wang Wei")
    app = create_app(cfg, env["redis_url"], engine)
    c = TestClient(app)
    csrf = c.post("/api/login", json={"username": "wang", "password": PW}).json()["csrf"]
    t0 = time.time() - 600
    for i in range(5):
        s = t0 + i * 30
        env["publish"](msg(f"r{i}", "intruder" if i % 2 else "loiterer", "intrusion" if i % 2 else "loitering",
                           "new", s, s), msg(f"r{i}", "intruder" if i % 2 else "loiterer",
                                             "intrusion" if i % 2 else "loitering", "end", s + 5, s))
    env["publish"](msg("q1", "zone", "intrusion", "new", t0, t0, camera="gate"))
    # the archiver is behind: the dashboard stores what it serves, grouped the same way
    items = c.get("/api/alerts").json()["alerts"]
    env["archive"]()
    items = c.get("/api/alerts").json()["alerts"]
    by_cam = {a["camera_id"]: a for a in items}
    assert len(items) == 2 and set(by_cam) == {"lobby", "gate"}
    lobby = by_cam["lobby"]
    assert lobby["state"] == "new" and lobby["incident_id"] == "r0"
    occ = lobby["occurrences"]
    assert occ["count"] == 5 and occ["alert_ids"] == [f"r{i}" for i in range(5)]
    assert occ["first_seen"] == pytest.approx(t0, abs=0.01) and occ["last_seen"] == pytest.approx(t0 + 125, abs=0.01)
    assert {r["rule_id"] for r in occ["reasons"]} == {"intruder", "loiterer"}
    # acting on any occurrence acts on the incident; every occurrence shows its state
    r = c.post("/api/alerts/r3/actions", json={"action": "acknowledge"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json()["alert"]["alert_id"] == "r0" and r.json()["alert"]["state"] == "acknowledged"
    r = c.post("/api/alerts/r0/actions", json={"action": "close", "classification": "duplicate",
                                                "note": "the same cleaner, five times"},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    with engine.connect() as conn:
        states = dict(conn.execute(select(alerts.c.id, alerts.c.state).where(alerts.c.camera_id == "lobby")).all())
    assert states == {f"r{i}": "resolved" for i in range(5)}
    # a closed incident takes no more: the next alert opens a new room item
    s = time.time()
    env["publish"](msg("r9", "intruder", "intrusion", "new", s, s))
    env["archive"]()
    items = c.get("/api/alerts").json()["alerts"]
    lobby_items = sorted((a["incident_id"], a["state"]) for a in items if a["camera_id"] == "lobby")
    assert lobby_items == [("r0", "resolved"), ("r9", "new")]
    detail = c.get("/api/alerts/r2").json()  # every occurrence stays reachable
    assert detail["alert"]["incident_id"] == "r0" and detail["messages"]


def test_a_rules_configured_name_goes_on_the_bus_and_into_the_room(env: dict[str, Any]) -> None:
    cfg: Config = env["cfg"]
    t = time.time()
    values: dict[str, Any] = {"phase": "new", "alert_id": "n1", "camera_id": "lobby", "rule_id": "intruder",
                              "kind": "intrusion", "severity": "high", "labels": ["person"], "track_ids": [1],
                              "objects": [], "start_time": t, "end_time": None, "time": t, "best_score": 0.8,
                              "snapshot_due": False, "clip_start": t - 5, "clip_end": None}
    update = AlertUpdate(**{f.name: values[f.name] for f in fields(AlertUpdate) if f.name in values})
    named = alert_message(update, cfg, "lobby", None, t)
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas" / "event.schema.json").read_text())
    jsonschema.validate(named, schema)
    assert named["rule"]["name"] == "大堂入侵"
    plain = alert_message(AlertUpdate(**{**update.__dict__, "alert_id": "n2", "rule_id": "door",
                                         "kind": "line_crossing"}), cfg, "lobby", None, t)
    assert "name" not in plain["rule"]  # no name configured: the page names the kind
    env["publish"](named)
    env["archive"]()
    add_user(env["engine"], "wang", PW, "operator", ["G1"], "Wang Wei")
    c = TestClient(create_app(cfg, env["redis_url"], env["engine"]))
    c.post("/api/login", json={"username": "wang", "password": PW})
    (item,) = c.get("/api/alerts").json()["alerts"]
    assert item["rule"]["name"] == "大堂入侵" and item["rule"]["id"] == "intruder"
