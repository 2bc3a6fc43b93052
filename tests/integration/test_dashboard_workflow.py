"""The alert workflow through the API: states, ownership, dispatch steps, closing, the timeline; on SQLite
and a real PostgreSQL, with alerts arriving over a real Redis bus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.escalation import escalate_due
from dashboard.users import add_user
from history import open_database
from pipeline.config import load_config
from pipeline.publish import bus
from tests.support.dashboard import (
    LoggedIn,
    alert_msg,
    config_on_backend,
    open_with_users,
    postgres_url,  # noqa: F401  (fixture)
    write_dashboard_config,
)

PW = "correct horse battery"  # tests.support.dashboard.PASSWORD, which LoggedIn uses


class Op(LoggedIn):
    """A logged-in user's client with the CSRF token at hand."""

    def act(self, alert_id: str, action: str, **kw: object) -> tuple[int, dict[str, object]]:
        r = self.c.post(f"/api/alerts/{alert_id}/actions", json={"action": action, **kw},
                        headers={"X-CSRF-Token": self.csrf})
        return r.status_code, r.json()

    def ok(self, alert_id: str, action: str, **kw: object) -> dict[str, object]:
        code, body = self.act(alert_id, action, **kw)
        assert code == 200, body
        return body["alert"]  # type: ignore[return-value]

    def refused(self, alert_id: str, action: str, **kw: object) -> str:
        code, body = self.act(alert_id, action, **kw)
        assert code >= 400, body
        return body["detail"]["code"]  # type: ignore[index,no-any-return]


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[dict[str, object]]:
    cfg, prefix = config_on_backend(request, tmp_path, "wf")
    engine = open_with_users(cfg, "wang operator G1 Wang Wei", "zhao operator G1 Zhao Lei", "li operator G2 Li Na")
    app = create_app(cfg, redis_url, engine)
    r = bus.connect(redis_url)
    keys = bus.BusKeys(prefix)

    def publish(msg: dict[str, object]) -> None:
        bus.publish_event(r, keys, msg, 10_000)

    yield {"app": app, "publish": publish, "engine": engine, "cfg": cfg}
    engine.dispose()


def test_alert_goes_through_acknowledge_dispatch_steps_and_resolve(env: dict[str, object]) -> None:
    env["publish"](alert_msg("a1", camera="lobby", t=time.time() - 120))  # type: ignore[operator]
    wang = Op(env["app"], "wang")
    a = wang.ok("a1", "acknowledge")  # the dashboard stores it from the bus if the archiver has not yet
    assert a["state"] == "acknowledged" and a["owner"]["name"] == "Wang Wei"
    assert wang.refused("a1", "signed_for") == "wrong_step"  # dispatch steps go in order
    assert wang.refused("a1", "close", classification="genuine") == "comment_required"
    assert wang.refused("a1", "close", note="x") == "classification_required"
    t_sent = time.time()
    a = wang.ok("a1", "dispatch")
    assert a["state"] == "dispatched" and a["dispatch"]["step"] == "sent"
    assert a["dispatch"]["sent_at"] == pytest.approx(t_sent, abs=2)
    reported = time.time() - 60  # the officer called a minute ago: the operator records when it happened
    a = wang.ok("a1", "signed_for", at=reported)
    assert a["dispatch"]["signed_for_at"] == pytest.approx(reported, abs=0.01)
    assert wang.ok("a1", "on_scene")["dispatch"]["step"] == "on_scene"
    assert wang.ok("a1", "feedback", note="two youths, sent home")["dispatch"]["step"] == "feedback"
    assert wang.refused("a1", "feedback") == "wrong_step"
    wang.ok("a1", "note", note="parents informed")
    a = wang.ok("a1", "close", classification="genuine", note="youths climbed the school fence; sent home")
    assert a["state"] == "resolved" and a["classification"] == "genuine" and a["closed_by"] == "Wang Wei"
    assert wang.refused("a1", "note", note="") == "comment_required"
    assert wang.refused("a1", "dispatch") == "closed"
    detail = wang.c.get("/api/alerts/a1").json()
    steps = [(t["action"], t["username"], t["from_state"], t["to_state"]) for t in detail["timeline"]]
    assert steps == [
        ("acknowledge", "wang", "new", "acknowledged"), ("dispatch", "wang", "acknowledged", "dispatched"),
        ("signed_for", "wang", "dispatched", "dispatched"), ("on_scene", "wang", "dispatched", "dispatched"),
        ("feedback", "wang", "dispatched", "dispatched"), ("note", "wang", "dispatched", "dispatched"),
        ("close", "wang", "dispatched", "resolved")]
    assert detail["timeline"][1]["data"]["officer"] == "Wang Wei"  # the cell's duty officer was dispatched
    assert detail["timeline"][-1]["note"].startswith("youths climbed")
    assert all(t["time"] > 0 for t in detail["timeline"])


