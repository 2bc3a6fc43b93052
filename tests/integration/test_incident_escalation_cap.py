"""An incident escalates by the highest severity among its occurrences, and an incident that goes on for
longer than its cap (alerts.incident_max_s, or the rule's own) takes no new alert: the next opens a new one.

Real SQLite and PostgreSQL (the ``engine`` fixture); alerts stored as the archiver stores them."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from dashboard.escalation import escalate_due
from history.archiver import store
from history.incidents import Grouping
from history.schema import actions, alerts, incidents
from pipeline.config import Config, load_config
from tests.integration.test_history_filters import CAMERAS, msg
from tests.support.config import write_config
from tests.support.dashboard import DASHBOARD_CELLS


def config(tmp_path: Path, cameras: dict[str, Any] | None = None, **alerts_cfg: Any) -> Config:
    return load_config(write_config(tmp_path, cameras or CAMERAS, grid_cells=DASHBOARD_CELLS, data_dir="data",
                                    timezone="Asia/Shanghai", alerts=alerts_cfg))


def escalations(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(actions.c.alert_id, actions.c.data).where(actions.c.action == "escalate")
                            .order_by(actions.c.id)).all()
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r.alert_id, []).append(json.loads(r.data))
    return out


def test_an_incident_escalates_by_its_highest_severity(tmp_path: Path, engine: Engine) -> None:
    cfg = config(tmp_path, incident_window_s=120)  # acknowledge within: medium 300 s, critical 60 s
    g = Grouping(cfg)
    t0 = time.time() - 3600
    with engine.begin() as conn:
        # a medium loitering alert, then a critical crowding alert of the same floor joins its incident
        store(conn, None, msg("m1", "lobby", "loiterer", "loitering", "medium", t0), g)
        store(conn, None, msg("m2", "lobby", "crowd", "crowding", "critical", t0 + 5), g)
        # alone, a medium alert of another camera: its own deadline
        store(conn, None, msg("d1", "gate", "door", "line_crossing", "medium", t0), g)
    with engine.connect() as conn:
        assert conn.execute(select(alerts.c.incident_id).where(alerts.c.id == "m2")).scalar() == "m1"
        assert conn.execute(select(incidents.c.severity).where(incidents.c.id == "m1")).scalar() == "critical"
    escalate_due(engine, cfg, now=t0 + 70)  # past critical's 60 s, not medium's 300 s
    esc = escalations(engine)
    assert esc == {"m1": [{"level": 1, "reason": "not_acknowledged", "step": "acknowledge", "severity": "critical"}]}
    with engine.connect() as conn:
        head = conn.execute(select(alerts).where(alerts.c.id == "m1")).one()
    assert (head.severity, head.escalation_level, head.escalation_step) == ("medium", 1, "acknowledge")
    escalate_due(engine, cfg, now=t0 + 125)  # two critical periods: level 2; the lone medium one still waits
    esc = escalations(engine)
    assert [e["level"] for e in esc["m1"]] == [1, 2] and "d1" not in esc
    escalate_due(engine, cfg, now=t0 + 301)
    assert escalations(engine)["d1"] == [{"level": 1, "reason": "not_acknowledged", "step": "acknowledge",
                                          "severity": "medium"}]


def starts_every_minute(engine: Engine, g: Grouping, camera: str, rule: str, kind: str, t0: float, n: int) -> None:
    """n alerts, one a minute, each ending after 20 s: a camera that never calms down."""
    with engine.begin() as conn:
        for i in range(n):
            s = t0 + 60 * i
            store(conn, None, msg(f"{camera}{i:02d}", camera, rule, kind, "high", s), g)
            store(conn, None, msg(f"{camera}{i:02d}", camera, rule, kind, "high", s + 20, "end", s), g)


def incident_sizes(engine: Engine, camera: str) -> list[int]:
    with engine.connect() as conn:
        return [r.occurrences for r in conn.execute(select(incidents.c.occurrences).where(
            incidents.c.camera_id == camera).order_by(incidents.c.first_seen))]


def test_an_incident_that_goes_on_past_its_cap_gives_way_to_a_new_one(tmp_path: Path, engine: Engine) -> None:
    cams = copy.deepcopy(CAMERAS)
    cams["gate"]["rules"]["night"]["incident_max_s"] = 0  # this rule: no cap
    cams["square"]["rules"]["sq"]["incident_max_s"] = 300  # this rule: five minutes
    cfg = config(tmp_path, cams, incident_window_s=120, incident_max_s=600)
    g = Grouping(cfg)
    t0 = time.time() - 7200
    starts_every_minute(engine, g, "lobby", "intruder", "intrusion", t0, 15)
    starts_every_minute(engine, g, "gate", "night", "intrusion", t0, 15)
    starts_every_minute(engine, g, "square", "sq", "presence", t0, 15)
    # starts at 0..540 s join the first incident; the one at 600 s opens the next
    assert incident_sizes(engine, "lobby") == [10, 5]
    assert incident_sizes(engine, "gate") == [15]
    assert incident_sizes(engine, "square") == [5, 5, 5]
    with engine.connect() as conn:  # nothing dropped: every alert stored, each in one incident
        rows = conn.execute(select(alerts.c.id, alerts.c.incident_id)).all()
    assert len(rows) == 45 and all(r.incident_id for r in rows)
    assert {r.incident_id for r in rows if r.id.startswith("lobby")} == {"lobby00", "lobby10"}


def test_the_cap_is_a_bounded_config_knob(tmp_path: Path) -> None:
    assert config(tmp_path).alerts.incident_max_s == 3600  # default: one hour
    with pytest.raises(Exception, match="incident_max_s"):
        config(tmp_path, incident_max_s=-1)
