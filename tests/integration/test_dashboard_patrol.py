"""Video patrol through the API on SQLite and a real PostgreSQL, with a real Redis bus: plans, a patrol of four
cameras with their marks and time on screen, a finding that raises a manual alarm another operator of the cell
handles to the end, a phone report with no camera, faults, reports, and the grid-cell scopes."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dashboard.app import create_app
from dashboard.users import from_row, get_user
from history import patrol as svc
from history.archiver import store
from history.schema import actions, camera_events, camera_faults
from pipeline.publish import bus
from pipeline.publish.status import CameraStatus
from pipeline.record.segments import SegmentWriter
from tests.support.dashboard import (
    PASSWORD,
    TWO_CELLS_YAML,
    LoggedIn,
    alert_msg,
    config_on_backend,
    open_with_users,
    postgres_url,  # noqa: F401  (fixture)
)
from tests.support.media import make_clip
from tests.support.record import T0, feed_file
from tests.support.waits import wait_for

PW = PASSWORD
CONFIG = TWO_CELLS_YAML + """\
  lobby: {{name: Lobby camera, source: "rtsp://127.0.0.1:9/lobby", grid_cell: G1}}
  gate: {{name: School gate, source: "rtsp://127.0.0.1:9/gate", grid_cell: G1}}
  yard: {{name: Yard, source: "rtsp://127.0.0.1:9/yard", grid_cell: G1}}
  door: {{name: Back door, source: "rtsp://127.0.0.1:9/door", grid_cell: G1}}
  square: {{name: Station square, source: "rtsp://127.0.0.1:9/square", grid_cell: G2}}
"""


class Op(LoggedIn):
    """A logged-in user's client with the CSRF token at hand."""

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        r = self.c.request(method, path, json=body, headers={"X-CSRF-Token": self.csrf})
        return r.status_code, r.json()

    def ok(self, method: str, path: str, body: object = None) -> Any:
        code, out = self.call(method, path, body)
        assert code == 200, (path, out)
        return out

    def code(self, method: str, path: str, body: object = None) -> tuple[int, str]:
        code, out = self.call(method, path, body)
        detail = out.get("detail") if isinstance(out, dict) else None
        return code, detail.get("code", "") if isinstance(detail, dict) else "validation"

    def raw(self, method: str, path: str, text: str) -> int:
        """A body as sent (NaN and Infinity are JSON to Python's parser, not to the test client's encoder)."""
        r = self.c.request(method, path, content=text, headers={"X-CSRF-Token": self.csrf,
                                                               "Content-Type": "application/json"})
        return r.status_code

    def act(self, alert_id: str, action: str, **kw: object) -> dict[str, Any]:
        return self.ok("POST", f"/api/alerts/{alert_id}/actions", {"action": action, **kw})["alert"]  # type: ignore


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    cfg, prefix = config_on_backend(request, tmp_path, "pt", CONFIG)
    engine = open_with_users(cfg, "eng engineer G1 Chief Engineer", "wang operator G1 Wang Wei",
                             "zhao operator G1 Zhao Lei", "li operator G2 Li Na")
    app = create_app(cfg, redis_url, engine)
    r = bus.connect(redis_url)
    yield {"app": app, "engine": engine, "cfg": cfg, "r": r, "keys": bus.BusKeys(prefix)}
    engine.dispose()


