"""Per-rule handling policy: shelves (屏蔽) with a reason and an expiry, tamper incidents that cannot be closed while
the camera is still tampered and close by themselves when it clears, and auto-acknowledged low-severity rules.

A real Redis bus and the real archiver (consumer group) into SQLite; the dashboard's API through its app; the
escalation check and the automatic steps called as the dashboard's once-a-second loop calls them, at chosen times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from dashboard.app import create_app
from dashboard.escalation import escalate_due
from dashboard.services.policy import auto_steps
from history import shelves
from history.archiver import Archiver
from history.incidents import Grouping
from history.schema import actions, alerts
from pipeline.config import load_config
from pipeline.config.schema import IntrusionRule, TamperConfig
from pipeline.publish import bus
from tests.support.config import write_config
from tests.support.dashboard import LoggedIn, alert_msg, open_with_users

CELLS = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}},
         "G2": {"name": "Station Square", "officer": {"name": "Li Na", "phone": "13800000002"}}}
CAMERAS: dict[str, dict[str, Any]] = {
    "lobby": {"name": "Lobby camera", "source": "rtsp://127.0.0.1:9/lobby", "grid_cell": "G1",
              "rules": {"zone": {"kind": "presence", "severity": "high"},
                        "other": {"kind": "presence", "severity": "high", "labels": ["car"]}}},
    "gate": {"name": "School gate", "source": "rtsp://127.0.0.1:9/gate", "grid_cell": "G1",
             "rules": {"zone": {"kind": "presence", "severity": "high"},
                       "litter": {"kind": "presence", "severity": "low", "labels": ["bottle"],
                                  "handling": {"auto_acknowledge": True}},
                       "bags": {"kind": "presence", "severity": "low", "labels": ["backpack"]}},
             "tamper": {"handling": {"close_on_clear": False}}},
    "square": {"name": "Station square", "source": "rtsp://127.0.0.1:9/square", "grid_cell": "G2"},
}
USERS = ("wang operator G1 Wang Wei", "li operator G2 Li Na", "chen engineer G1 Chen Jing", "boss admin * The Boss")


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"shelf{time.monotonic_ns()}"
    slow = {"low": 600, "medium": 600, "critical": 600}
    cfg = load_config(write_config(tmp_path, CAMERAS, grid_cells=CELLS, data_dir="data", timezone="Asia/Shanghai",
                                   bus={"prefix": prefix}, alerts={"incident_window_s": 0},
                                   dashboard={"escalation": {"acknowledge_s": {**slow, "high": 10}}}))
    engine = open_with_users(cfg, *USERS)
    app = create_app(cfg, redis_url, engine)  # no lifespan: the loop's steps are called by the tests
    r = bus.connect(redis_url)
    keys = bus.BusKeys(prefix)
    arch = Archiver(engine, r, keys, consumer="test", grouping=Grouping(cfg))
    arch.ensure_group()

    def publish(*msgs: dict[str, Any]) -> None:
        for m in msgs:
            bus.publish_event(r, keys, m, 10_000)
        arch.step(block_ms=50)
        while arch.step(block_ms=50):
            pass
    yield {"cfg": cfg, "engine": engine, "app": app, "publish": publish}
    engine.dispose()


def msg(alert_id: str, camera: str, rule: str = "zone", phase: str = "new", t: float | None = None,
        start: float | None = None, kind: str = "presence", severity: str = "high") -> dict[str, Any]:
    m = alert_msg(alert_id, phase, t=t, camera=camera, severity=severity, kind=kind, start=start)
    m["rule"] = {"id": rule, "kind": kind, "severity": severity}
    m["id"] = f"{alert_id}-{phase}-{m['time']}"
    return m


def row(env: dict[str, Any], alert_id: str) -> Any:
    with env["engine"].connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()


def audit(env: dict[str, Any], action: str) -> list[Any]:
    with env["engine"].connect() as conn:
        return conn.execute(select(actions).where(actions.c.action == action).order_by(actions.c.id)).all()


def test_shelve_list_lift_with_scope_bounds_and_audit(env: dict[str, Any]) -> None:
    wang, li, chen = (LoggedIn(env["app"], n) for n in ("wang", "li", "chen"))
    body = {"camera": "lobby", "reason": "building work in front of the lens", "minutes": 30}
    r = wang.c.post("/api/shelves", json=body, headers=wang.h)
    assert r.status_code == 200, r.text
    shelf = r.json()["shelf"]
    assert shelf["active"] and shelf["camera_name"] == "Lobby camera" and shelf["rule_id"] is None
    assert shelf["ends_at"] - shelf["created_at"] == pytest.approx(1800, abs=1)
    # everyone of the cell sees it; the other cell neither sees nor shelves it (as an unknown camera)
    assert [s["id"] for s in wang.c.get("/api/shelves").json()["shelves"]] == [shelf["id"]]
    assert [s["id"] for s in chen.c.get("/api/shelves").json()["shelves"]] == [shelf["id"]]
    assert li.c.get("/api/shelves").json()["shelves"] == []
    foreign = li.c.post("/api/shelves", json=body, headers=li.h)
    unknown = li.c.post("/api/shelves", json=dict(body, camera="nowhere"), headers=li.h)
    assert foreign.status_code == unknown.status_code == 404 and foreign.json() == unknown.json()
    # reason required, duration 5 min .. 7 days, a rule of the camera (or a tamper check)
    assert wang.c.post("/api/shelves", json=dict(body, reason="  "), headers=wang.h).json()["detail"]["code"] == \
        "reason_required"
    for minutes in (4, 7 * 1440 + 1):
        assert wang.c.post("/api/shelves", json=dict(body, minutes=minutes), headers=wang.h).status_code == 422
    r = wang.c.post("/api/shelves", json=dict(body, rule="nope"), headers=wang.h)
    assert r.status_code == 400 and r.json()["detail"]["code"] == "unknown_rule"
    r = wang.c.post("/api/shelves", json=dict(body, rule="tamper:covered", minutes=5), headers=wang.h)
    assert r.status_code == 200 and r.json()["shelf"]["rule_id"] == "tamper:covered"
    # lifting early is for supervisors of the cell
    assert wang.c.get("/api/shelves").json()["can_lift"] is False
    assert wang.c.post(f"/api/shelves/{shelf['id']}/lift", json={}, headers=wang.h).status_code == 403
    r = chen.c.post(f"/api/shelves/{shelf['id']}/lift", json={}, headers=chen.h)
    assert r.status_code == 200, r.text
    assert r.json()["shelf"]["active"] is False and r.json()["shelf"]["lifted_by"] == "chen"
    again = chen.c.post(f"/api/shelves/{shelf['id']}/lift", json={}, headers=chen.h)
    assert again.status_code == 409 and again.json()["detail"]["code"] == "shelf_ended"
    listed = {s["id"]: s for s in wang.c.get("/api/shelves").json()["shelves"]}
    assert listed[shelf["id"]]["active"] is False  # ended this shift: still listed (alerts it covered stay marked)
    # audited: who, when, the reason, the camera
    (made, made_rule), (lifted,) = audit(env, "shelve"), audit(env, "unshelve")
    assert made.username == "wang" and made.note == body["reason"] and made.grid_cell_id == "G1"
    assert json.loads(made.data)["camera"] == "lobby" and json.loads(made_rule.data)["rule"] == "tamper:covered"
    assert lifted.username == "chen" and json.loads(lifted.data)["shelf"] == shelf["id"]
    assert chen.c.get("/api/audit?action=shelve").status_code == 200


def test_shelved_alerts_are_stored_and_listed_but_never_escalate_and_the_shelf_expires_by_itself(
        env: dict[str, Any]) -> None:
    cfg, engine = env["cfg"], env["engine"]
    t0 = time.time()
    with engine.begin() as conn:  # shelved at t0 for 5 minutes (as the route does, at a chosen time)
        shelves.create(conn, camera_id="lobby", grid_cell_id="G1", rule_id=None, reason="flapping",
                       duration_s=300, user_id=None, username="wang", display_name="Wang Wei", now=t0)
        shelves.create(conn, camera_id="gate", grid_cell_id="G1", rule_id="other-rule", reason="one rule only",
                       duration_s=300, user_id=None, username="wang", display_name="Wang Wei", now=t0)
    env["publish"](msg("s1", "lobby", t=t0 + 1), msg("g1", "gate", t=t0 + 1))
    wang = LoggedIn(env["app"], "wang")
    listed = {a["alert_id"] for a in wang.c.get("/api/alerts").json()["alerts"]}
    assert {"s1", "g1"} <= listed  # stored and shown
    escalated = {a["alert_id"] for a, _ in escalate_due(engine, cfg, now=t0 + 30)}
    assert escalated == {"g1"}  # the gate's shelf is of another rule: its alert escalates; the lobby's does not
    assert row(env, "s1").escalation_level == 0
    # after the shelf ended (no job: by the clock) a new alert escalates; the one raised during it stays quiet
    env["publish"](msg("s2", "lobby", t=t0 + 310))
    escalated = {a["alert_id"] for a, _ in escalate_due(engine, cfg, now=t0 + 330)}
    assert escalated == {"s2", "g1"}  # g1: its level 2 (two periods)
    assert row(env, "s1").escalation_level == 0
    with engine.connect() as conn:
        cover = shelves.Cover.load(conn, t0 + 330)
    assert cover.of("lobby", "zone", t0 + 1) is not None and cover.of("lobby", "zone", t0 + 310) is None
    # an alert raised before a shelf is quiet while the shelf holds, and rings again after it
    with engine.begin() as conn:
        shelves.create(conn, camera_id="gate", grid_cell_id="G1", rule_id="zone", reason="now the right rule",
                       duration_s=300, user_id=None, username="wang", display_name="Wang Wei", now=t0 + 340)
    assert "g1" not in {a["alert_id"] for a, _ in escalate_due(engine, cfg, now=t0 + 400)}
    assert "g1" in {a["alert_id"] for a, _ in escalate_due(engine, cfg, now=t0 + 700)}


def test_a_tamper_incident_cannot_be_closed_while_it_lasts_and_closes_itself_when_it_clears(
        env: dict[str, Any]) -> None:
    cfg, engine = env["cfg"], env["engine"]
    wang = LoggedIn(env["app"], "wang")
    t0 = time.time()
    env["publish"](msg("t1", "lobby", "tamper:dark", t=t0, kind="tamper"),
                   msg("d1", "lobby", "zone", t=t0))
    assert wang.c.post("/api/alerts/t1/actions", json={"action": "acknowledge"}, headers=wang.h).status_code == 200
    r = wang.c.post("/api/alerts/t1/actions", json={"action": "close", "classification": "genuine",
                                                    "note": "looked fine"}, headers=wang.h)
    assert r.status_code == 409
    assert r.json()["detail"] == {"code": "condition_active", "condition": "tamper:dark", "camera": "lobby"}
    assert row(env, "t1").state == "acknowledged"
    # a detection rule keeps today's behaviour: closed while still going on
    r = wang.c.post("/api/alerts/d1/actions", json={"action": "close", "classification": "false_alarm",
                                                    "note": "a shadow"}, headers=wang.h)
    assert r.status_code == 200, r.text
    assert auto_steps(engine, cfg, now=t0 + 5) == []  # still dark: nothing to do
    env["publish"](msg("t1", "lobby", "tamper:dark", phase="end", t=t0 + 20, start=t0, kind="tamper"))
    done = auto_steps(engine, cfg, now=t0 + 21)
    assert [(a["alert_id"], a["state"], act["action"]) for a, act in done] == [("t1", "resolved", "close")]
    closed = row(env, "t1")
    assert (closed.classification, closed.closed_by, closed.closed_at) == ("genuine", "system", t0 + 21)
    (act,) = [a for a in audit(env, "close") if a.alert_id == "t1"]
    assert act.username is None and act.user_id is None  # the system
    assert json.loads(act.data)["auto"] == "condition_cleared"
    assert auto_steps(engine, cfg, now=t0 + 22) == []  # once
    # the gate's tamper policy says not to close on clear: it stays for the operator, who may close it now
    env["publish"](msg("t2", "gate", "tamper:covered", t=t0, kind="tamper"),
                   msg("t2", "gate", "tamper:covered", phase="end", t=t0 + 9, start=t0, kind="tamper"))
    assert auto_steps(engine, cfg, now=t0 + 30) == []
    assert row(env, "t2").state == "new"
    r = wang.c.post("/api/alerts/t2/actions", json={"action": "close", "classification": "genuine",
                                                    "note": "lens cleaned"}, headers=wang.h)
    assert r.status_code == 200, r.text


def test_low_severity_rules_configured_so_are_acknowledged_by_the_system(env: dict[str, Any]) -> None:
    cfg, engine = env["cfg"], env["engine"]
    t0 = time.time()
    env["publish"](msg("b1", "gate", "litter", t=t0, severity="low"), msg("b2", "gate", "bags", t=t0, severity="low"))
    done = auto_steps(engine, cfg, now=t0 + 1)
    assert [(a["alert_id"], a["state"]) for a, _ in done] == [("b1", "acknowledged")]
    assert row(env, "b1").acknowledged_by == "system" and row(env, "b1").owner_id is None
    assert row(env, "b2").state == "new"  # not configured: waits for an operator
    (act,) = audit(env, "acknowledge")
    assert act.alert_id == "b1" and act.username is None and json.loads(act.data)["auto"] == "auto_acknowledge"
    # nobody owns it: any operator of the cell may close it
    wang = LoggedIn(env["app"], "wang")
    r = wang.c.post("/api/alerts/b1/actions", json={"action": "close", "classification": "genuine",
                                                    "note": "bottle removed"}, headers=wang.h)
    assert r.status_code == 200, r.text


def test_the_policy_is_checked_when_the_config_is_read() -> None:
    rule = IntrusionRule(kind="intrusion", zone="floor")
    assert rule.handling.effective(condition=False) == (True, False, False)  # today's behaviour
    assert TamperConfig().handling.effective(condition=True) == (False, True, False)
    with pytest.raises(ValidationError, match="only for severity low"):
        IntrusionRule(kind="intrusion", zone="floor", severity="high", handling={"auto_acknowledge": True})
    with pytest.raises(ValidationError, match="only for severity low"):
        TamperConfig(handling={"auto_acknowledge": True})
    assert TamperConfig(severity="low", handling={"auto_acknowledge": True}).handling.auto_acknowledge
