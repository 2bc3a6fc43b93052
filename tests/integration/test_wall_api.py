"""Each user's video wall through the API: it opens on the user's own cells' cameras, layout and cameras are
kept per user, "push to wall" puts an alarm camera on a tile and "restore" brings back what the tile showed,
within the user's cells only, audited (the app in-process on real Redis and SQLite, two cells)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from history.schema import walls
from tests.support.security_room import Room


@pytest.fixture
def room(tmp_path: Path, redis_url: str) -> Iterator[Room]:
    r = Room(tmp_path, redis_url)
    yield r
    r.close()


def cams(st: dict[str, object]) -> list[str | None]:
    return [t["camera"]["id"] if t["camera"] else None for t in st["tiles"]]  # type: ignore[attr-defined,index]


def test_a_new_wall_shows_the_users_cells_cameras_in_config_order(room: Room) -> None:
    a = room.as_("opA").call("GET", "/api/wall").json()
    assert (a["layout"], cams(a), a["saved"]) == (4, ["lobby", "gate", None, None], False)
    assert room.as_("opB").call("GET", "/api/wall").json()["tiles"][0]["camera"] == {
        "id": "square", "name": "Station square", "grid_cell": "G2"}
    assert cams(room.as_("boss").call("GET", "/api/wall").json()) == ["lobby", "gate", "square", None]


def test_layout_and_cameras_are_kept_per_user(room: Room) -> None:
    a = room.as_("opA")
    r = a.call("PUT", "/api/wall", {"layout": 9, "cameras": ["gate", None, "lobby"]})
    assert r.status_code == 200, r.text
    st = a.call("GET", "/api/wall").json()
    assert (st["layout"], cams(st)[:4], st["saved"]) == (9, ["gate", None, "lobby", None], True)
    assert len(st["tiles"]) == 9 and st["version"] == r.json()["version"] >= 1
    assert cams(room.as_("eng").call("GET", "/api/wall").json())[:3] == ["lobby", "gate", "square"]  # not A's
    # another cell's camera answers as an unknown one, and changes nothing
    other = a.call("PUT", "/api/wall", {"layout": 4, "cameras": ["square"]})
    unknown = a.call("PUT", "/api/wall", {"layout": 4, "cameras": ["no-such-camera"]})
    assert other.status_code == unknown.status_code == 404
    assert other.json()["detail"]["code"] == unknown.json()["detail"]["code"] == "not_found"
    assert a.call("GET", "/api/wall").json()["version"] == st["version"]
    assert a.call("PUT", "/api/wall", {"layout": 5, "cameras": []}).status_code == 422
    assert a.call("PUT", "/api/wall", {"layout": 4, "cameras": ["x"] * 17}).status_code == 422


def test_push_puts_the_alarm_camera_on_the_tile_and_restore_brings_back_the_previous(room: Room) -> None:
    room.publish_alert("al-A", "gate")
    a = room.as_("opA")
    assert a.call("GET", "/api/alerts/al-A").status_code == 200  # the room opened it: stored
    a.call("PUT", "/api/wall", {"layout": 4, "cameras": ["lobby", None, "lobby"]})
    r = a.call("POST", "/api/wall/push", {"tile": 1, "alert_id": "al-A"})
    assert r.status_code == 200, r.text
    st = r.json()
    assert cams(st) == ["gate", None, "lobby", None]
    assert st["tiles"][0]["pushed"]["alert_id"] == "al-A"
    assert st["tiles"][0]["pushed"]["previous"]["id"] == "lobby"
    assert st["tiles"][2]["pushed"] is None
    # a second push onto the pushed tile keeps the operator's own camera for restore
    st = a.call("POST", "/api/wall/push", {"tile": 1, "camera": "lobby"}).json()
    assert st["tiles"][0]["pushed"]["previous"]["id"] == "lobby"
    st = a.call("POST", "/api/wall/push", {"tile": 1, "alert_id": "al-A"}).json()
    # another window of the same user reads the same wall
    assert cams(room.as_("opA").call("GET", "/api/wall").json()) == ["gate", None, "lobby", None]
    r = a.call("POST", "/api/wall/restore", {"tile": 1})
    assert r.status_code == 200, r.text
    assert cams(r.json()) == ["lobby", None, "lobby", None] and r.json()["tiles"][0]["pushed"] is None
    again = a.call("POST", "/api/wall/restore", {"tile": 1})
    assert (again.status_code, again.json()["detail"]["code"]) == (409, "not_pushed")
    # onto an empty tile, and past the layout: the layout grows to show it; restore leaves it empty
    st = a.call("POST", "/api/wall/push", {"tile": 2, "alert_id": "al-A"}).json()
    assert cams(st)[:2] == ["lobby", "gate"] and st["tiles"][1]["pushed"]["previous"] is None
    st = a.call("POST", "/api/wall/push", {"tile": 7, "camera": "gate"}).json()
    assert st["layout"] == 9 and cams(st)[6] == "gate"
    assert cams(a.call("POST", "/api/wall/restore", {"tile": 2}).json())[:2] == ["lobby", None]
    # the operator picking cameras keeps a pushed tile that still shows its camera, and forgets one that does not
    st = a.call("PUT", "/api/wall", {"layout": 9, "cameras": ["gate", None, None, None, None, None, "gate"]}).json()
    assert st["tiles"][6]["pushed"] is not None and st["tiles"][0]["pushed"] is None


def test_push_and_restore_stay_in_the_users_cells_and_in_their_own_wall(room: Room) -> None:
    room.publish_alert("al-A", "lobby")
    room.publish_alert("al-B", "square")
    a, b = room.as_("opA"), room.as_("opB")
    assert a.call("GET", "/api/alerts/al-A").status_code == 200
    assert b.call("GET", "/api/alerts/al-B").status_code == 200
    before = [a.call("GET", "/api/wall").json(), b.call("GET", "/api/wall").json()]
    answers = []
    for body in ({"tile": 1, "alert_id": "al-A"}, {"tile": 1, "alert_id": "no-such-alert"},
                 {"tile": 1, "camera": "lobby"}, {"tile": 1, "camera": "no-such-camera"},
                 {"tile": 1, "camera": "square", "alert_id": "al-A"}):
        r = b.call("POST", "/api/wall/push", body)
        answers.append((r.status_code, r.json()))
    assert all(ans == answers[1] for ans in answers), answers  # cell A's answers exactly as unknown ones
    assert answers[1][0] == 404
    assert [a.call("GET", "/api/wall").json(), b.call("GET", "/api/wall").json()] == before
    # A's push is on A's wall only; B cannot restore it (B's tile was never pushed)
    assert a.call("POST", "/api/wall/push", {"tile": 2, "alert_id": "al-A"}).status_code == 200
    assert cams(b.call("GET", "/api/wall").json()) == cams(before[1])
    assert b.call("POST", "/api/wall/restore", {"tile": 2}).status_code == 409
    assert b.call("POST", "/api/wall/push", {"tile": 17, "camera": "square"}).status_code == 422
    assert b.call("POST", "/api/wall/push", {"tile": 1}).status_code == 422
    assert b.call("POST", "/api/wall/push", {"tile": 1, "camera": "square", "user_id": 1}).status_code == 422
    with room.engine.connect() as conn:
        rows = {r.user_id: json.loads(r.tiles) for r in conn.execute(select(walls))}
    assert len(rows) == 1  # only A's wall was written
    # a camera that left the user's cells is no longer shown (nor streamed) on their wall
    assert a.call("PUT", "/api/wall", {"layout": 4, "cameras": ["gate", "lobby"]}).status_code == 200
    r = room.as_("boss").call("PATCH", "/api/users/opA", {"cells": ["G2"]})
    assert r.status_code == 200, r.text
    assert cams(a.call("GET", "/api/wall").json()) == [None, None, None, None]


def test_push_and_restore_are_audited_on_the_alert(room: Room) -> None:
    room.publish_alert("al-A", "gate")
    a = room.as_("opA")
    assert a.call("GET", "/api/alerts/al-A").status_code == 200
    a.call("PUT", "/api/wall", {"layout": 4, "cameras": ["lobby"]})
    a.call("POST", "/api/wall/push", {"tile": 1, "alert_id": "al-A"})
    a.call("POST", "/api/wall/restore", {"tile": 1})
    rows = [r for r in room.audit_rows() if r["action"].startswith("wall_")]
    assert [(r["action"], r["username"], r["alert_id"], r["grid_cell_id"]) for r in rows] == [
        ("wall_push", "opA", "al-A", "G1"), ("wall_restore", "opA", "al-A", "G1")]
    assert json.loads(rows[0]["data"]) == {"camera": "gate", "camera_name": "School gate", "tile": 1,
                                          "previous": "lobby"}
    assert json.loads(rows[1]["data"]) == {"camera": "lobby", "pushed": "gate", "tile": 1}
    assert rows[0]["remote"]
    timeline = a.call("GET", "/api/alerts/al-A").json()["timeline"]
    assert [t["action"] for t in timeline if t["action"].startswith("wall_")] == ["wall_push", "wall_restore"]
