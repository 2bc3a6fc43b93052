"""Triage through the API: the room's list filtered and sorted by priority then age, and bulk acknowledge /
close with a classification, on SQLite with alerts arriving over a real Redis bus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.escalation import escalate_due
from dashboard.users import add_user
from history import open_database
from pipeline.config import load_config
from pipeline.publish import bus
from tests.support.dashboard import alert_msg, write_dashboard_config

PW = "correct horse battery"


class Client:
    def __init__(self, app: Any, name: str):
        self.c = TestClient(app)
        self.csrf = self.c.post("/api/login", json={"username": name, "password": PW}).json()["csrf"]

    def items(self, **params: str) -> list[dict[str, Any]]:
        r = self.c.get("/api/alerts", params=params)
        assert r.status_code == 200, r.text
        return r.json()["alerts"]  # type: ignore[no-any-return]

    def ids(self, **params: str) -> list[str]:
        return [a["alert_id"] for a in self.items(**params)]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.c.post(path, json=body, headers={"X-CSRF-Token": self.csrf})


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"tri{time.monotonic_ns()}"
    cfg = load_config(write_dashboard_config(tmp_path, f"bus: {{prefix: {prefix}}}"))
    engine = open_database(cfg)
    add_user(engine, "wang", PW, "operator", ["G1"], "Wang Wei")
    add_user(engine, "zhao", PW, "operator", ["G1"], "Zhao Lei")
    r = bus.connect(redis_url)
    keys = bus.BusKeys(prefix)
    t0 = time.time() - 3600
    for aid, cam, sev, age in (("old-low", "lobby", "low", 3000), ("new-crit", "gate", "critical", 30),
                               ("mid-high", "lobby", "high", 1500), ("late-med", "gate", "medium", 2000)):
        bus.publish_event(r, keys, alert_msg(aid, camera=cam, severity=sev, t=t0 + 3600 - age), 10_000)
    app = create_app(cfg, redis_url, engine)
    wang, zhao = Client(app, "wang"), Client(app, "zhao")
    for aid in ("old-low", "new-crit", "mid-high", "late-med"):
        wang.c.get(f"/api/alerts/{aid}")  # stored from the bus
    yield {"wang": wang, "zhao": zhao, "engine": engine, "cfg": cfg}
    engine.dispose()


def test_sort_by_priority_then_age_and_filters(env: dict[str, Any]) -> None:
    wang: Client = env["wang"]
    assert wang.ids() == ["new-crit", "mid-high", "late-med", "old-low"]  # by age: newest first
    # every one but the critical of 30 s is past its time to be acknowledged (critical 60 s, high 120 ...)
    escalate_due(env["engine"], env["cfg"], time.time())
    assert {a["alert_id"]: a["overdue"] for a in wang.items()} == {
        "old-low": "acknowledge", "mid-high": "acknowledge", "late-med": "acknowledge", "new-crit": None}
    assert wang.post("/api/alerts/old-low/actions", {"action": "acknowledge"}).status_code == 200
    # overdue first (the higher severity first), then the new, then the acknowledged
    assert wang.ids(sort="priority") == ["mid-high", "late-med", "new-crit", "old-low"]
    assert wang.ids(severity="critical") == ["new-crit"]
    assert wang.ids(camera="gate", sort="priority") == ["late-med", "new-crit"]
    assert set(wang.ids(camera="gate")) == {"late-med", "new-crit"}
    assert wang.ids(state="acknowledged") == ["old-low"]
    assert wang.ids(owner="Wang Wei") == ["old-low"] and "old-low" not in wang.ids(owner="none")
    assert wang.ids(q="GATE CAMERA") == wang.ids(camera="gate")  # free text: the camera's name, any case
    assert wang.ids(rule="zone", cell="G1") == wang.ids()  # the rule's id; every test alert has rule "zone"
    counts = wang.c.get("/api/alerts").json()["counts"]
    assert counts["state"] == {"new": 3, "acknowledged": 1}


def test_bulk_acknowledge_and_close_with_a_classification(env: dict[str, Any]) -> None:
    wang: Client = env["wang"]
    zhao: Client = env["zhao"]
    assert zhao.post("/api/alerts/late-med/actions", {"action": "acknowledge"}).status_code == 200
    r = wang.post("/api/alerts/bulk", {"ids": ["old-low", "mid-high", "late-med"], "action": "acknowledge"})
    assert r.status_code == 200, r.text
    assert r.json() == {"done": ["old-low", "mid-high"], "skipped": {"late-med": "not_new"}}
    assert wang.post("/api/alerts/bulk", {"ids": ["old-low"], "action": "close",
                                          "classification": "test"}).json()["detail"]["code"] == "comment_required"
    r = wang.post("/api/alerts/bulk", {"ids": ["old-low", "mid-high", "late-med"], "action": "close",
                                       "classification": "test", "note": "drill on the lobby floor"})
    assert r.json() == {"done": ["old-low", "mid-high"], "skipped": {"late-med": "owned_by_other"}}
    closed = {a["alert_id"]: a for a in wang.items(classification="test")}
    assert set(closed) == {"old-low", "mid-high"}
    assert all(a["state"] == "resolved" and a["close_comment"] == "drill on the lobby floor" for a in closed.values())
    assert wang.ids(state="open") == ["new-crit", "late-med"]
    report = wang.c.get("/api/reports").json()
    (g1,) = [c for c in report["cells"] if c["cell"] == "G1"]
    assert g1["by_outcome"] == {"test": 2}  # each outcome counted apart in the reports
