"""The supervisor view counts incidents (the room's items), not alerts: a lobby alert that comes back three
times within the incident window is one open incident of three alerts, per cell and per operator; the
overdue list names the incident once.  Real SQLite history, the real grouping of the config, the real app."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dashboard.app import create_app
from dashboard.escalation import escalate_due
from dashboard.users import add_user, from_row, get_user
from dashboard.workflow import Request, apply
from history import open_database
from history.archiver import store
from history.incidents import Grouping
from history.schema import alerts
from pipeline.config import load_config
from tests.support.dashboard import LoggedIn, alert_msg, write_dashboard_config

PW = "correct horse battery"


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    cfg = load_config(write_dashboard_config(
        tmp_path, f"bus: {{prefix: sup{time.monotonic_ns()}}}\nalerts: {{incident_window_s: 120}}"))
    engine = open_database(cfg)
    add_user(engine, "wang", PW, "operator", ["G1"], "Wang Wei")
    add_user(engine, "li", PW, "operator", ["G2"], "Li Na")
    add_user(engine, "chief", PW, "admin", ["*"], "Chief Chen")
    grouping = Grouping(cfg)
    now = time.time()
    with engine.begin() as conn:
        wang = from_row(get_user(conn, "wang"))
        # lobby: one person, three alerts within the window -> one incident (20 min old: overdue, unacknowledged)
        t = now - 1200
        for i, aid in enumerate(("l1", "l2", "l3")):
            start = t + 40 * i
            store(conn, None, alert_msg(aid, camera="lobby", t=start), grouping)
            store(conn, None, alert_msg(aid, phase="end", camera="lobby", t=start + 10, start=start), grouping)
        # gate: two alerts of one incident, acknowledged by wang
        store(conn, None, alert_msg("g1", camera="gate", t=now - 100), grouping)
        store(conn, None, alert_msg("g1", phase="end", camera="gate", t=now - 90, start=now - 100), grouping)
        store(conn, None, alert_msg("g2", camera="gate", t=now - 60), grouping)
        apply(conn, "g1", wang, Request("acknowledge"), now=now - 30)
        # square (G2): an incident of two alerts, closed by li
        li = from_row(get_user(conn, "li"))
        store(conn, None, alert_msg("s1", camera="square", t=now - 600), grouping)
        store(conn, None, alert_msg("s1", phase="end", camera="square", t=now - 590, start=now - 600), grouping)
        store(conn, None, alert_msg("s2", camera="square", t=now - 560), grouping)
        apply(conn, "s1", li, Request("acknowledge"), now=now - 500)
        apply(conn, "s1", li, Request("close", note="a cat", classification="false_alarm"), now=now - 400)
    escalate_due(engine, cfg)
    yield {"app": create_app(cfg, redis_url, engine), "engine": engine}
    engine.dispose()


def login(env: dict[str, Any], name: str) -> TestClient:
    return LoggedIn(env["app"], name, PW).c


def test_the_grouping_made_incidents(env: dict[str, Any]) -> None:
    with env["engine"].connect() as conn:
        heads = dict(conn.execute(select(func.coalesce(alerts.c.incident_id, alerts.c.id), func.count())
                                  .group_by(func.coalesce(alerts.c.incident_id, alerts.c.id))).all())
    assert heads == {"l1": 3, "g1": 2, "s1": 2}


def test_supervisor_counts_open_incidents_per_cell_with_the_alerts_beside(env: dict[str, Any]) -> None:
    s = login(env, "chief").get("/api/supervisor").json()
    assert (s["open"], s["open_alerts"]) == (2, 5)
    assert s["by_state"]["new"]["15to60m"] == 1 and s["by_state"]["acknowledged"]["lt5m"] == 1
    assert sum(sum(b.values()) for b in s["by_state"].values()) == 2
    cells = {c["cell"]: c for c in s["by_cell"]}
    assert cells["G1"] == {"cell": "G1", "name": "Xinhua Street", "incidents": 2, "alerts": 5,
                           "unacknowledged": 1, "overdue": 1}
    assert cells["G2"] == {"cell": "G2", "name": "Station Square", "incidents": 0, "alerts": 0,
                           "unacknowledged": 0, "overdue": 0}  # every cell of the supervisor, quiet ones too
    assert [(a["alert_id"], a["alerts"]) for a in s["overdue"]] == [("l1", 3)]  # the incident once, not per alert
    load = {x["operator"]: x for x in s["load"]}
    assert load["Wang Wei"] == {"operator": "Wang Wei", "open": 1, "closed_this_shift": 0}
    assert load["Li Na"] == {"operator": "Li Na", "open": 0, "closed_this_shift": 1}  # one incident of two alerts


def test_an_operator_sees_the_counts_of_their_own_cells_only(env: dict[str, Any]) -> None:
    li = login(env, "li").get("/api/supervisor").json()
    assert (li["open"], li["open_alerts"], li["overdue"]) == (0, 0, [])
    assert [c["cell"] for c in li["by_cell"]] == ["G2"]
    wang = login(env, "wang").get("/api/supervisor").json()
    assert [(c["cell"], c["incidents"], c["alerts"]) for c in wang["by_cell"]] == [("G1", 2, 5)]
