"""The watchlists API (布控): investigators (engineers, admins) add, list and remove entries in their cells;
operators get 403; every change is in the audit log; a bad plate answers 422 naming the field; the
workers' mirror on the bus follows every change."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis as redis_lib
from sqlalchemy import select

from dashboard.app import create_app
from history.schema import actions
from pipeline.analyse.watchlist import MIRROR_KEY, Entry, WatchlistHit, alert_id, from_mirror
from pipeline.config import load_config
from pipeline.publish import bus
from pipeline.publish.events import watchlist_message
from tests.support.dashboard import TWO_CELLS_YAML, LoggedIn, open_with_users

CONFIG = TWO_CELLS_YAML + """\
  gate: {{name: School gate, source: "rtsp://127.0.0.1:9/gate", grid_cell: G1}}
  carpark: {{name: Station car park, source: "rtsp://127.0.0.1:9/carpark", grid_cell: G2}}
"""


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"wlapi{time.monotonic_ns()}"
    path = tmp_path / "streams.yaml"
    path.write_text(CONFIG.format(prefix=prefix))
    cfg = load_config(path)
    engine = open_with_users(cfg, "eng1 engineer G1 Engineer of G1", "eng2 engineer G2 Engineer of G2",
                             "boss admin * Admin", "wang operator G1 Wang Wei", "li operator G2 Li Na")
    r = redis_lib.Redis.from_url(redis_url)
    yield {"app": create_app(cfg, redis_url, engine), "engine": engine, "r": r, "key": f"{prefix}:{MIRROR_KEY}",
           "cfg": cfg, "prefix": prefix}
    r.delete(f"{prefix}:{MIRROR_KEY}")
    engine.dispose()


def mirrored(env: dict[str, Any]) -> list[Entry]:
    return from_mirror(env["r"].get(env["key"]))


def test_create_list_remove_with_audit_and_mirror(env: dict[str, Any]) -> None:
    eng1, eng2, boss = (LoggedIn(env["app"], n) for n in ("eng1", "eng2", "boss"))
    later = time.time() + 3600
    r = eng1.c.post("/api/watchlists", json={"plate": "藏d t5022", "reason": "stolen", "cells": ["G1"],
                                             "expires_at": later}, headers=eng1.h)
    assert r.status_code == 200, r.text
    e1 = r.json()
    assert e1["plate"] == "藏D·T5022" and e1["owner"] == "eng1" and e1["cells"] == ["G1"]
    assert e1["active"] and e1["mirrored"]
    r = boss.c.post("/api/watchlists", json={"plate": "藏D·T50?2", "reason": "witness", "cells": ["*"],
                                             "owner": "detective-li"}, headers=boss.h)
    assert r.status_code == 200, r.text
    e2 = r.json()
    assert e2["pattern"] == "藏DT50?2" and e2["owner"] == "detective-li" and e2["expires_at"] is None
    assert [(e.id, e.pattern, e.cells) for e in mirrored(env)] == [(e1["id"], "藏DT5022", ("G1",)),
                                                                    (e2["id"], "藏DT50?2", ("*",))]

    assert [e["id"] for e in eng1.c.get("/api/watchlists").json()["entries"]] == [e2["id"], e1["id"]]
    assert [e["id"] for e in eng2.c.get("/api/watchlists").json()["entries"]] == [e2["id"]]  # not G1's
    assert eng2.c.delete(f"/api/watchlists/{e1['id']}", headers=eng2.h).status_code == 404  # as if unknown
    assert eng2.c.delete("/api/watchlists/999999", headers=eng2.h).status_code == 404
    assert eng1.c.delete(f"/api/watchlists/{e2['id']}", headers=eng1.h).status_code == 403  # every cell's
    r = eng1.c.delete(f"/api/watchlists/{e1['id']}", headers=eng1.h)
    assert r.status_code == 200 and r.json()["removed"] == e1["id"]
    assert [e.id for e in mirrored(env)] == [e2["id"]]

    with env["engine"].connect() as conn:
        rows = conn.execute(select(actions).where(actions.c.action.like("watchlist_%"))
                            .order_by(actions.c.id)).mappings().all()
    assert [(a["action"], a["username"], a["note"], a["grid_cell_id"]) for a in rows] == [
        ("watchlist_add", "eng1", "藏D·T5022", "G1"), ("watchlist_add", "boss", "藏D·T50?2", None),
        ("watchlist_remove", "eng1", "藏D·T5022", "G1")]
    assert '"reason": "stolen"' in rows[2]["data"]  # what was removed, kept in the log


def test_each_covered_cells_supervisor_reads_the_change_in_the_audit_log(env: dict[str, Any]) -> None:
    eng1, eng2, boss = (LoggedIn(env["app"], n) for n in ("eng1", "eng2", "boss"))
    r = boss.c.post("/api/watchlists", json={"plate": "藏D·T5022", "reason": "stolen", "cells": ["G1", "G2"]},
                    headers=boss.h)
    assert r.status_code == 200, r.text
    two = r.json()["id"]
    r = eng1.c.post("/api/watchlists", json={"plate": "藏A·12345", "reason": "witness", "cells": ["G1"]},
                    headers=eng1.h)
    assert r.status_code == 200, r.text
    assert boss.c.delete(f"/api/watchlists/{two}", headers=boss.h).status_code == 200

    def logged(user: LoggedIn) -> list[tuple[str, str | None, str]]:
        res = user.c.get("/api/audit")
        assert res.status_code == 200, res.text
        return sorted((a["action"], a["grid_cell_id"], a["note"]) for a in res.json()["rows"]
                      if a["action"].startswith("watchlist_"))

    # the G2 engineer reads the two-cell entry's add and remove (their cell's rows), not G1's own entry
    assert logged(eng2) == [("watchlist_add", "G2", "藏D·T5022"), ("watchlist_remove", "G2", "藏D·T5022")]
    assert logged(eng1) == [("watchlist_add", "G1", "藏A·12345"), ("watchlist_add", "G1", "藏D·T5022"),
                            ("watchlist_remove", "G1", "藏D·T5022")]
    assert len(logged(boss)) == 5  # every cell's rows


def test_operators_may_neither_see_nor_change_watchlists(env: dict[str, Any]) -> None:
    wang = LoggedIn(env["app"], "wang")
    assert wang.c.get("/api/watchlists").status_code == 403
    r = wang.c.post("/api/watchlists", json={"plate": "藏D·T5022", "reason": "x", "cells": ["G1"]}, headers=wang.h)
    assert r.status_code == 403 and r.json()["detail"]["code"] == "forbidden_role"
    assert wang.c.delete("/api/watchlists/1", headers=wang.h).status_code == 403


@pytest.mark.parametrize(("body", "field", "status"), [
    ({"plate": "ABC1234"}, "plate", 422),  # no province
    ({"plate": "藏D·T50??"}, "plate", 422),  # two unknown characters
    ({"plate": "藏D·T5022", "reason": ""}, "reason", 422),
    ({"cells": []}, "cells", 422),
    ({"cells": ["G9"]}, "cells", 422),  # no such cell
    ({"cells": ["G2"]}, "cells", 403),  # not the engineer's
    ({"cells": ["*"]}, "cells", 403),  # every cell needs every cell
    ({"expires_at": 1000.0}, "expires_at", 422),  # in the past
    ({"expires_at": 1e20}, "expires_at", 422),  # after 2100: a typo
])
def test_bad_entries_say_which_field(env: dict[str, Any], body: dict[str, Any], field: str, status: int) -> None:
    eng1 = LoggedIn(env["app"], "eng1")
    r = eng1.c.post("/api/watchlists", json={"plate": "藏D·T5022", "reason": "stolen", "cells": ["G1"], **body},
                    headers=eng1.h)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if detail["code"] == "invalid_request":  # the body's model: where
        assert [e["loc"][-1] for e in detail["errors"]] == [field], detail
    else:  # the scope or the database's checks
        assert detail["field"] == field and field in detail["message"], detail
    assert mirrored(env) == []


def test_a_hit_goes_through_the_workflow_in_its_cell(env: dict[str, Any]) -> None:
    """The worker's hit, as it puts it on the bus: the cell's operator takes, dispatches and closes it; the
    other cell's operator does not see it; it says which entry and plate, not why the plate is watched."""
    t = time.time() - 30
    hit = WatchlistHit(alert_id=alert_id("gate", 7, t), entry_id=7, pattern="藏DT5022", plate="藏D·T5022",
                       confidence=0.97, camera_id="gate", track_id=3, label="car", box=(10.0, 20.0, 300.0, 240.0),
                       first_t=t - 1.5, seen_t=t)
    keys = bus.BusKeys(env["prefix"])
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs/schemas/event.schema.json").read_text())
    for phase in ("new", "end"):
        msg = watchlist_message(hit, env["cfg"], phase, None)
        jsonschema.validate(msg, schema)  # the bus contract (docs/events.md)
        bus.publish_event(env["r"], keys, msg, 10_000)
    wang, li = LoggedIn(env["app"], "wang"), LoggedIn(env["app"], "li")

    def act(action: str, **kw: Any) -> dict[str, Any]:
        r = wang.c.post(f"/api/alerts/{hit.alert_id}/actions", json={"action": action, **kw}, headers=wang.h)
        assert r.status_code == 200, r.text
        return r.json()["alert"]  # type: ignore[no-any-return]

    assert act("acknowledge")["state"] == "acknowledged"
    a = wang.c.get(f"/api/alerts/{hit.alert_id}").json()["alert"]
    assert a["rule"] == {"id": "watchlist:7", "kind": "watchlist", "severity": "high", "name": None}
    assert a["grid_cell"]["id"] == "G1" and a["phase"] == "end" and a["labels"] == ["car"]
    assert act("dispatch")["state"] == "dispatched"
    assert act("close", classification="genuine", note="stopped at the gate, stolen car recovered")["state"] == \
        "resolved"
    assert li.c.get(f"/api/alerts/{hit.alert_id}").status_code == 404
    assert "stolen" not in json.dumps(watchlist_message(hit, env["cfg"], "new", None))