def jpeg_b64() -> str:
    img = np.full((90, 160, 3), 60, np.uint8)
    cv2.rectangle(img, (40, 20), (90, 70), (0, 0, 255), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


PLAN = {"name": "Night round G1", "description": "school, yard and doors",
        "cameras": [{"camera": "lobby", "dwell_s": 2}, {"camera": "gate", "dwell_s": 2},
                    {"camera": "yard", "dwell_s": 2}, {"camera": "door", "dwell_s": 2}],
        "schedule": {"every_min": 120, "start": "22:00", "end": "06:00", "grace_min": 15}}


def test_plans_are_edited_by_engineers_within_their_cells(env: dict[str, Any]) -> None:
    eng, wang, li = Op(env["app"], "eng"), Op(env["app"], "wang"), Op(env["app"], "li")
    assert wang.code("POST", "/api/patrol/plans", PLAN) == (403, "forbidden_role")
    plan = eng.ok("POST", "/api/patrol/plans", PLAN)
    assert [c["camera"] for c in plan["cameras"]] == ["lobby", "gate", "yard", "door"]
    assert plan["grid_cells"] == ["G1"] and plan["schedule"]["every_min"] == 120
    # a camera of another cell is as unknown as a camera that does not exist
    assert eng.code("POST", "/api/patrol/plans", dict(PLAN, name="x", cameras=[{"camera": "square"}])) == \
        (404, "not_found")
    assert eng.code("POST", "/api/patrol/plans", dict(PLAN, name="y", cameras=[{"camera": "nope"}])) == \
        (404, "not_found")
    assert eng.code("POST", "/api/patrol/plans", PLAN) == (409, "name_taken")
    # bounds: finite dwell within an hour, bounded text, a real time of day, no unknown keys
    for bad in (dict(PLAN, name="b1", cameras=[{"camera": "lobby", "dwell_s": 1e9}]),
                dict(PLAN, name="b2", cameras=[{"camera": "lobby", "dwell_s": 0}]),
                dict(PLAN, name="x" * 121),
                dict(PLAN, name="b3", schedule={"every_min": 60, "start": "25:00"}),
                dict(PLAN, name="b4", extra=1)):
        assert eng.code("POST", "/api/patrol/plans", bad)[0] == 422, bad
    assert eng.raw("POST", "/api/patrol/plans", json.dumps(dict(PLAN, name="nan", cameras=[
        {"camera": "lobby", "dwell_s": float("nan")}]))) == 422
    # the operator of G1 sees and runs it; the operator of G2 does not even see it
    assert [p["name"] for p in wang.ok("GET", "/api/patrol/plans")["plans"]] == ["Night round G1"]
    assert li.ok("GET", "/api/patrol/plans")["plans"] == []
    assert li.code("GET", f"/api/patrol/plans/{plan['id']}") == (404, "not_found")
    assert li.code("POST", f"/api/patrol/plans/{plan['id']}/start", {"layout": 4}) == (404, "not_found")
    # edit with the version seen (a stale one is refused), then delete
    upd = eng.ok("PUT", f"/api/patrol/plans/{plan['id']}",
                 dict(PLAN, cameras=PLAN["cameras"][:2], version=plan["version"]))
    assert len(upd["cameras"]) == 2
    assert eng.code("PUT", f"/api/patrol/plans/{plan['id']}", dict(PLAN, version=plan["version"])) == \
        (409, "stale")
    assert wang.code("DELETE", f"/api/patrol/plans/{plan['id']}") == (403, "forbidden_role")
    eng.ok("DELETE", f"/api/patrol/plans/{plan['id']}")
    assert wang.ok("GET", "/api/patrol/plans")["plans"] == []
    with env["engine"].connect() as conn:
        done = [r.action for r in conn.execute(select(actions.c.action).where(actions.c.action.like("patrol_plan%")))]
    assert done == ["patrol_plan_create", "patrol_plan_update", "patrol_plan_delete"]


def test_patrol_of_four_cameras_with_a_finding_handled_by_another_operator(env: dict[str, Any]) -> None:
    app, r, keys = env["app"], env["r"], env["keys"]
    eng, wang, zhao, li = (Op(app, n) for n in ("eng", "wang", "zhao", "li"))
    plan = eng.ok("POST", "/api/patrol/plans", PLAN)
    p = wang.ok("POST", f"/api/patrol/plans/{plan['id']}/start", {"layout": 4})
    pid = p["id"]
    assert p["state"] == "running" and p["planned_count"] == 4 and p["not_patrolled"] == [
        "lobby", "gate", "yard", "door"]
    # the door camera's worker says it has had no picture for 100 s: the tour shows it offline and skips it
    lost = time.time() - 100
    bus.set_camera_status(r, keys, CameraStatus("door", state="backoff", since=lost, last_frame_time=lost))
    for cam, secs, offline in (("lobby", 2.1, False), ("gate", 1.2, False), ("gate", 0.9, False),
                               ("yard", 0.8, False), ("door", 0.4, True)):
        wang.ok("POST", f"/api/patrols/{pid}/views", {"camera": cam, "on_screen_s": secs, "offline": offline})
    wang.ok("POST", f"/api/patrols/{pid}/marks", {"camera": "lobby", "mark": "normal"})
    assert wang.code("POST", f"/api/patrols/{pid}/marks", {"camera": "yard", "mark": "fault"}) == \
        (400, "fault_kind_required")
    wang.ok("POST", f"/api/patrols/{pid}/marks", {"camera": "yard", "mark": "fault", "fault_kind": "blurred"})
    assert wang.code("POST", f"/api/patrols/{pid}/marks", {"camera": "gate", "mark": "finding", "note": " "}) == \
        (400, "note_required")
    assert wang.code("POST", f"/api/patrols/{pid}/marks", {"camera": "square", "mark": "normal"}) == \
        (400, "not_in_plan")
    # scopes: another cell's operator does not see the patrol; a colleague of the cell cannot write to it
    assert li.code("GET", f"/api/patrols/{pid}") == (404, "not_found")
    assert li.code("POST", f"/api/patrols/{pid}/views", {"camera": "lobby", "on_screen_s": 1}) == (404, "not_found")
    assert zhao.code("POST", f"/api/patrols/{pid}/marks", {"camera": "lobby", "mark": "normal"}) == \
        (403, "not_your_patrol")
    assert wang.code("POST", "/api/patrols/nope/views", {"camera": "lobby", "on_screen_s": 1}) == (404, "not_found")
    assert wang.code("POST", f"/api/patrols/{pid}/views", {"camera": "lobby", "on_screen_s": -1})[0] == 422

    # 发现情况 on the gate camera: a note and the live frame raise a manual alarm
    t0 = time.time()
    out = wang.ok("POST", f"/api/patrols/{pid}/marks", {"camera": "gate", "mark": "finding",
                                                        "note": "two men forcing the school gate",
                                                        "snapshot": jpeg_b64()})
    aid = out["alert_id"]
    assert out["pushed"] is True
    # on the bus as workers publish alerts: every room and the archiver get it
    on_bus = [m for _, m in bus.latest_events(r, keys, 20) if m.get("alert_id") == aid]
    assert len(on_bus) == 1 and on_bus[0]["rule"]["kind"] == "patrol_finding"
    assert on_bus[0]["camera"]["id"] == "gate" and on_bus[0]["grid_cell"]["officer"]["name"] == "Wang Wei"
    # another operator of the cell has it in the room's list; the other cell's operator does not
    listed = {a["alert_id"]: a for a in zhao.ok("GET", "/api/alerts")["alerts"]}
    assert listed[aid]["state"] == "new" and listed[aid]["rule"]["kind"] == "patrol_finding"
    assert listed[aid]["start_time"] == pytest.approx(t0, abs=5)
    assert aid not in {a["alert_id"] for a in li.ok("GET", "/api/alerts")["alerts"]}
    assert li.code("GET", f"/api/alerts/{aid}") == (404, "not_found")
    snap = listed[aid]["snapshot"]["path"]
    assert snap.startswith("snapshots/gate/")
    img = zhao.c.get("/" + snap)
    assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
    assert li.c.get("/" + snap).status_code == 404
    # ... and takes it through the whole workflow
    assert zhao.act(aid, "acknowledge")["owner"]["name"] == "Zhao Lei"
    assert zhao.act(aid, "dispatch")["state"] == "dispatched"
    for step in ("signed_for", "on_scene", "feedback"):
        zhao.act(aid, step)
    closed = zhao.act(aid, "close", classification="genuine", note="gate secured, two detained")
    assert closed["state"] == "resolved" and closed["classification"] == "genuine"
    timeline = [a["action"] for a in zhao.ok("GET", f"/api/alerts/{aid}")["timeline"]]
    assert timeline[:2] == ["manual_alarm", "patrol_mark"] and timeline[-1] == "close"
    alarm = zhao.ok("GET", f"/api/alarms/{aid}")
    assert alarm["source"] == "patrol" and alarm["state"] == "resolved" and alarm["camera"] == "gate"

    # the patrol log: all four cameras in plan order, marks and time on screen; short or dark ones not patrolled
    log = wang.ok("POST", f"/api/patrols/{pid}/finish")
    assert log["state"] == "finished"
    rows = {c["camera"]: c for c in log["cameras"]}
    assert [c["camera"] for c in log["cameras"]] == ["lobby", "gate", "yard", "door"]
    assert rows["lobby"]["mark"] == "normal" and rows["lobby"]["on_screen_s"] == pytest.approx(2.1)
    assert rows["gate"]["mark"] == "finding" and rows["gate"]["on_screen_s"] == pytest.approx(2.1)
    assert rows["gate"]["alert_id"] == aid and rows["gate"]["note"] == "two men forcing the school gate"
    assert rows["yard"]["mark"] == "fault" and rows["yard"]["fault_kind"] == "blurred"
    assert rows["door"]["offline"] is True
    assert log["not_patrolled"] == ["yard", "door"] and log["coverage"] == 50.0
    assert wang.code("POST", f"/api/patrols/{pid}/views", {"camera": "lobby", "on_screen_s": 1}) == \
        (409, "patrol_finished")
    assert zhao.ok("GET", f"/api/patrols/{pid}")["patrolled_count"] == 2  # a colleague of the cell may read it

    # faults: the one marked and the one the tour found dark, since the camera's last frame
    faults = {f["camera"]: f for f in wang.ok("GET", "/api/patrol/faults")["faults"]}
    assert faults["yard"]["kind"] == "blurred" and faults["yard"]["source"] == "patrol"
    assert faults["door"]["kind"] == "no_picture" and faults["door"]["source"] == "tour"
    assert faults["door"]["since"] == pytest.approx(lost, abs=0.01)
    assert li.ok("GET", "/api/patrol/faults")["faults"] == []
    # the offline check: a camera the workers have reported without a picture for longer than the threshold
    gone = time.time() - env["cfg"].dashboard.fault_after_s - 60
    bus.set_camera_status(r, keys, CameraStatus("lobby", state="backoff", since=gone, last_frame_time=gone))
    checked = {f["camera"]: f for f in wang.ok("GET", "/api/patrol/faults")["faults"] if f["kind"] == "offline"}
    assert checked["lobby"]["source"] == "check" and checked["lobby"]["reported_by"] == "offline_check"
    assert checked["lobby"]["since"] == pytest.approx(gone, abs=0.01)
    assert "door" not in checked  # offline for 100 s only: under the threshold
    assert len([f for f in wang.ok("GET", "/api/patrol/faults")["faults"] if f["kind"] == "offline"]) == 1
    fid = faults["yard"]["id"]
    assert li.code("POST", f"/api/patrol/faults/{fid}/repair", {"step": "requested"}) == (404, "not_found")
    assert wang.ok("POST", f"/api/patrol/faults/{fid}/repair", {"step": "requested"})["state"] == "repair_requested"
    assert wang.code("POST", f"/api/patrol/faults/{fid}/repair", {"step": "done"}) == (403, "forbidden_role")
    assert eng.ok("POST", f"/api/patrol/faults/{fid}/repair", {"step": "done"})["state"] == "repaired"
    assert "yard" not in {f["camera"] for f in wang.ok("GET", "/api/patrol/faults")["faults"]}

    # the shift report per operator
    rep = eng.ok("GET", "/api/patrol/report")
    w = {o["username"]: o for o in rep["operators"]}["wang"]
    assert (w["patrols"], w["planned"], w["patrolled"], w["coverage"]) == (1, 4, 2, 50.0)
    assert w["findings"] == 1 and w["faults"] == 2 and w["plans"] == ["Night round G1"]
    assert w["alarms"][0]["alert_id"] == aid and w["outcomes"] == {"genuine": 1}
    assert rep["availability"]["door"] < 100.0
    assert li.ok("GET", "/api/patrol/report")["operators"] == []


def test_phone_report_without_a_camera_is_dispatched_closed_and_gets_cameras_later(env: dict[str, Any]) -> None:
    wang, zhao, li = (Op(env["app"], n) for n in ("wang", "zhao", "li"))
    body = {"grid_cell": "G1", "caller": "Ms Chen", "phone": "139 0000 1234",
            "report": "a man climbing into a ground-floor window on Xinhua Street", "point": [120.5, 80]}
    assert li.code("POST", "/api/alarms/phone", body) == (404, "not_found")  # not li's cell
    assert wang.code("POST", "/api/alarms/phone", dict(body, phone="call me"))[0] == 422
    assert wang.code("POST", "/api/alarms/phone", dict(body, report="x" * 2001))[0] == 422
    out = wang.ok("POST", "/api/alarms/phone", body)
    aid = out["alert_id"]
    listed = {a["alert_id"]: a for a in zhao.ok("GET", "/api/alerts")["alerts"]}
    assert listed[aid]["rule"]["kind"] == "phone_report" and listed[aid]["camera"]["id"] == ""
    assert listed[aid]["grid_cell"]["officer"]["phone"] == "13800000001"
    wang.act(aid, "acknowledge")
    assert wang.act(aid, "dispatch")["dispatch"]["step"] == "sent"
    assert wang.act(aid, "close", classification="genuine", note="officer found a locked-out tenant")["state"] == \
        "resolved"
    # cameras and a range found afterwards: only the user's cameras, a real range
    t1 = time.time()
    span = {"cameras": ["lobby", "gate"], "start": t1 - 600, "end": t1 - 300}
    assert wang.code("POST", f"/api/alarms/{aid}/attach", dict(span, cameras=["square"])) == (404, "not_found")
    assert wang.code("POST", f"/api/alarms/{aid}/attach", dict(span, end=t1 - 900)) == (400, "bad_range")
    assert wang.raw("POST", f"/api/alarms/{aid}/attach", json.dumps(dict(span, start=float("inf")))) == 422
    assert li.code("POST", f"/api/alarms/{aid}/attach", span) == (404, "not_found")
    alarm = zhao.ok("POST", f"/api/alarms/{aid}/attach", span)
    assert alarm["cameras"] == ["lobby", "gate"] and alarm["range_end"] == pytest.approx(t1 - 300)
    assert alarm["caller"] == "Ms Chen" and alarm["source"] == "phone" and alarm["state"] == "resolved"
    assert alarm["point"] == [120.5, 80]


def test_cameras_offline_or_tampered_past_the_configured_threshold_go_on_the_fault_list_unasked(
        env: dict[str, Any]) -> None:
    """The threshold is ``dashboard.fault_after_s``; the dashboard checks by itself (no page has to read the list),
    and a tamper alert that has held that long lists its camera too, with the check and the tamper kinds."""
    cfg, engine, r, keys = env["cfg"], env["engine"], env["r"], env["keys"]
    assert cfg.dashboard.fault_after_s == 300.0  # the default
    cfg60 = cfg.model_copy(update={"dashboard": cfg.dashboard.model_copy(update={"fault_after_s": 60.0})})
    now = time.time()

    def tamper(alert_id: str, camera: str, kind: str, start: float, phase: str = "new") -> None:
        msg = alert_msg(alert_id, phase=phase, t=now if phase == "end" else start, camera=camera, kind="tamper",
                        start=start)
        msg["rule"] = {"id": f"tamper:{kind}", "kind": "tamper", "severity": "high"}
        with engine.begin() as conn:
            store(conn, None, msg)

    tamper("t-moved", "lobby", "moved", now - 400)  # held 400 s: over both thresholds
    tamper("t-dark", "lobby", "dark", now - 200)  # the same camera: its open fault stays the one
    tamper("t-blur", "gate", "blur", now - 120)  # 120 s: over 60, under 300
    tamper("t-over", "square", "covered", now - 900, phase="end")  # ended: the picture is normal again
    with engine.begin() as conn:
        assert svc.check_faults(conn, cfg, {"yard": now - 120}, now) == 1  # lobby only: 300 s threshold
        assert svc.check_faults(conn, cfg60, {"yard": now - 120}, now) == 2  # then gate, and yard offline
        assert svc.check_faults(conn, cfg60, {"yard": now - 120}, now) == 0  # each listed once
    wang = Op(env["app"], "wang")
    faults = {(f["camera"], f["kind"]): f for f in wang.ok("GET", "/api/patrol/faults")["faults"]}
    assert set(faults) == {("lobby", "tampered"), ("gate", "tampered"), ("yard", "offline")}
    lobby = faults["lobby", "tampered"]
    assert lobby["since"] == pytest.approx(now - 400, abs=0.01) and lobby["source"] == "check"
    assert lobby["check"] == "tamper_check" and lobby["note"] == "moved"  # dark: 200 s, under 300 when listed
    assert faults["yard", "offline"]["check"] == "offline_check"
    assert wang.ok("GET", "/api/patrol/faults")["offline_after_s"] == 300.0

    # no page reads the list: the dashboard's own check (every 30 s, the first a second after it starts)
    gone = time.time() - 400
    bus.set_camera_status(r, keys, CameraStatus("door", state="backoff", since=gone, last_frame_time=gone))

    def door_listed() -> bool:
        with engine.connect() as conn:
            return conn.execute(select(camera_faults.c.id).where(camera_faults.c.camera_id == "door",
                                                                 camera_faults.c.kind == "offline")).first() is not None
    with TestClient(env["app"]):  # runs the app's lifespan (its background checks)
        wait_for(door_listed, 20, lambda: "door not on the fault list")


def test_report_shows_each_cameras_availability_per_day(env: dict[str, Any]) -> None:
    """Availability per camera per local day: the share of the day it was neither on the fault list (until
    repaired) nor offline (the workers' camera events); overlapping causes count once; only the user's cells."""
    cfg, engine = env["cfg"], env["engine"]
    tz = cfg.tzinfo()
    day0 = dt.datetime.combine(dt.datetime.now(tz).date() - dt.timedelta(days=3), dt.time(), tzinfo=tz).timestamp()
    h = 3600.0

    def event(camera: str, phase: str, t: float) -> None:
        cam = cfg.cameras[camera]
        with engine.begin() as conn:
            conn.execute(camera_events.insert().values(dedupe_key=f"{camera}|{phase}|{t}", camera_id=camera,
                                                       camera_name=cam.name, grid_cell_id=cam.grid_cell,
                                                       phase=phase, time=t, state="backoff"))

    def fault(camera: str, kind: str, since: float, repaired: float | None) -> None:
        with engine.begin() as conn:
            f = svc.add_fault(conn, cfg, camera, kind, since, "patrol", "wang")
            if repaired is not None:
                conn.execute(camera_faults.update().where(camera_faults.c.id == f["id"])
                             .values(state="repaired", repaired_at=repaired, repaired_by="eng"))

    event("gate", "offline", day0 + 6 * h)  # 3 h offline on the first day
    event("gate", "online", day0 + 9 * h)
    fault("yard", "dark", day0 + 20 * h, day0 + 30 * h)  # 4 h on the first day, 6 h on the second
    event("lobby", "offline", day0 - h)  # offline since before the range, back at 01:30 ...
    event("lobby", "online", day0 + 1.5 * h)
    fault("lobby", "blurred", day0 + h, day0 + 2 * h)  # ... and a fault overlapping it: 2 h down, not 2.5
    event("door", "offline", day0 + 47 * h)  # the last hour of the second day, still offline
    event("square", "offline", day0 + 2 * h)  # G2: not wang's
    wang, li = Op(env["app"], "wang"), Op(env["app"], "li")
    rep = wang.ok("GET", f"/api/patrol/report?start={day0}&end={day0 + 48 * h}")
    av = rep["availability_by_day"]
    first = dt.datetime.fromtimestamp(day0, tz).date()
    assert av["days"] == [first.isoformat(), (first + dt.timedelta(days=1)).isoformat()]
    got = {c["camera"]: [d["available"] for d in c["days"]] for c in av["cameras"]}
    assert set(got) == {"lobby", "gate", "yard", "door"}
    assert got["gate"] == [pytest.approx(1 - 3 / 24, abs=1e-4), 1.0]
    assert got["yard"] == [pytest.approx(1 - 4 / 24, abs=1e-4), pytest.approx(1 - 6 / 24, abs=1e-4)]
    assert got["lobby"] == [pytest.approx(1 - 2 / 24, abs=1e-4), 1.0]
    assert got["door"] == [1.0, pytest.approx(1 - 1 / 24, abs=1e-4)]
    yard = next(c for c in av["cameras"] if c["camera"] == "yard")
    assert yard["days"][1]["down_s"] == pytest.approx(6 * h) and yard["days"][1]["seconds"] == pytest.approx(24 * h)
    assert rep["availability"]["yard"] == pytest.approx(100 * (1 - 10 / 48), abs=0.1)
    li_av = li.ok("GET", f"/api/patrol/report?start={day0}&end={day0 + 48 * h}")["availability_by_day"]
    assert [(c["camera"], [d["available"] for d in c["days"]]) for c in li_av["cameras"]] == \
        [("square", [pytest.approx(1 - 22 / 24, abs=1e-4), 0.0])]
    # today counts up to now: a range ending later than now is not padded with available time
    today = wang.ok("GET", f"/api/patrol/report?start={time.time() - 600}&end={time.time() + 3000}")
    assert all(d["seconds"] <= 601 for c in today["availability_by_day"]["cameras"] for d in c["days"])


@pytest.fixture(scope="module")
def clip20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip20.mp4", 20, picture="texture", tune=None)


def test_phone_report_goes_through_the_workflow_and_its_attached_cameras_export_as_evidence(
        env: dict[str, Any], clip20: Path) -> None:
    """A phone report (no camera) is dispatched, worked through and closed; cameras and a recorded range found
    afterwards are attached, and the alarm's export (the page's Export button) holds them, named in the manifest."""
    cfg = env["cfg"]
    for camera in ("lobby", "gate"):  # 20 s of recordings each, from T0 on (simulated clock)
        writer = SegmentWriter(camera, cfg.data_path() / cfg.recordings.dir, segment_s=10)
        feed_file(writer, clip20)
        writer.close()
    wang, zhao, li = (Op(env["app"], n) for n in ("wang", "zhao", "li"))
    aid = wang.ok("POST", "/api/alarms/phone", {"grid_cell": "G1", "caller": "Mr Sun", "phone": "13911112222",
                                                "report": "two people fighting at the school gate"})["alert_id"]
    assert wang.code("POST", "/api/exports", {"alert_id": aid}) == (400, "no_camera"), "nothing attached yet"
    zhao.act(aid, "acknowledge")
    assert zhao.act(aid, "dispatch")["dispatch"]["step"] == "sent"
    for step in ("signed_for", "on_scene", "feedback"):
        assert zhao.act(aid, step)["dispatch"]["step"] == step
    closed = zhao.act(aid, "close", classification="genuine", note="two youths separated, no injuries")
    assert closed["state"] == "resolved" and closed["classification"] == "genuine"
    alarm = wang.ok("POST", f"/api/alarms/{aid}/attach", {"cameras": ["lobby", "gate"], "start": T0 + 3,
                                                           "end": T0 + 14})
    assert (alarm["state"], alarm["cameras"]) == ("resolved", ["lobby", "gate"])
    assert li.code("POST", "/api/exports", {"alert_id": aid}) == (404, "not_found"), "another cell's alarm"
    r = wang.c.post("/api/exports", json={"alert_id": aid}, headers={"X-CSRF-Token": wang.csrf})
    assert r.status_code == 202, r.text
    job = r.json()
    url = f"/api/exports/{job['id']}"
    wait_for(lambda: wang.c.get(url).json()["state"] in ("done", "failed"), 60, lambda: str(wang.c.get(url).json()))
    done = wang.c.get(url).json()
    assert done["state"] == "done", done
    assert done["alert_id"] == aid and done["cameras"] == ["lobby", "gate"]
    assert (done["start"], done["end"]) == (pytest.approx(T0 + 3), pytest.approx(T0 + 14))
    assert {f["name"] for f in done["files"]} >= {"lobby.mp4", "gate.mp4", "manifest.json"}
    manifest = json.loads(wang.c.get(done["file_urls"]["manifest.json"]).content)
    assert manifest["alert"]["alert_id"] == aid and manifest["alert"]["rule"] == "phone_report"
    assert [c["id"] for c in manifest["cameras"]] == ["lobby", "gate"]
    assert manifest["requested"]["start"]["epoch"] == pytest.approx(T0 + 3)
    assert manifest["requested"]["end"]["epoch"] == pytest.approx(T0 + 14)


def test_supervisor_view_shows_due_running_and_overdue_plans(env: dict[str, Any]) -> None:
    eng, wang = Op(env["app"], "eng"), Op(env["app"], "wang")
    every5 = eng.ok("POST", "/api/patrol/plans", dict(PLAN, name="Every 5 min", schedule={
        "every_min": 5, "start": "00:00", "end": "00:00", "grace_min": 0}))
    eng.ok("POST", "/api/patrol/plans", dict(PLAN, name="No schedule", schedule=None))
    sup = eng.ok("GET", "/api/patrol/supervisor")
    assert [o["name"] for o in sup["overdue"] + sup["due"]] == ["Every 5 min"]
    p = wang.ok("POST", f"/api/patrol/plans/{every5['id']}/start", {"layout": 1})
    sup = eng.ok("GET", "/api/patrol/supervisor")
    assert sup["overdue"] == [] and sup["due"] == []
    assert [x["id"] for x in sup["running"]] == [p["id"]]
    # the schedule itself, at chosen times in the config's zone (Asia/Shanghai): a night window across midnight
    cfg = env["cfg"]
    night = {"every_min": 120, "start": "22:00", "end": "06:00", "grace_min": 15}
    tz = cfg.tzinfo()
    at = dt.datetime(2026, 12, 7, 3, 10, tzinfo=tz).timestamp()
    assert svc.last_slot(night, at, tz) == dt.datetime(2026, 12, 7, 2, 0, tzinfo=tz).timestamp()
    at = dt.datetime(2026, 12, 7, 12, 0, tzinfo=tz).timestamp()  # after the window: its last slot (04:00)
    assert svc.last_slot(night, at, tz) == dt.datetime(2026, 12, 7, 4, 0, tzinfo=tz).timestamp()
    boss = from_row(get_user(env["engine"].connect(), "eng"))
    at = dt.datetime(2030, 12, 7, 22, 7, tzinfo=tz).timestamp()  # slot 22:05, two minutes late, grace 0
    with env["engine"].connect() as conn:
        view = svc.supervisor_view(conn, cfg, boss, now=at)
    assert [o["name"] for o in view["overdue"]] == ["Every 5 min"] and view["due"] == []
    assert view["overdue"][0]["late_s"] == pytest.approx(120, abs=1)
