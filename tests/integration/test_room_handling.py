"""The handling view's API: the colleagues an alert can be forwarded to (scoped by cell and role, on duty
first), the alarm camera and its related cameras in the alert's detail (same cell, named neighbours, within
the user's cells), and the notices a forward or a takeover leaves for the operator it concerns.  The app
in-process on a real Redis bus and SQLite."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard.app import create_app
from dashboard.users import set_disabled
from pipeline.config import load_config
from pipeline.publish import bus
from tests.support.config import write_config
from tests.support.dashboard import DASHBOARD_CAMERAS, DASHBOARD_CELLS, LoggedIn, alert_msg, open_with_users


class Op(LoggedIn):
    def get(self, path: str) -> Any:
        return self.c.get(path)

    def act(self, alert_id: str, action: str, **kw: object) -> dict[str, Any]:
        r = self.c.post(f"/api/alerts/{alert_id}/actions", json={"action": action, **kw}, headers=self.h)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"hv{time.monotonic_ns()}"
    cams = copy.deepcopy(DASHBOARD_CAMERAS)
    cams["lobby"]["neighbours"] = ["square"]  # across the cell boundary: the square's camera sees the lobby door
    cams["lobby"]["zones"] = {"door": {"polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
    cfg = load_config(write_config(tmp_path, cams, grid_cells=DASHBOARD_CELLS, data_dir="data",
                                   timezone="Asia/Shanghai", bus={"prefix": prefix}, alerts={"incident_window_s": 0}))
    engine = open_with_users(cfg, "wang operator G1 Wang Wei", "zhao operator G1 Zhao Lei", "li operator G2 Li Na",
                             "eng engineer G1,G2 Engineer Sun", "boss admin * Chief Chen",
                             "gone operator G1 Former Colleague")
    set_disabled(engine, "gone")
    app = create_app(cfg, redis_url, engine)
    r = bus.connect(redis_url)
    keys = bus.BusKeys(prefix)
    yield {"app": app, "publish": lambda m: bus.publish_event(r, keys, m, 10_000)}
    engine.dispose()


def test_recipients_are_the_colleagues_of_the_cell_on_duty_first(env: dict[str, Any]) -> None:
    env["publish"](alert_msg("r1", camera="gate"))
    wang, zhao, li = Op(env["app"], "wang"), Op(env["app"], "zhao"), Op(env["app"], "li")
    assert wang.get("/api/alerts/r1").status_code == 200  # stored from the bus
    r = wang.get("/api/alerts/r1/recipients")
    assert r.status_code == 200, r.text
    got = [(u["username"], u["on_duty"]) for u in r.json()["users"]]
    # zhao is logged in; the engineer and the admin see G1 too but are not; li (G2), the disabled
    # colleague and wang himself are not offered
    assert got == [("zhao", True), ("boss", False), ("eng", False)]
    assert r.json()["grid_cell"] == "G1"
    assert [u["username"] for u in zhao.get("/api/alerts/r1/recipients").json()["users"]] == ["wang", "boss", "eng"]
    # another cell's alert answers as an unknown one
    assert li.get("/api/alerts/r1/recipients").status_code == 404
    assert li.get("/api/alerts/nope/recipients").status_code == 404
    wang.act("r1", "acknowledge")
    owner = [u for u in zhao.get("/api/alerts/r1/recipients").json()["users"] if u["owner"]]
    assert [u["username"] for u in owner] == ["wang"]


def test_the_detail_names_the_alarm_camera_and_its_related_cameras_in_the_users_cells(env: dict[str, Any]) -> None:
    env["publish"](alert_msg("c1", camera="lobby"))
    env["publish"](alert_msg("c2", camera="square"))
    wang, eng, li = Op(env["app"], "wang"), Op(env["app"], "eng"), Op(env["app"], "li")

    def related(op: Op, aid: str) -> list[tuple[str, str]]:
        d = op.get(f"/api/alerts/{aid}").json()
        return [(c["id"], c["relation"]) for c in d["related_cameras"]]

    d = wang.get("/api/alerts/c1").json()
    assert d["live_camera"]["id"] == "lobby" and d["live_camera"]["zones"] == {
        "door": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    assert related(wang, "c1") == [("gate", "cell")]  # the square is a neighbour, but of G2: not wang's
    assert related(eng, "c1") == [("gate", "cell"), ("square", "neighbour")]
    assert related(eng, "c2") == [("lobby", "neighbour")]  # named by the lobby: a neighbour both ways
    assert related(li, "c2") == []  # the lobby is G1's
    assert eng.get("/api/alerts/c1").json()["related_cameras"][1]["grid_cell"] == {"id": "G2",
                                                                                   "name": "Station Square"}


def test_forward_and_takeover_leave_a_notice_for_the_operator_concerned(env: dict[str, Any]) -> None:
    env["publish"](alert_msg("n1", camera="gate"))
    wang, zhao, li = Op(env["app"], "wang"), Op(env["app"], "zhao"), Op(env["app"], "li")
    start = wang.get("/api/notices").json()
    assert start["notices"] == []
    wang.act("n1", "acknowledge")
    zhao.act("n1", "take_over")
    zhao.act("n1", "forward", to="wang", note="back from patrol: please dispatch")
    mine = wang.get(f"/api/notices?after={start['cursor']}").json()
    assert [(n["kind"], n["alert_id"], n["by"]) for n in mine["notices"]] == [
        ("taken_over", "n1", "Zhao Lei"), ("forwarded", "n1", "Zhao Lei")]
    assert mine["notices"][1]["note"] == "back from patrol: please dispatch"
    assert mine["notices"][1]["camera"]["id"] == "gate"
    assert wang.get("/api/notices").json()["notices"] == mine["notices"]  # the last hour by default
    assert wang.get(f"/api/notices?after={mine['cursor']}").json()["notices"] == []
    assert zhao.get("/api/notices").json()["notices"] == []  # nothing was done to zhao
    assert li.get("/api/notices").json()["notices"] == []  # another cell
    assert wang.get("/api/notices?after=x").status_code == 400
