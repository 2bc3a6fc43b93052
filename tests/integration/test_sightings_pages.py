"""The search page's routes besides the search: sighting crops (scoped like snapshots, traversal refused), a
sighting's clip, adding a sighting to a case, for every role and both cells of the security room."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from history.schema import cases
from history.sightings import store
from tests.integration.test_security_paths import TRAVERSALS
from tests.support.security_room import Room

DAY = "20261207"
SID = {"lobby": "lobby:1780000000000:1", "square": "square:1780000000000:2"}
MARK = {"lobby": b"CELL-A-EVIDENCE", "square": b"CELL-B-EVIDENCE"}
# who sees which camera's sightings: opA cell G1 (lobby), opB cell G2 (square), the engineer both, the admin all
SEES = {"opA": {"lobby"}, "opB": {"square"}, "eng": {"lobby", "square"}, "boss": {"lobby", "square"}}


def crop_rel(cam: str) -> str:
    return f"{cam}/{DAY}/{SID[cam].replace(':', '_')}.jpg"


@pytest.fixture
def room(tmp_path: Path, redis_url: str) -> Iterator[Room]:
    r = Room(tmp_path, redis_url)
    t = time.time() - 600
    with r.engine.begin() as conn:
        for cam, cell in (("lobby", "G1"), ("square", "G2")):
            p = r.data / "sightings" / crop_rel(cam)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\xff\xd8" + MARK[cam] + b"\xff\xd9")
            store(conn, {"sighting_id": SID[cam], "camera_id": cam, "grid_cell_id": cell, "track_id": 1,
                         "label": "car", "first_time": t, "last_time": t + 5, "best_time": t + 2,
                         "direction": "left_to_right", "body_colour": "red", "colours": "{}",
                         "crop_path": crop_rel(cam), "hits": 10, "final": True})
    yield r
    r.close()


def test_crops_are_served_to_the_cells_that_see_them_only(room: Room) -> None:
    for who, sees in SEES.items():
        c = room.as_(who)
        for cam in ("lobby", "square"):
            status, body = room.asgi("GET", f"/api/sightings/crops/{crop_rel(cam)}", cookie=c.cookie())
            if cam in sees:
                assert status == 200 and MARK[cam] in body, (who, cam, status)
            else:  # another cell's crop answers as a missing file
                assert status == 404 and MARK[cam] not in body, (who, cam, status)
        status, _ = room.asgi("GET", f"/api/sightings/crops/lobby/{DAY}/nothing.jpg", cookie=c.cookie())
        assert status == 404
    status, _ = room.asgi("GET", f"/api/sightings/crops/{crop_rel('lobby')}")
    assert status == 401  # no session


@pytest.mark.parametrize("probe", TRAVERSALS)
def test_traversal_to_another_cells_crop_is_refused(room: Room, probe: str) -> None:
    probe = probe.replace("lobby/2026-12-07/lobby-1.jpg", crop_rel("lobby"))
    b = room.as_("opB")
    status, body = room.asgi("GET", f"/api/sightings/crops/{probe}", cookie=b.cookie())
    assert 400 <= status < 500, (probe, status)
    assert MARK["lobby"] not in body and b"Traceback" not in body
    # a crop path that leaves the sightings folder for the snapshots is refused too
    status, body = room.asgi("GET", "/api/sightings/crops/square/../../snapshots/" + room.snap["square"],
                             cookie=b.cookie())
    assert 400 <= status < 500 and b"CELL-B-EVIDENCE" not in body


def test_clip_and_case_answer_another_cells_sighting_as_unknown(room: Room) -> None:
    for who, sees in SEES.items():
        c = room.as_(who)
        for cam in ("lobby", "square"):
            sid = SID[cam]
            clip = c.call("GET", f"/api/sightings/{sid}/clip")
            video = c.call("GET", f"/api/sightings/{sid}/video.mp4")
            add = c.call("POST", f"/api/sightings/{sid}/case", {"name": f"K-{who}"})
            if cam in sees:  # nothing recorded in the security room: the clip says so; the case takes it
                assert clip.status_code == 404 and clip.json()["detail"]["code"] == "no_recording", clip.text
                assert add.status_code == 200 and sid in add.json()["sightings"], add.text
            else:
                unknown = c.call("GET", "/api/sightings/no-such-sighting/clip")
                assert clip.status_code == 404 and clip.json() == unknown.json()
                assert video.status_code == 404
                assert add.status_code == 404 and add.json() == unknown.json()
    with room.engine.connect() as conn:
        got = {r.created_by: json.loads(r.sightings) for r in conn.execute(select(cases))}
    assert got == {"opA": [SID["lobby"]], "opB": [SID["square"]], "eng": sorted(SID.values()),
                   "boss": sorted(SID.values())}
    # the case lists them; an operator of G2 does not see opA's case in any list
    mine = room.as_("opA").call("GET", "/api/cases").json()
    assert [(c["name"], c["sightings"]) for c in mine] == [("K-opA", [SID["lobby"]])]
    assert all(c["created_by"] == "opB" for c in room.as_("opB").call("GET", "/api/cases").json())
    adds = [r for r in room.audit_rows() if r["action"] == "case_add_sighting"]
    assert len(adds) == 6 and {r["username"] for r in adds} == set(SEES)


def test_search_results_carry_crop_urls_and_are_audited(room: Room) -> None:
    c = room.as_("opA")
    res = c.call("GET", "/api/sightings?colour=红&label=car").json()
    assert [s["sighting_id"] for s in res["sightings"]] == [SID["lobby"]]
    assert res["sightings"][0]["crop_url"] == f"/api/sightings/crops/{crop_rel('lobby')}"
    assert room.as_("opA").c.get(res["sightings"][0]["crop_url"]).content.count(MARK["lobby"]) == 1
    searches = [r for r in room.audit_rows() if r["action"] == "sightings_search"]
    assert searches and json.loads(searches[-1]["data"])["colour"] == "红"
    for page in ("/search", "/search/clip?id=x&t=1"):
        r = c.call("GET", page)
        assert r.status_code == 200 and "search.js" in r.text