def test_ownership_take_over_and_forward(env: dict[str, object]) -> None:
    env["publish"](alert_msg("a2", camera="gate"))  # type: ignore[operator]
    wang, zhao, li = Op(env["app"], "wang"), Op(env["app"], "zhao"), Op(env["app"], "li")
    wang.ok("a2", "acknowledge")
    assert zhao.refused("a2", "acknowledge") == "not_new"
    assert zhao.refused("a2", "dispatch") == "owned_by_other"
    assert zhao.refused("a2", "close", classification="test", note="x") == "owned_by_other"
    a = zhao.ok("a2", "take_over", note="Wang went on patrol")
    assert a["owner"]["name"] == "Zhao Lei"
    assert zhao.refused("a2", "take_over") == "already_owner"
    assert wang.refused("a2", "dispatch") == "owned_by_other"
    assert zhao.refused("a2", "forward", to="li", note="yours") == "bad_forward_target"  # li has no G1
    assert zhao.refused("a2", "forward", to="wang") == "comment_required"
    a = zhao.ok("a2", "forward", to="wang", note="back from patrol: please dispatch")
    assert a["owner"]["name"] == "Wang Wei"
    assert wang.ok("a2", "dispatch")["state"] == "dispatched"
    assert li.refused("a2", "take_over") == "not_found"  # another cell's alert does not exist for li
    tl = wang.c.get("/api/alerts/a2").json()["timeline"]
    assert [t["action"] for t in tl] == ["acknowledge", "take_over", "forward", "dispatch"]
    assert tl[1]["data"]["from"] == "Wang Wei" and tl[2]["data"]["to_name"] == "Wang Wei"


def test_false_alarm_straight_from_new_and_stale_versions(env: dict[str, object]) -> None:
    env["publish"](alert_msg("a3", camera="lobby"))  # type: ignore[operator]
    env["publish"](alert_msg("a4", camera="lobby"))  # type: ignore[operator]
    wang, zhao = Op(env["app"], "wang"), Op(env["app"], "zhao")
    a = wang.ok("a3", "close", classification="false_alarm", note="a shadow of the flag pole")
    assert a["state"] == "false_alarm" and a["owner"]["name"] == "Wang Wei"
    seen = wang.c.get("/api/alerts/a4").json()["alert"]["version"]
    zhao.ok("a4", "acknowledge", version=seen)
    code, body = wang.act("a4", "acknowledge", version=seen)  # wang clicked on what he saw before zhao's click
    assert code == 409 and body["detail"]["code"] == "stale"
    listed = {a["alert_id"]: a for a in wang.c.get("/api/alerts").json()["alerts"]}
    assert listed["a3"]["state"] == "false_alarm" and listed["a4"]["owner"]["name"] == "Zhao Lei"


