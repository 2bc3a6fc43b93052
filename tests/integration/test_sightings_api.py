"""The sightings search API: a plate with one wrong character, colour + label, a vehicle's path; each user
sees only their cells; every search is in the audit log; bad queries say what is wrong."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dashboard.app import create_app
from dashboard.users import add_user
from history import open_database
from history.schema import actions
from history.sightings import row_of, store
from pipeline.config import load_config
from tests.integration.test_sightings_store import T0, sighting
from tests.support.dashboard import PASSWORD, TWO_CELLS_YAML, LoggedIn

CONFIG = TWO_CELLS_YAML + """\
  gate: {{name: School gate, source: "rtsp://127.0.0.1:9/gate", grid_cell: G1}}
  street: {{name: Xinhua street, source: "rtsp://127.0.0.1:9/street", grid_cell: G1}}
  carpark: {{name: Station car park, source: "rtsp://127.0.0.1:9/carpark", grid_cell: G2}}
"""


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    path = tmp_path / "streams.yaml"
    path.write_text(CONFIG.format(prefix=f"sapi{time.monotonic_ns()}"))
    cfg = load_config(path)
    engine = open_database(cfg)
    add_user(engine, "eng", PASSWORD, "engineer", ["G1", "G2"], "Chief Engineer")
    add_user(engine, "wang", PASSWORD, "operator", ["G1"], "Wang Wei")
    add_user(engine, "li", PASSWORD, "operator", ["G2"], "Li Na")
    cells = {"gate": "G1", "street": "G1", "carpark": "G2"}
    with engine.begin() as conn:
        for s in (sighting(1, "gate", "car", T0, plate="藏D·T5022", body="orange"),
                  sighting(2, "street", "car", T0 + 300, plate="藏D·T5022", body="orange"),
                  sighting(3, "carpark", "car", T0 + 900, plate="冀D·T5022", body="orange"),
                  sighting(6, "gate", "person", T0 + 100, upper="red", lower="blue"),
                  sighting(8, "carpark", "person", T0 + 5000, upper="red", lower="black")):
            store(conn, row_of(s, cells[s.camera], s.crop_name()))
    yield {"app": create_app(cfg, redis_url, engine), "engine": engine}
    engine.dispose()


def get(user: LoggedIn, url: str) -> tuple[int, Any]:
    r = user.c.get(url)
    return r.status_code, r.json()


def test_search_by_plate_colour_and_path(env: dict[str, Any]) -> None:
    eng = LoggedIn(env["app"], "eng")
    code, out = get(eng, "/api/sightings?plate=藏D·T5O22&match=fuzzy")  # O for 0: one wrong character
    assert code == 200 and [r["track_id"] for r in out["sightings"]] == [2, 1]
    code, out = get(eng, "/api/sightings?plate=冀D·T5022&match=fuzzy")  # the province misread
    assert [r["track_id"] for r in out["sightings"]] == [3, 2, 1]
    assert out["sightings"][0]["camera_name"] == "Station car park" and out["sightings"][1]["plate_text"] == "藏D·T5022"
    code, out = get(eng, "/api/sightings?label=person&colour=红&part=upper")
    assert [r["track_id"] for r in out["sightings"]] == [8, 6]
    code, out = get(eng, "/api/sightings/path?plate=藏D·T5022")
    assert [(r["camera_id"], r["first_time"] - T0) for r in out["sightings"]] == [("gate", 0), ("street", 300)]
    code, out = get(eng, f"/api/sightings?start={T0 + 50}&end={T0 + 350}")
    assert [r["track_id"] for r in out["sightings"]] == [2, 6]


def test_operators_see_their_cells_only_and_searches_are_audited(env: dict[str, Any]) -> None:
    wang, li = LoggedIn(env["app"], "wang"), LoggedIn(env["app"], "li")
    assert [r["track_id"] for r in get(wang, "/api/sightings?plate=冀DT5022&match=fuzzy")[1]["sightings"]] == [2, 1]
    assert [r["track_id"] for r in get(li, "/api/sightings?plate=冀DT5022&match=fuzzy")[1]["sightings"]] == [3]
    assert get(li, "/api/sightings?cell=G1")[1]["sightings"] == []  # another cell: nothing, as if empty
    assert get(li, "/api/sightings?camera=gate")[1]["sightings"] == []
    with env["engine"].connect() as conn:
        rows = conn.execute(select(actions).where(actions.c.action == "sightings_search")).mappings().all()
    assert [r["username"] for r in rows] == ["wang", "li", "li", "li"]
    assert json.loads(rows[0]["data"])["plate"] == "冀DT5022" and json.loads(rows[0]["data"])["results"] == 2


@pytest.mark.parametrize(("url", "code"), [
    ("/api/sightings?colour=pink", 400), ("/api/sightings?match=regex&plate=x", 422),
    ("/api/sightings?limit=0", 422), ("/api/sightings?start=nan", 422), ("/api/sightings?start=1e999", 422),
    (f"/api/sightings?start={T0 + 10}&end={T0}", 400), ("/api/sightings?plate=" + "x" * 17, 422),
    ("/api/sightings/path", 422),
])
def test_bad_queries(env: dict[str, Any], url: str, code: int) -> None:
    eng = LoggedIn(env["app"], "eng")
    got, out = get(eng, url)
    assert got == code, out


def test_no_session_no_search(env: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    assert TestClient(env["app"]).get("/api/sightings").status_code == 401
