"""Watchlist hits (布控命中) are audited: the history writes one ``watchlist_hit`` row, by the system, when it first
stores the hit's alert, with the camera, cell, alert and entry; a redelivered message, the hit's ``end`` and a
re-published copy write none.  The row is on the alert's timeline and in the audit log of the cell's supervisor,
without the entry's reason."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from history.archiver import store
from history.schema import actions, alerts
from pipeline.analyse.watchlist import WatchlistHit, alert_id
from pipeline.config import load_config
from pipeline.publish.events import message_id, watchlist_message
from tests.support.dashboard import TWO_CELLS_YAML, open_with_users

CONFIG = TWO_CELLS_YAML + """\
  gate: {{name: School gate, source: "rtsp://127.0.0.1:9/gate", grid_cell: G1}}
  carpark: {{name: Station car park, source: "rtsp://127.0.0.1:9/carpark", grid_cell: G2}}
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    path = tmp_path / "streams.yaml"
    path.write_text(CONFIG.format(prefix=f"wlhit{time.monotonic_ns()}"))
    cfg = load_config(path)
    engine = open_with_users(cfg, "eng1 engineer G1 Engineer of G1", "eng2 engineer G2 Engineer of G2")
    yield {"cfg": cfg, "engine": engine}
    engine.dispose()


def hit_rows(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(actions).where(actions.c.action == "watchlist_hit").order_by(actions.c.id)))


def test_a_hit_is_audited_once_however_often_it_is_delivered(env: dict[str, Any]) -> None:
    cfg, engine = env["cfg"], env["engine"]
    t = time.time() - 30
    hit = WatchlistHit(alert_id=alert_id("gate", 7, t), entry_id=7, pattern="藏DT50?2", plate="藏D·T5022",
                       confidence=0.97, camera_id="gate", track_id=3, label="car", box=(10.0, 20.0, 300.0, 240.0),
                       first_t=t - 1.5, seen_t=t)
    new, end = watchlist_message(hit, cfg, "new", None), watchlist_message(hit, cfg, "end", None)
    with engine.begin() as conn:
        assert store(conn, "1-1", new) is True
    with engine.begin() as conn:
        assert store(conn, "1-1", new) is False  # the same stream entry read again (redelivered)
    with engine.begin() as conn:
        assert store(conn, "1-2", end) is True  # the hit's end: the alert's row exists, no second audit row
        assert store(conn, "1-3", dict(new, id=message_id())) is True  # the same hit published again
    rows = hit_rows(engine)
    assert len(rows) == 1, rows
    (row,) = rows
    data = json.loads(row.data)
    assert (row.alert_id, row.grid_cell_id, row.user_id, row.username, row.note) == \
        (hit.alert_id, "G1", None, None, "藏D·T5022")
    assert row.time == pytest.approx(t, abs=0.01)
    assert data == {"camera": "gate", "camera_name": "School gate", "cell": "G1", "alert_id": hit.alert_id,
                    "entry_id": 7, "pattern": "藏DT50?2", "plate": "藏D·T5022", "confidence": 0.97}
    with engine.connect() as conn:
        assert conn.execute(select(alerts.c.kind).where(alerts.c.id == hit.alert_id)).scalar_one() == "watchlist"


def test_other_alerts_write_no_hit_row_and_the_hit_is_seen_in_its_cell_only(env: dict[str, Any]) -> None:
    from dashboard.services.audit import AuditFilter, read
    from dashboard.users import from_row, get_user

    cfg, engine = env["cfg"], env["engine"]
    t = time.time() - 10
    hit = WatchlistHit(alert_id=alert_id("carpark", 9, t), entry_id=9, pattern="藏DT5022", plate="藏D·T5022",
                       confidence=0.9, camera_id="carpark", track_id=1, label="truck", box=(0.0, 0.0, 50.0, 50.0),
                       first_t=t - 1, seen_t=t)
    other = dict(watchlist_message(hit, cfg, "new", None), id=message_id(), alert_id="plain1",
                 rule={"id": "zone", "kind": "presence", "severity": "high"})
    other.pop("watchlist")
    with engine.begin() as conn:
        store(conn, "2-1", other)
        store(conn, "2-2", watchlist_message(hit, cfg, "new", None))
    assert [r.alert_id for r in hit_rows(engine)] == [hit.alert_id]
    with engine.connect() as conn:
        users = {name: from_row(get_user(conn, name)) for name in ("eng1", "eng2")}
    seen = {name: [r["action"] for r in read(engine, u, AuditFilter(action="watchlist_hit"))["rows"]]
            for name, u in users.items()}
    assert seen == {"eng1": [], "eng2": ["watchlist_hit"]}