def test_escalation_of_unacknowledged_alerts_and_unsigned_dispatches(env: dict[str, object]) -> None:
    t0 = time.time() - 5000  # started long ago: the checks below run at chosen times before now
    env["publish"](alert_msg("e1", camera="lobby", severity="high", t=t0))  # type: ignore[operator]
    env["publish"](alert_msg("e2", camera="lobby", severity="low", t=t0))  # type: ignore[operator]
    wang = Op(env["app"], "wang")
    wang.c.get("/api/alerts/e1")  # stored from the bus
    wang.c.get("/api/alerts/e2")
    engine, cfg = env["engine"], env["cfg"]

    def esc(now: float) -> list[tuple[str, int, str]]:
        return [(a["alert_id"], a["escalation_level"], act["data"]["reason"])
                for a, act in escalate_due(engine, cfg, now)]  # type: ignore[arg-type]

    assert esc(t0 + 119) == []  # high: 120 s to acknowledge
    assert esc(t0 + 121) == [("e1", 1, "not_acknowledged")]
    assert esc(t0 + 122) == []  # once per period
    assert esc(t0 + 241) == [("e1", 2, "not_acknowledged")]  # still nobody: it climbs
    assert sorted(esc(t0 + 901)) == [("e1", 7, "not_acknowledged"), ("e2", 1, "not_acknowledged")]
    seen = wang.c.get("/api/alerts/e1").json()["alert"]["version"]
    wang.ok("e1", "acknowledge", version=seen)  # an escalation never makes an operator's click stale
    wang.ok("e1", "dispatch")
    sent = wang.c.get("/api/alerts/e1").json()["alert"]["dispatch"]["sent_at"]
    assert [e for e in esc(sent + 299) if e[0] == "e1"] == []  # high: 300 s to sign for
    # each step has its own level: the signature's starts at 1, whatever the acknowledgement reached
    assert [e for e in esc(sent + 301) if e[0] == "e1"] == [("e1", 1, "not_signed_for")]
    assert [e for e in esc(sent + 302) if e[0] == "e1"] == []
    signed = wang.ok("e1", "signed_for")["dispatch"]["signed_for_at"]
    assert [e for e in esc(signed + 899) if e[0] == "e1"] == []  # high: 900 s to be on scene
    assert [e for e in esc(signed + 901) if e[0] == "e1"] == [("e1", 1, "not_on_scene")]
    tl = wang.c.get("/api/alerts/e1").json()["timeline"]
    escalations = [t for t in tl if t["action"] == "escalate"]
    assert [t["data"]["level"] for t in escalations] == [1, 2, 7, 1, 1]  # one row per escalation, levels may jump
    assert [t["data"]["step"] for t in escalations] == ["acknowledge"] * 3 + ["signed_for", "on_scene"]
    assert all(t["username"] is None for t in escalations)  # the system did it


def test_bulk_close_of_one_cameras_false_alarms_and_the_rules_procedure(env: dict[str, object]) -> None:
    for i in range(3):
        env["publish"](alert_msg(f"flap{i}", camera="gate"))  # type: ignore[operator]
    env["publish"](alert_msg("other", camera="lobby"))  # type: ignore[operator]
    wang, zhao, li = Op(env["app"], "wang"), Op(env["app"], "zhao"), Op(env["app"], "li")
    for i in range(3):
        wang.c.get(f"/api/alerts/flap{i}")  # stored from the bus
    zhao.ok("flap2", "acknowledge")  # zhao is handling this one: it is left to him
    r = wang.c.post("/api/alerts/bulk-close", json={"camera": "gate", "note": "spider web on the lens"},
                    headers={"X-CSRF-Token": wang.csrf})
    assert r.json() == {"closed": 2, "skipped": 1}
    states = {a["alert_id"]: a["state"] for a in wang.c.get("/api/alerts").json()["alerts"]}
    assert states["flap0"] == states["flap1"] == "false_alarm" and states["flap2"] == "acknowledged"
    assert states["other"] == "new"
    assert wang.c.post("/api/alerts/bulk-close", json={"camera": "gate", "note": " "},
                       headers={"X-CSRF-Token": wang.csrf}).status_code == 400
    assert li.c.post("/api/alerts/bulk-close", json={"camera": "gate", "note": "x"},
                     headers={"X-CSRF-Token": li.csrf}).status_code == 404  # not li's cell
    assert wang.c.get("/api/alerts/other").json()["procedure"].startswith("1. 查看实时视频")
    assert wang.c.get("/api/alerts/flap0").json()["procedure"] is None  # gate's default rule has none


def test_grid_map_counts_open_alerts_per_cell(env: dict[str, object]) -> None:
    env["publish"](alert_msg("m1", camera="lobby"))  # type: ignore[operator]
    env["publish"](alert_msg("m2", camera="square"))  # type: ignore[operator]
    wang, li = Op(env["app"], "wang"), Op(env["app"], "li")
    wang.c.get("/api/alerts/m1")
    li.c.get("/api/alerts/m2")
    wang.ok("m1", "acknowledge")
    m = wang.c.get("/api/map").json()
    assert [(c["id"], c["open"], c["new"]) for c in m["cells"]] == [("G1", 1, 0)]  # only wang's cell
    assert m["cells"][0]["outline"] == [[0, 0], [400, 0], [400, 300], [0, 300]]
    assert {c["id"]: c["position"] for c in m["cameras"]} == {"lobby": [100, 150], "gate": [300, 50]}
    assert [(c["id"], c["new"]) for c in li.c.get("/api/map").json()["cells"]] == [("G2", 1)]


