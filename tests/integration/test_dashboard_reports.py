"""Reports, the supervisor view, the printable alert and the audit of snapshot views, on alerts handled
at chosen times (so every median and percentile is known in advance)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dashboard.app import create_app
from dashboard.services.reports import percentile
from dashboard.users import add_user, from_row, get_user
from dashboard.workflow import Request, apply
from history import open_database
from history.archiver import store
from history.schema import actions
from pipeline.config import load_config
from tests.support.dashboard import alert_msg, write_dashboard_config

PW = "correct horse battery"


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, object]]:
    cfg = load_config(write_dashboard_config(tmp_path, f"bus: {{prefix: rep{time.monotonic_ns()}}}"))
    engine = open_database(cfg)
    add_user(engine, "wang", PW, "operator", ["G1"], "Wang Wei")
    add_user(engine, "li", PW, "operator", ["G2"], "Li Na")
    add_user(engine, "chief", PW, "admin", ["*"], "Chief Chen")
    now = time.time()
    t0 = now - 3600
    with engine.begin() as conn:
        users = {n: from_row(get_user(conn, n)) for n in ("wang", "li")}

        def handled(aid: str, camera: str, user: str, start: float, ack: float, sign: float | None,
                    arrive: float | None, cls: str | None, kind: str = "intrusion") -> None:
            store(conn, None, alert_msg(aid, camera=camera, t=start, kind=kind))
            u = users[user]
            apply(conn, aid, u, Request("acknowledge"), now=start + ack)
            if sign is not None:
                apply(conn, aid, u, Request("dispatch"), now=start + ack + 10)
                apply(conn, aid, u, Request("signed_for"), now=start + ack + 10 + sign)
                if arrive is not None:
                    apply(conn, aid, u, Request("on_scene"), now=start + ack + 10 + arrive)
                    apply(conn, aid, u, Request("feedback"), now=start + ack + 10 + arrive + 60)
            if cls:
                apply(conn, aid, u, Request("close", note="done", classification=cls), now=start + 1000)

        # G1: acknowledged after 10, 20, 30, 40 s; signed for after 60, 120 s; one false alarm of four closed
        handled("g1a", "lobby", "wang", t0, 10, 60, 300, "genuine")
        handled("g1b", "lobby", "wang", t0 + 1, 20, 120, 600, "genuine")
        handled("g1c", "gate", "wang", t0 + 2, 30, None, None, "false_alarm", kind="loitering")
        handled("g1d", "gate", "wang", t0 + 3, 40, None, None, "genuine", kind="loitering")
        # G2: signed for faster (30 s), two false alarms of two
        handled("g2a", "square", "li", t0 + 4, 5, 30, 100, "false_alarm")
        handled("g2b", "square", "li", t0 + 5, 5, 30, 100, "false_alarm")
        # open ones for the supervisor: one overdue and unowned, one owned by wang
        store(conn, None, alert_msg("open1", camera="lobby", t=now - 1200))
        store(conn, None, alert_msg("open2", camera="gate", t=now - 60))
        apply(conn, "open2", users["wang"], Request("acknowledge"), now=now - 30)
    from dashboard.escalation import escalate_due
    escalate_due(engine, cfg)  # open1: 20 min unacknowledged, high severity: overdue
    yield {"app": create_app(cfg, redis_url, engine), "engine": engine, "t0": t0, "cfg": cfg}
    engine.dispose()


def login(env: dict[str, object], name: str) -> TestClient:
    c = TestClient(env["app"])  # type: ignore[arg-type]
    assert c.post("/api/login", json={"username": name, "password": PW}).status_code == 200
    return c


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([10, 20, 30, 40], 90) == pytest.approx(37)
    assert percentile([5], 90) == 5


def test_report_counts_times_rankings_and_false_alarm_shares(env: dict[str, object]) -> None:
    rep = login(env, "chief").get("/api/reports", params={"start": env["t0"] - 10}).json()  # type: ignore[operator]
    cells = {c["cell"]: c for c in rep["cells"]}
    g1, g2 = cells["G1"], cells["G2"]
    assert g1["total"] == 6 and g1["by_kind"] == {"intrusion": 4, "loitering": 2}  # incl. the two open ones
    assert g1["acknowledge"]["n"] == 5
    assert g1["acknowledge"]["median_s"] == pytest.approx(30, abs=0.5)  # 10, 20, 30, 40 and open2's 30
    assert g1["sign_for"] == {"n": 2, "median_s": pytest.approx(90), "p90_s": pytest.approx(114)}
    assert g1["arrive"]["median_s"] == pytest.approx(450)
    assert g1["resolve"]["median_s"] == pytest.approx(1000, abs=0.01)
    assert (g1["closed"], g1["false_alarms"], g1["false_alarm_share"]) == (4, 1, 0.25)
    assert g2["false_alarm_share"] == 1.0
    assert [r["cell"] for r in rep["rank_sign_for"]] == ["G2", "G1"]  # G2 signs for in 30 s, G1 in 90 s
    assert [r["cell"] for r in rep["rank_feedback"]] == ["G2", "G1"]
    assert rep["false_alarms_by_camera"][0] == {"camera": "square", "name": "Square camera", "closed": 2,
                                                "false_alarms": 2, "share": 1.0}
    by_cam = {r["camera"]: r["share"] for r in rep["false_alarms_by_camera"]}
    assert by_cam == {"square": 1.0, "gate": 0.5, "lobby": 0.0}
    assert {(r["camera"], r["rule"]) for r in rep["false_alarms_by_rule"]} == {
        ("square", "zone"), ("gate", "zone"), ("lobby", "zone")}
    # an operator's report holds only their cells
    mine = login(env, "wang").get("/api/reports", params={"start": env["t0"] - 10}).json()  # type: ignore[operator]
    assert [c["cell"] for c in mine["cells"]] == ["G1"]
    assert login(env, "wang").get("/api/reports", params={"cell": "G2"}).status_code == 404


def test_report_as_csv(env: dict[str, object]) -> None:
    r = login(env, "chief").get("/api/reports.csv", params={"start": env["t0"] - 10})  # type: ignore[operator]
    assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    g1 = next(x for x in rows if x["cell"] == "G1")
    assert g1["alerts"] == "6" and g1["kind_loitering"] == "2" and g1["sign_for_median_s"] == "90.0"
    assert g1["false_alarm_share"] == "0.2"  # 0.25 with one decimal


def test_supervisor_view_and_printable_alert(env: dict[str, object]) -> None:
    c = login(env, "chief")
    s = c.get("/api/supervisor").json()
    assert s["open"] == 2
    assert s["by_state"]["new"]["15to60m"] == 1 and s["by_state"]["acknowledged"]["lt5m"] == 1
    assert [a["alert_id"] for a in s["overdue"]] == ["open1"]
    load = {x["operator"]: x for x in s["load"]}
    assert load["Wang Wei"] == {"operator": "Wang Wei", "open": 1, "closed_this_shift": 4}
    assert load["Li Na"]["closed_this_shift"] == 2
    assert login(env, "li").get("/api/supervisor").json()["open"] == 0  # G2 has nothing open
    assert c.get("/alerts/g1a/print").status_code == 200
    assert TestClient(env["app"]).get("/alerts/g1a/print", follow_redirects=False).status_code == 303  # type: ignore


def test_snapshot_views_are_audited(env: dict[str, object]) -> None:
    snap = Path(env["cfg"].data_path()) / "snapshots" / "lobby" / "d" / "x.jpg"  # type: ignore[attr-defined]
    snap.parent.mkdir(parents=True)
    snap.write_bytes(b"\xff\xd8\xff\xd9")
    c = login(env, "wang")
    assert c.get("/snapshots/lobby/d/x.jpg").status_code == 200
    detail = c.get("/api/alerts/g1a").json()
    assert detail["snapshots"] == []  # the test messages carried no snapshot
    with env["engine"].connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(select(actions.c.action, actions.c.username, actions.c.data)
                            .where(actions.c.action == "view_snapshot")).all()
    assert [(r.action, r.username) for r in rows] == [("view_snapshot", "wang")]
    assert "lobby/d/x.jpg" in rows[0].data
