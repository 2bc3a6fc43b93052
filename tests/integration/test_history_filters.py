"""History search with the room's filters, who acknowledged and who closed how, and rules by the name
operators read; reports that count incidents beside alerts, with outcomes and rule names.

Real SQLite and PostgreSQL (the ``engine`` fixture), the real dashboard app over HTTP (TestClient), alerts
stored as the archiver stores them and handled through the workflow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dashboard.app import create_app
from dashboard.users import add_user, from_row, get_user
from dashboard.workflow import Request, apply
from history.archiver import store
from history.incidents import Grouping
from pipeline.config import Config, load_config
from tests.support.config import write_config
from tests.support.dashboard import DASHBOARD_CELLS, alert_msg

PW = "correct horse battery"
FLOOR = {"polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}
CAMERAS: dict[str, dict[str, Any]] = {
    "lobby": {"name": "Lobby camera", "source": "rtsp://127.0.0.1:9/lobby", "grid_cell": "G1",
              "zones": {"floor": FLOOR},
              "rules": {"intruder": {"kind": "intrusion", "zone": "floor", "severity": "high", "name": "夜间入侵"},
                        "loiterer": {"kind": "loitering", "zone": "floor", "severity": "medium"},
                        "crowd": {"kind": "crowding", "zone": "floor", "severity": "critical"}}},
    "gate": {"name": "School gate", "source": "rtsp://127.0.0.1:9/gate", "grid_cell": "G1",
             "zones": {"yard": FLOOR}, "lines": {"door": {"a": [0.5, 0], "b": [0.5, 1]}},
             "rules": {"night": {"kind": "intrusion", "zone": "yard", "severity": "critical", "name": "夜间入侵"},
                       "door": {"kind": "line_crossing", "line": "door", "severity": "low"}}},
    "square": {"name": "Station square", "source": "rtsp://127.0.0.1:9/square", "grid_cell": "G2",
               "rules": {"sq": {"kind": "presence", "severity": "high", "name": "广场聚集"}}},
}


def msg(aid: str, camera: str, rule: str, kind: str, severity: str, t: float, phase: str = "new",
        start: float | None = None) -> dict[str, Any]:
    m = alert_msg(aid, phase, t=t, camera=camera, severity=severity, kind=kind, start=t if start is None else start)
    m["rule"] = {"id": rule, "kind": kind, "severity": severity}
    return m


def make(tmp_path: Path, engine: Engine, redis_url: str, **alerts_cfg: Any) -> tuple[Config, Any]:
    cfg = load_config(write_config(tmp_path, CAMERAS, grid_cells=DASHBOARD_CELLS, data_dir="data",
                                   timezone="Asia/Shanghai", bus={"prefix": f"hf{time.monotonic_ns()}"},
                                   alerts=alerts_cfg))
    add_user(engine, "wang", PW, "operator", ["G1"], "Wang Wei")
    add_user(engine, "li", PW, "operator", ["G2"], "Li Na")
    add_user(engine, "chief", PW, "admin", ["*"], "Chief Chen")
    return cfg, create_app(cfg, redis_url, engine)


def login(app: Any, name: str) -> TestClient:
    c = TestClient(app)
    assert c.post("/api/login", json={"username": name, "password": PW}).status_code == 200
    return c


def users(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {n: from_row(get_user(conn, n)) for n in ("wang", "li", "chief")}


@pytest.fixture
def hist(tmp_path: Path, engine: Engine, redis_url: str) -> Iterator[dict[str, Any]]:
    """Five alerts, each its own incident, handled by different people with every outcome."""
    cfg, app = make(tmp_path, engine, redis_url, incident_window_s=0)
    u = users(engine)
    t0 = time.time() - 3600
    g = Grouping(cfg)
    with engine.begin() as conn:
        store(conn, None, msg("h1", "lobby", "intruder", "intrusion", "high", t0), g)
        store(conn, None, msg("h2", "lobby", "loiterer", "loitering", "medium", t0 + 10), g)
        store(conn, None, msg("h3", "gate", "night", "intrusion", "critical", t0 + 20), g)
        store(conn, None, msg("h4", "gate", "door", "line_crossing", "low", t0 + 30), g)
        store(conn, None, msg("h5", "square", "sq", "presence", "high", t0 + 40), g)
        apply(conn, "h1", u["wang"], Request("acknowledge"), now=t0 + 5)
        apply(conn, "h1", u["wang"], Request("close", note="thief caught", classification="genuine"), now=t0 + 50)
        apply(conn, "h2", u["chief"], Request("acknowledge"), now=t0 + 15)
        apply(conn, "h2", u["chief"], Request("close", note="a shadow", classification="false_alarm"), now=t0 + 60)
        apply(conn, "h4", u["wang"], Request("acknowledge"), now=t0 + 35)
        apply(conn, "h4", u["wang"], Request("close", note="same as h1", classification="duplicate"), now=t0 + 70)
        apply(conn, "h5", u["li"], Request("acknowledge"), now=t0 + 45)
        apply(conn, "h5", u["li"], Request("close", note="drill", classification="test"), now=t0 + 80)
    yield {"app": app, "cfg": cfg, "t0": t0}


def ids(c: TestClient, **params: Any) -> list[str]:
    r = c.get("/api/history", params=params)
    assert r.status_code == 200, r.text
    return sorted(a["alert_id"] for a in r.json()["alerts"])


def test_each_filter_of_the_room_narrows_the_history(hist: dict[str, Any]) -> None:
    chief = login(hist["app"], "chief")
    assert ids(chief) == ["h1", "h2", "h3", "h4", "h5"]
    assert ids(chief, severity="critical") == ["h3"]
    assert ids(chief, severity="low") == ["h4"]
    assert ids(chief, camera="gate") == ["h3", "h4"]
    assert ids(chief, cell="G2") == ["h5"]
    assert ids(chief, state="open") == ["h3"]
    assert ids(chief, state="false_alarm") == ["h2"]
    assert ids(chief, owner="Wang Wei") == ["h1", "h4"]
    assert ids(chief, owner="none") == ["h3"]
    assert ids(chief, kind="intrusion") == ["h1", "h3"]
    for bad in ({"severity": "urgent"}, {"classification": "maybe"}, {"state": "nonsense"}, {"q": "x" * 201}):
        r = chief.get("/api/history", params=bad)
        assert r.status_code == 400 and next(iter(bad)) in r.json()["detail"]["message"]
    # an operator sees only their cells, whatever the filter
    wang = login(hist["app"], "wang")
    assert ids(wang) == ["h1", "h2", "h3", "h4"]
    assert ids(wang, classification="test") == []
    assert wang.get("/api/history", params={"cell": "G2"}).status_code == 404


def test_rule_by_the_name_operators_read_or_by_its_id(hist: dict[str, Any]) -> None:
    chief = login(hist["app"], "chief")
    assert ids(chief, rule="夜间入侵") == ["h1", "h3"]  # the same name on two cameras, two rule ids
    assert ids(chief, rule="intruder") == ["h1"]  # the id still works
    assert ids(chief, rule="night") == ["h3"]
    assert ids(chief, rule="广场聚集") == ["h5"]
    assert ids(chief, rule="no such rule") == []
    assert ids(chief, rule="kind:loitering") == ["h2"]  # the unnamed rules of a kind, read by the kind's name
    assert ids(chief, rule="kind:intrusion") == []  # both intrusion rules have a name
    rows = {a["alert_id"]: a for a in chief.get("/api/history").json()["alerts"]}
    assert rows["h1"]["rule"]["name"] == "夜间入侵" and rows["h3"]["rule"]["name"] == "夜间入侵"
    assert rows["h2"]["rule"]["name"] is None and rows["h2"]["rule"]["kind"] == "loitering"  # the page shows 徘徊
    # the menus: rule names (one entry per name, with the ids it stands for) of the user's cameras, and people
    ch = login(hist["app"], "wang").get("/api/history/choices").json()
    by = {r["value"]: r for r in ch["rules"]}
    assert by["夜间入侵"]["ids"] == ["intruder", "night"] and by["夜间入侵"]["name"] == "夜间入侵"
    assert by["kind:loitering"]["name"] is None and by["kind:loitering"]["ids"] == ["loiterer"]
    assert by["kind:line_crossing"]["ids"] == ["door"]
    assert "广场聚集" not in by  # a rule of another cell's camera is not named to this operator
    assert ch["people"] == ["Chief Chen", "Wang Wei"]  # Li Na works only G2
    assert ch["classifications"] == ["genuine", "false_alarm", "duplicate", "test"]


def test_who_acknowledged_who_closed_and_how(hist: dict[str, Any]) -> None:
    chief = login(hist["app"], "chief")
    assert ids(chief, acknowledged_by="Chief Chen") == ["h2"]
    assert ids(chief, closed_by="Wang Wei") == ["h1", "h4"]
    assert ids(chief, closed_by="Wang Wei", classification="duplicate") == ["h4"]
    assert ids(chief, classification="genuine") == ["h1"]
    assert ids(chief, classification="test") == ["h5"]
    rows = {a["alert_id"]: a for a in chief.get("/api/history").json()["alerts"]}
    assert (rows["h2"]["acknowledged_by"], rows["h2"]["closed_by"], rows["h2"]["classification"],
            rows["h2"]["close_comment"]) == ("Chief Chen", "Chief Chen", "false_alarm", "a shadow")
    # paging keeps the filters
    page = chief.get("/api/history", params={"closed_by": "Wang Wei", "limit": 1}).json()
    assert [a["alert_id"] for a in page["alerts"]] == ["h4"] and page["next"]
    page2 = chief.get("/api/history", params={"closed_by": "Wang Wei", "limit": 1, "before": page["next"]}).json()
    assert [a["alert_id"] for a in page2["alerts"]] == ["h1"] and page2["next"] is None


def test_free_text_searches_names_people_comments_and_rule_names(hist: dict[str, Any]) -> None:
    chief = login(hist["app"], "chief")
    assert ids(chief, q="shadow") == ["h2"]  # a closing comment
    assert ids(chief, q="GATE") == ["h3", "h4"]  # a camera name, any case
    assert ids(chief, q="li na") == ["h5"]  # who handled it
    assert ids(chief, q="夜间") == ["h1", "h3"]  # a rule's configured name
    assert ids(chief, q="h5") == ["h5"]  # an alert id
    assert ids(chief, q="100%") == []  # LIKE wildcards are taken literally
    assert ids(chief, q="a_shadow") == []


def test_report_counts_incidents_and_alerts_outcomes_and_rule_names(tmp_path: Path, engine: Engine,
                                                                   redis_url: str) -> None:
    cfg, app = make(tmp_path, engine, redis_url, incident_window_s=120)
    u = users(engine)
    t0 = time.time() - 3600
    g = Grouping(cfg)
    with engine.begin() as conn:
        # one incident of three alerts on the lobby floor (intrusion, loitering, intrusion again), closed as a
        # duplicate; one incident of one alert at the gate, closed genuine; one at the door left open
        store(conn, None, msg("i1", "lobby", "intruder", "intrusion", "high", t0), g)
        store(conn, None, msg("i2", "lobby", "loiterer", "loitering", "medium", t0 + 20), g)
        store(conn, None, msg("i1", "lobby", "intruder", "intrusion", "high", t0 + 30, "end", t0), g)
        store(conn, None, msg("i3", "lobby", "intruder", "intrusion", "high", t0 + 60), g)
        store(conn, None, msg("j1", "gate", "night", "intrusion", "critical", t0 + 5), g)
        store(conn, None, msg("k1", "gate", "door", "line_crossing", "low", t0 + 6), g)
        apply(conn, "i2", u["wang"], Request("acknowledge"), now=t0 + 100)  # acts on its incident, i1
        apply(conn, "i1", u["wang"], Request("close", note="one person", classification="duplicate"), now=t0 + 200)
        apply(conn, "j1", u["wang"], Request("acknowledge"), now=t0 + 15)
        apply(conn, "j1", u["wang"], Request("close", note="caught", classification="genuine"), now=t0 + 300)
    rep = login(app, "chief").get("/api/reports", params={"start": t0 - 10}).json()
    g1 = {c["cell"]: c for c in rep["cells"]}["G1"]
    assert (g1["total"], g1["incidents"]) == (5, 3) and (rep["total"], rep["incidents"]) == (5, 3)
    assert g1["by_kind"] == {"intrusion": 3, "loitering": 1, "line_crossing": 1}
    assert g1["incidents_by_kind"] == {"intrusion": 2, "line_crossing": 1}
    assert g1["by_outcome"] == {"duplicate": 3, "genuine": 1}  # every alert carries its incident's outcome
    assert g1["incident_outcomes"] == {"genuine": 1, "duplicate": 1} and g1["incidents_closed"] == 2
    assert rep["incident_outcomes"] == {"genuine": 1, "duplicate": 1}
    # step times per incident: i1 acknowledged after 100 s, j1 after 10 s (its occurrences not counted again)
    assert g1["acknowledge"]["n"] == 2 and g1["acknowledge"]["median_s"] == pytest.approx(55, abs=0.01)
    by_rule = {(r["camera"], r["rule"]): r for r in rep["by_rule"]}
    assert by_rule[("lobby", "intruder")]["rule_name"] == "夜间入侵"
    assert (by_rule[("lobby", "intruder")]["alerts"], by_rule[("lobby", "intruder")]["incidents"]) == (2, 1)
    assert (by_rule[("lobby", "loiterer")]["alerts"], by_rule[("lobby", "loiterer")]["incidents"]) == (1, 0)
    assert by_rule[("gate", "door")]["rule_name"] is None and by_rule[("gate", "door")]["kind"] == "line_crossing"
    fa = {(r["camera"], r["rule"]): r for r in rep["false_alarms_by_rule"]}
    assert fa[("gate", "night")]["rule_name"] == "夜间入侵" and fa[("gate", "night")]["kind"] == "intrusion"
    csv_text = login(app, "chief").get("/api/reports.csv", params={"start": t0 - 10}).content.decode("utf-8-sig")
    head, g1_line = csv_text.splitlines()[0].split(","), csv_text.splitlines()[1].split(",")
    row = dict(zip(head, g1_line, strict=True))
    assert (row["alerts"], row["incidents"], row["outcome_duplicate"], row["outcome_test"]) == ("5", "3", "1", "0")