def test_the_officers_one_time_link_reports_the_dispatch_steps(env: dict[str, object]) -> None:
    env["publish"](alert_msg("o1", camera="lobby"))  # type: ignore[operator]
    wang, zhao = Op(env["app"], "wang"), Op(env["app"], "zhao")
    wang.ok("o1", "acknowledge")
    r = wang.c.post("/api/alerts/o1/actions", json={"action": "dispatch"}, headers={"X-CSRF-Token": wang.csrf})
    link = r.json()["officer_link"]
    assert link.startswith("/o/") and len(link) > 30
    officer = TestClient(env["app"])  # type: ignore[arg-type]  # no account, no session
    assert officer.get(link).status_code == 200
    info = officer.get("/api" + link).json()
    assert info["camera"]["id"] == "lobby" and info["dispatch"]["step"] == "sent" and "owner" not in info
    steps = "/api" + link + "/steps"
    assert officer.post(steps, json={"step": "on_scene"}).json()["detail"]["code"] == "wrong_step"
    assert officer.post(steps, json={"step": "close"}).status_code == 400  # only dispatch steps
    assert officer.post(steps, json={"step": "signed_for"}, headers={"Origin": "http://evil.example"}
                        ).status_code == 403
    assert officer.post(steps, json={"step": "signed_for"}).json()["dispatch"]["step"] == "signed_for"
    # a new link replaces the old one; only the owner may make it
    assert zhao.c.post("/api/alerts/o1/officer-link", headers={"X-CSRF-Token": zhao.csrf}).status_code == 409
    new = wang.c.post("/api/alerts/o1/officer-link", headers={"X-CSRF-Token": wang.csrf}).json()["officer_link"]
    assert officer.get("/api" + link).status_code == 404 and new != link
    steps = "/api" + new + "/steps"
    officer.post(steps, json={"step": "on_scene"})
    done = officer.post(steps, json={"step": "feedback", "note": "two youths, sent home"}).json()
    assert done["dispatch"]["step"] == "feedback"
    assert officer.get("/api" + new).status_code == 404  # the last step ends the link
    tl = wang.c.get("/api/alerts/o1").json()["timeline"]
    by_link = [(t["action"], t["data"]["via"], t["username"]) for t in tl if (t["data"] or {}).get("via")]
    assert by_link == [("signed_for", "link", None), ("on_scene", "link", None), ("feedback", "link", None)]
    assert tl[-1]["note"] == "two youths, sent home" and tl[-1]["data"]["by"] == "Wang Wei"  # G1's duty officer
    assert all(link[3:] not in str(t) and new[3:] not in str(t) for t in tl)  # no token in the audit log


def test_dispatch_pages_the_cells_paging_system_with_retries(tmp_path: Path, redis_url: str) -> None:
    import http.server
    import json
    import threading

    received: list[dict[str, object]] = []

    class Pager(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            self.send_response(503 if len(received) == 1 else 200)  # busy the first time
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pager)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        prefix = f"page{time.monotonic_ns()}"
        path = write_dashboard_config(tmp_path, f"bus: {{prefix: {prefix}}}")
        doc = yaml.safe_load(path.read_text())
        doc["grid_cells"]["G1"]["webhook"] = f"http://127.0.0.1:{srv.server_port}/page"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        cfg = load_config(path)
        engine = open_database(cfg)
        add_user(engine, "wang", PW, "operator", ["G1"], "Wang Wei")
        app = create_app(cfg, redis_url, engine)
        bus.publish_event(bus.connect(redis_url), bus.BusKeys(prefix), alert_msg("p1", camera="lobby"), 1000)
        wang = Op(app, "wang")
        wang.ok("p1", "acknowledge")
        t = time.monotonic()
        link = wang.c.post("/api/alerts/p1/actions", json={"action": "dispatch"},
                           headers={"X-CSRF-Token": wang.csrf}).json()["officer_link"]
        assert time.monotonic() - t >= 0.9  # the test client waits for the background retry (1 s)
        assert len(received) == 2 and received[1]["alert_id"] == "p1"
        assert received[1]["officer"] == {"name": "Wang Wei", "phone": "13800000001"}
        assert str(received[1]["officer_link"]).endswith(link)
        tl = wang.c.get("/api/alerts/p1").json()["timeline"]
        tries = [(t["action"], t["data"]["try"], t["data"]["status"]) for t in tl if t["action"].startswith("webhook")]
        assert tries == [("webhook_failed", 1, 503), ("webhook", 2, 200)]
        engine.dispose()
    finally:
        srv.shutdown()
