"""Exports from the dashboard's API (page exports, cases, timeline): real recordings (segments written by the
SegmentWriter from a generated H.264 clip), a real Redis bus, SQLite and PostgreSQL history, the app in a
TestClient.

Checks the scopes (a G2 operator can neither export nor download nor see a G1 camera's export, no
session gets 401), the alert export with its clip range and release, cases, a range with nothing
recorded (clear 422), names that would leave the export folder (400 / 404), the timeline and the
protected-storage figure.  Every ZIP that comes back is checked with ``pipeline.export.verify``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dashboard.app import create_app
from dashboard.users import add_user
from history import open_database
from history.schema import actions
from pipeline.export import holds
from pipeline.export.verify import verify
from pipeline.publish import bus
from pipeline.record.segments import SegmentWriter
from tests.support.dashboard import (
    LoggedIn,
    alert_msg,
    config_on_backend,
    fresh_pg_database,
    postgres_url,  # noqa: F401  (fixture)
    recorded_alert_msg,
)
from tests.support.media import make_clip
from tests.support.record import T0, feed_file
from tests.support.waits import wait_for

PW = "correct horse battery"  # tests.support.dashboard.PASSWORD, which LoggedIn uses


@pytest.fixture(scope="module")
def clip30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip30.mp4", 30, picture="texture", tune=None)


def record(recordings: Path, camera: str, clip: Path) -> None:
    """30 s of ``clip`` as three 10 s segments of ``camera``, from T0 on (simulated clock)."""
    writer = SegmentWriter(camera, recordings, segment_s=10)
    feed_file(writer, clip)
    writer.close()


class Op(LoggedIn):
    """A logged-in user's client with the CSRF token at hand."""

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.c.post(path, json=body or {}, headers=self.h)

    def export(self, **body: Any) -> dict[str, Any]:
        r = self.post("/api/exports", body)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] == "queued" and job["progress"] == 0
        url = f"/api/exports/{job['id']}"
        wait_for(lambda: self.c.get(url).json()["state"] in ("done", "failed"), 60,
                 lambda: f"export {url}: {self.c.get(url).json()}")
        done = self.c.get(url).json()
        assert done["state"] == "done", done
        return done  # type: ignore[no-any-return]

    def code(self, r: Any) -> str:
        return r.json()["detail"]["code"]  # type: ignore[no-any-return]


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, clip30: Path) -> Iterator[dict[str, Any]]:
    cfg, prefix = config_on_backend(request, tmp_path, "ex")
    rec = cfg.data_path() / cfg.recordings.dir
    record(rec, "lobby", clip30)  # G1
    record(rec, "square", clip30)  # G2
    engine = open_database(cfg)
    add_user(engine, "wang", PW, "operator", ["G1"], "Wang Wei")
    add_user(engine, "li", PW, "operator", ["G2"], "Li Na")
    add_user(engine, "boss", PW, "admin", ["*"], "Chief Chen")
    app = create_app(cfg, redis_url, engine)
    r = bus.connect(redis_url)
    keys = bus.BusKeys(prefix)
    yield {"app": app, "cfg": cfg, "engine": engine, "data": cfg.data_path(),
           "publish": lambda m: bus.publish_event(r, keys, m, 10_000), "tmp": tmp_path, "r": r, "keys": keys}
    engine.dispose()


def audit_actions(engine: Any) -> list[tuple[str, str | None, dict[str, Any] | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(actions.c.action, actions.c.username, actions.c.data).order_by(actions.c.id))
        return [(a, u, json.loads(d) if d else None) for a, u, d in rows if a.startswith(("export", "case"))]


def test_range_export_downloads_a_verified_zip_within_the_users_cells_only(env: dict[str, Any]) -> None:
    wang, li, boss = Op(env["app"], "wang"), Op(env["app"], "li"), Op(env["app"], "boss")
    anon = TestClient(env["app"])
    assert anon.post("/api/exports", json={"cameras": ["lobby"], "start": T0, "end": T0 + 10}).status_code == 401
    # a G2 operator cannot export a G1 camera (answered as if it did not exist)
    r = li.post("/api/exports", {"cameras": ["lobby"], "start": T0 + 5, "end": T0 + 25})
    assert r.status_code == 404 and li.code(r) == "not_found"
    r = wang.post("/api/exports", {"cameras": ["lobby", "square"], "start": T0 + 5, "end": T0 + 25})
    assert r.status_code == 404, "one camera of another cell refuses the whole export"

    job = wang.export(cameras=["lobby"], start=T0 + 5, end=T0 + 25)
    assert job["progress"] == 1.0 and job["bytes_total"] > 0 and job["size_bytes"] > 0
    assert {f["name"] for f in job["files"]} == {"lobby.mp4", "manifest.txt", "manifest.json", "manifest.sig"}
    z = wang.c.get(job["download"])
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    out = env["tmp"] / "download.zip"
    out.write_bytes(z.content)
    report = verify(out)
    assert report.ok, report.problems
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read(f"{job['export_id']}/manifest.json"))
        video = zf.read(f"{job['export_id']}/lobby.mp4")
    assert manifest["exported_by"]["user"] == "Wang Wei (wang)" and manifest["exported_by"]["via"] == "dashboard"
    mp4 = wang.c.get(job["file_urls"]["lobby.mp4"])
    assert mp4.status_code == 200 and mp4.content == video and mp4.headers["content-type"] == "video/mp4"
    assert job["manifest_sha256"] == hashlib.sha256(
        zipfile.ZipFile(out).read(f"{job['export_id']}/manifest.json")).hexdigest()

    # the other cell sees nothing of it; no session gets 401
    for path in (f"/api/exports/{job['id']}", job["download"], job["file_urls"]["lobby.mp4"]):
        assert li.c.get(path).status_code == 404, path
        assert anon.get(path).status_code == 401, path
    assert [j["id"] for j in li.c.get("/api/exports").json()["exports"]] == []
    assert [j["id"] for j in wang.c.get("/api/exports").json()["exports"]] == [job["id"]]
    assert [j["id"] for j in boss.c.get("/api/exports").json()["exports"]] == [job["id"]]
    # names outside the export's own list are never served, however they are spelled
    for bad in ("..%2Fholds.json", "%2E%2E%2F%2E%2E%2Fstreams.yaml", "lobby.mp4%00", "x.mp4"):
        assert wang.c.get(f"/api/exports/{job['id']}/files/{bad}").status_code == 404, bad
    assert li.post(f"/api/exports/{job['id']}/release").status_code == 404
    # the pushed twin of the poll: server-sent progress events, ending once the job is done
    with wang.c.stream("GET", f"/api/exports/{job['id']}/events") as events:
        lines = [ln for ln in events.iter_lines() if ln.startswith("data: ")]
    assert [json.loads(ln[6:])["state"] for ln in lines] == ["done"]
    assert li.c.get(f"/api/exports/{job['id']}/events").status_code == 404

    done = [(a, u) for a, u, _ in audit_actions(env["engine"])]
    assert ("export_start", "wang") in done and ("export_done", "wang") in done
    assert done.count(("export_download", "wang")) == 2


def test_alert_export_keeps_its_recordings_until_released(env: dict[str, Any]) -> None:
    env["publish"](recorded_alert_msg("al-1"))
    wang, li = Op(env["app"], "wang"), Op(env["app"], "li")
    assert li.post("/api/exports", {"alert_id": "al-1"}).status_code == 404
    before = wang.c.get("/api/exports-storage").json()
    assert before["exports_bytes"] == 0
    job = wang.export(alert_id="al-1")
    assert job["alert_id"] == "al-1" and job["cameras"] == ["lobby"]
    assert job["start"] == pytest.approx(T0 + 3.0) and job["end"] == pytest.approx(T0 + 17.0)
    manifest = json.loads(wang.c.get(job["file_urls"]["manifest.json"]).content)
    assert manifest["alert"]["alert_id"] == "al-1"
    assert job["export_id"] in holds.all_holds(env["data"])
    held = wang.c.get("/api/exports-storage").json()
    assert held["exports_bytes"] > 0 and held["total_bytes"] >= held["exports_bytes"]
    assert held["export_files_bytes"] == job["size_bytes"]
    assert li.c.get("/api/exports-storage").json()["exports_bytes"] == 0, "G2 does not count G1's footage"
    tl = wang.c.get("/api/timeline", params={"camera": "lobby", "start": T0 - 30, "end": T0 + 60}).json()
    (cam,) = tl["cameras"]
    assert cam["ranges"] == [[pytest.approx(T0, abs=0.1), pytest.approx(T0 + 30, abs=0.1)]]
    assert cam["held"] and [a["alert_id"] for a in tl["alerts"]] == ["al-1"]
    assert any(g["start"] == pytest.approx(T0 + 30, abs=0.1) for g in cam["gaps"]), cam["gaps"]
    assert li.c.get("/api/timeline", params={"camera": "lobby", "start": T0, "end": T0 + 60}).status_code == 404
    every = wang.c.get("/api/timeline", params={"start": T0, "end": T0 + 60}).json()
    assert [c["id"] for c in every["cameras"]] == ["lobby", "gate"], "no camera named: all of the user's cells"
    assert every["cameras"][1]["ranges"] == [] and every["cameras"][1]["gaps"][0]["reason"] == "not recorded"
    for start, end in ((T0 + 60, T0), (T0, T0 + 8 * 86400), ("noon", T0)):
        assert wang.c.get("/api/timeline", params={"start": start, "end": end}).status_code == 400

    r = wang.post(f"/api/exports/{job['id']}/release")
    assert r.status_code == 200 and r.json()["state"] == "released" and r.json()["released_by"] == "wang"
    assert job["export_id"] not in holds.all_holds(env["data"])
    assert wang.c.get("/api/exports-storage").json()["exports_bytes"] == 0
    assert wang.post(f"/api/exports/{job['id']}/release").status_code == 409
    # an open alert keeps its clip range (from its pre-roll on, to now) from retention too
    env["publish"](alert_msg("al-open", phase="new", t=T0 + 25, camera="lobby", start=T0 + 25))
    st = wang.c.get("/api/exports-storage").json()
    assert st["open_alerts"] == 1 and st["segments"] == 1 and st["alerts_bytes"] == st["total_bytes"] > 0
    assert li.c.get("/api/exports-storage").json()["open_alerts"] == 0
    assert wang.c.get(job["download"]).status_code == 200, "released: unprotected, the files stay"
    log = audit_actions(env["engine"])
    assert ("export_release", "wang") in [(a, u) for a, u, _ in log]
    assert [d for a, _, d in log if a == "export_release"][0]["held"] is True


def test_nothing_recorded_bad_times_and_names_are_refused_clearly(env: dict[str, Any]) -> None:
    wang = Op(env["app"], "wang")
    r = wang.post("/api/exports", {"cameras": ["lobby", "gate"], "start": T0 + 1000, "end": T0 + 1100})
    assert r.status_code == 422 and wang.code(r) == "no_recording"
    msg = r.json()["detail"]["message"]
    assert msg.startswith("nothing is recorded between") and "lobby" in msg and "gate" in msg
    assert "+08:00" in msg, "times in the config's zone"
    for cams in (["../square"], ["lobby/../square"], ["/etc"], ["lobby\x00"], [".."]):
        r = wang.post("/api/exports", {"cameras": cams, "start": T0, "end": T0 + 10})
        assert r.status_code == 400 and wang.code(r) == "bad_name", (cams, r.text)
    for case in ("../../etc", "..", "a/b", " lead", ".hidden"):
        r = wang.post("/api/exports", {"cameras": ["lobby"], "start": T0, "end": T0 + 10, "case": case})
        assert r.status_code == 400 and wang.code(r) == "bad_name", (case, r.text)
        assert wang.post("/api/cases", {"name": case}).status_code == 400
    assert wang.c.get("/api/cases/..%2F..%2Fholds/download").status_code in (400, 404)
    for start, end, code in ((T0 + 20, T0 + 10, "bad_range"), ("yesterday", T0, "bad_time"),
                             (1e300, 1e301, "bad_time"), (T0, T0 + 30 * 86400, "range_too_long")):
        r = wang.post("/api/exports", {"cameras": ["lobby"], "start": start, "end": end})
        assert r.status_code == 400 and wang.code(r) == code, (start, end, r.text)
    # an ISO time without an offset is the config's zone (Asia/Shanghai), as on the command line
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + 8 * 3600 + 5))
    job = wang.export(cameras=["lobby"], start=iso, end=T0 + 9)
    assert job["start"] == pytest.approx(T0 + 5)
    assert not (env["data"] / "exports" / "etc").exists() and not (env["tmp"] / "etc").exists()


def test_cases_group_exports_and_download_as_one_verified_zip(env: dict[str, Any]) -> None:
    env["publish"](alert_msg("al-2", phase="end", t=T0 + 20, camera="lobby", start=T0 + 15))
    wang, li = Op(env["app"], "wang"), Op(env["app"], "li")
    case = "Case 7 新华街"
    r = wang.post("/api/cases", {"name": case, "description": "fence climbed", "alerts": ["al-2"]})
    assert r.status_code == 200 and r.json()["alerts"] == ["al-2"] and r.json()["download"] is None
    assert li.post("/api/cases", {"name": "x", "alerts": ["al-2"]}).status_code == 404, "an alert of another cell"
    a = wang.export(cameras=["lobby"], start=T0 + 2, end=T0 + 8, case=case)
    b = wang.export(cameras=["lobby", "gate"], start=T0 + 20, end=T0 + 28, case=case)
    assert b["warnings"], "gate has no recording: the export says so"
    (listed,) = wang.c.get("/api/cases").json()
    assert listed["name"] == case and sorted(listed["exports"]) == sorted([a["export_id"], b["export_id"]])
    assert listed["description"] == "fence climbed" and listed["alerts"] == ["al-2"]
    z = wang.c.get(listed["download"])
    assert z.status_code == 200
    out = env["tmp"] / "case.zip"
    out.write_bytes(z.content)
    report = verify(out)
    assert report.ok and {a["export_id"], b["export_id"]} <= set(report.exports), (report.problems, report.exports)
    single = wang.c.get(a["download"])  # one export of the case on its own, also verifiable
    (env["tmp"] / "one.zip").write_bytes(single.content)
    assert verify(env["tmp"] / "one.zip").ok
    assert li.c.get("/api/cases").json() == [] and li.c.get(listed["download"]).status_code == 404
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        assert any(n.endswith("/case.json") for n in zf.namelist())
    assert ("case_create", "wang") in [(x, u) for x, u, _ in audit_actions(env["engine"])]
    # a case linking an alert of G2 is not shown to G1, even without exports
    env["publish"](alert_msg("al-3", phase="end", t=T0 + 20, camera="square", start=T0 + 15))
    assert li.post("/api/cases", {"name": "Square fight", "alerts": ["al-3"]}).status_code == 200
    assert [c["name"] for c in li.c.get("/api/cases").json()] == ["Square fight"]
    assert [c["name"] for c in wang.c.get("/api/cases").json()] == [case]
    # a name li already has is wang's own new case: li's is neither reached nor told apart
    mine = wang.post("/api/cases", {"name": "Square fight", "description": "mine now"})
    assert mine.status_code == 200 and mine.json()["created_by"] == "wang" and mine.json()["alerts"] == []
    (theirs,) = li.c.get("/api/cases").json()
    assert theirs["description"] == "" and theirs["alerts"] == ["al-3"] and theirs["created_by"] == "li"
    assert sorted(c["name"] for c in wang.c.get("/api/cases").json()) == sorted([case, "Square fight"])


def _case_row(engine: Any, owner: str, name: str) -> Any:
    from history.schema import cases
    with engine.connect() as conn:
        return conn.execute(select(cases).where(cases.c.name == name, cases.c.created_by == owner)).one()


def _same_but(a: dict[str, Any], b: dict[str, Any], *differ: str) -> bool:
    """The same keys, and the same values but for ``differ`` (ids, names, times)."""
    return a.keys() == b.keys() and {k: v for k, v in a.items() if k not in differ} == \
        {k: v for k, v in b.items() if k not in differ}


def test_a_case_name_another_user_has_is_a_new_case_of_ones_own(env: dict[str, Any]) -> None:
    """A case is its owner and its name: li naming wang's C-1 gets a C-1 of her own, answered exactly as a new
    name is; wang's case (files, signature, row), list and download are as they were."""
    from pipeline.export.cases import owned_dir
    wang, li, boss = Op(env["app"], "wang"), Op(env["app"], "li"), Op(env["app"], "boss")
    cases_dir = env["data"] / "exports" / "cases"
    assert wang.post("/api/cases", {"name": "C-1", "description": "fence"}).status_code == 200
    a = wang.export(cameras=["lobby"], start=T0 + 2, end=T0 + 8, case="C-1")
    row_a = _case_row(env["engine"], "wang", "C-1")
    folder_a = cases_dir / owned_dir("wang", "C-1")
    assert row_a.folder == owned_dir("wang", "C-1") and (folder_a / "case.json").is_file()
    files_a = {n: (folder_a / n).read_bytes() for n in ("case.json", "case.sig", "case.txt")}

    # the two answers li gets, for wang's name and for a new one, differ only in the name and times
    taken = li.post("/api/cases", {"name": "C-1", "description": "mine"})
    fresh = li.post("/api/cases", {"name": "C-2", "description": "mine"})
    assert taken.status_code == fresh.status_code == 200, (taken.text, fresh.text)
    assert _same_but(taken.json(), fresh.json(), "name", "created_at", "updated_at"), (taken.json(), fresh.json())
    assert taken.json()["created_by"] == "li" and taken.json()["description"] == "mine"
    r1 = li.post("/api/exports", {"cameras": ["square"], "start": T0 + 2, "end": T0 + 8, "case": "C-1"})
    r2 = li.post("/api/exports", {"cameras": ["square"], "start": T0 + 2, "end": T0 + 8, "case": "C-2"})
    assert r1.status_code == r2.status_code == 202, (r1.text, r2.text)
    assert _same_but(r1.json(), r2.json(), "id", "case", "created_at"), (r1.json(), r2.json())
    # a brand-new name straight from an export is answered alike too
    r3 = li.post("/api/exports", {"cameras": ["square"], "start": T0 + 2, "end": T0 + 8, "case": "C-3"})
    assert r3.status_code == 202 and _same_but(r1.json(), r3.json(), "id", "case", "created_at")
    for r in (r1, r2, r3):
        url = f"/api/exports/{r.json()['id']}"
        wait_for(lambda url=url: li.c.get(url).json()["state"] in ("done", "failed"), 60, f"export {url}")
    b1 = li.c.get(f"/api/exports/{r1.json()['id']}").json()
    assert b1["state"] == "done" and b1["case"] == "C-1", b1

    # li's own C-1: its own folder and signed manifest, holding only her export
    folder_b = cases_dir / owned_dir("li", "C-1")
    assert folder_b != folder_a and (folder_b / "case.sig").is_file()
    doc_b = json.loads((folder_b / "case.json").read_text())
    assert doc_b["name"] == "C-1" and doc_b["updated_by"] == "Li Na (li)"
    assert [e["id"] for e in doc_b["exports"]] == [b1["export_id"]]
    # wang's case: the same bytes, signature and row
    assert {n: (folder_a / n).read_bytes() for n in files_a} == files_a
    assert _case_row(env["engine"], "wang", "C-1") == row_a
    assert not (cases_dir / "C-1").exists(), "neither case is in the folder of the bare name"

    # each one's list and download: their own only
    (mine,) = wang.c.get("/api/cases").json()
    assert mine["name"] == "C-1" and mine["created_by"] == "wang" and mine["exports"] == [a["export_id"]]
    z = wang.c.get(mine["download"])
    assert z.status_code == 200
    (env["tmp"] / "a.zip").write_bytes(z.content)
    report = verify(env["tmp"] / "a.zip")
    assert report.ok and set(report.exports) == {"C-1", a["export_id"]}, (report.problems, report.exports)
    hers = {c["name"]: c for c in li.c.get("/api/cases").json()}
    assert sorted(hers) == ["C-1", "C-2", "C-3"] and {c["created_by"] for c in hers.values()} == {"li"}
    assert hers["C-1"]["exports"] == [b1["export_id"]] and hers["C-1"]["download"] == mine["download"]
    z = li.c.get(hers["C-1"]["download"])
    assert z.status_code == 200
    (env["tmp"] / "b.zip").write_bytes(z.content)
    report = verify(env["tmp"] / "b.zip")
    assert report.ok and set(report.exports) == {"C-1", b1["export_id"]}, (report.problems, report.exports)
    # naming wang as the owner reaches nothing: the same 404 as an owner who does not exist
    other = li.c.get("/api/cases/C-1/download?owner=wang")
    unknown = li.c.get("/api/cases/C-1/download?owner=nobody")
    assert other.status_code == unknown.status_code == 404 and other.json() == unknown.json()
    # an admin sees both, each downloading its owner's case
    both = [c for c in boss.c.get("/api/cases").json() if c["name"] == "C-1"]
    assert sorted(c["created_by"] for c in both) == ["li", "wang"]
    for c in both:
        assert boss.c.get(c["download"]).status_code == 200
    with env["engine"].connect() as conn:
        from history.schema import cases
        assert conn.execute(select(cases.c.created_by).where(cases.c.name == "C-1")
                            .order_by(cases.c.created_by)).scalars().all() == ["li", "wang"]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_cases_made_before_owners_keep_their_row_and_folder(dialect: str, request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    """Migration 0006 (cases per owner): an existing case keeps its row, with no folder of its own (its files stay in
    <exports>/cases/<name>); afterwards another owner may have a case of the same name."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from history.db import MIGRATIONS, create, migrate
    from history.schema import cases
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    else:
        url = fresh_pg_database(request.getfixturevalue("postgres_url"), f"mig{time.monotonic_ns() % 10**9}")
    engine = create(url)
    acfg = AlembicConfig()
    acfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        acfg.attributes["connection"] = conn
        command.upgrade(acfg, "0005")
        conn.exec_driver_sql("INSERT INTO cases (name, description, alerts, created_at, created_by, updated_at) "
                             "VALUES ('C-1', 'fence', '[]', 1.0, 'wang', 2.0)")
    migrate(engine)
    with engine.begin() as conn:
        (old,) = conn.execute(select(cases)).all()
        assert (old.name, old.created_by, old.description, old.folder) == ("C-1", "wang", "fence", None)
        conn.execute(cases.insert().values(name="C-1", description="", alerts="[]", created_at=3.0,
                                           created_by="li", updated_at=3.0, folder="@x/C-1"))
        assert sorted(conn.execute(select(cases.c.created_by)).scalars()) == ["li", "wang"]
    engine.dispose()


def test_a_job_left_running_by_a_dead_dashboard_process_is_marked_failed(env: dict[str, Any]) -> None:
    import socket

    from history.schema import export_jobs
    with env["engine"].begin() as conn:
        conn.execute(export_jobs.insert().values(
            id="orphan", username="wang", cameras='["lobby"]', grid_cells='["G1"]', start=T0, end=T0 + 5,
            state="running", progress=0.4, created_at=time.time() - 60, runner=f"{socket.gethostname()}:999999999"))
        for jid, runner in (("far-alive", "otherhost:41"), ("far-dead", "otherhost:42")):  # behind a balancer
            conn.execute(export_jobs.insert().values(
                id=jid, username="wang", cameras='["lobby"]', grid_cells='["G1"]', start=T0, end=T0 + 5,
                state="running", progress=0.4, created_at=time.time() - 60, runner=runner))
    env["r"].set(env["keys"].prefix_key("exports:runner:otherhost:41"), "1", ex=60)  # that process still beats
    wang = Op(env["app"], "wang")
    assert wang.c.get("/api/exports/orphan").json()["state"] == "running"
    wang.export(cameras=["lobby"], start=T0 + 1, end=T0 + 4)  # the first export of this process looks around
    orphan = wang.c.get("/api/exports/orphan").json()
    assert orphan["state"] == "failed" and "stopped before it finished" in orphan["error"]
    assert wang.c.get("/api/exports/far-alive").json()["state"] == "running"
    assert wang.c.get("/api/exports/far-dead").json()["state"] == "failed"  # its host's beat is gone
    assert env["r"].ttl(env["keys"].prefix_key(f"exports:runner:{socket.gethostname()}:{os.getpid()}")) > 0


def test_an_export_that_fails_on_its_thread_says_why_and_the_dashboard_goes_on(env: dict[str, Any]) -> None:
    wang = Op(env["app"], "wang")
    (env["data"] / "exports").write_text("a file where the exports folder should be")
    r = wang.post("/api/exports", {"cameras": ["lobby"], "start": T0 + 1, "end": T0 + 4})
    assert r.status_code == 202
    url = f"/api/exports/{r.json()['id']}"
    wait_for(lambda: wang.c.get(url).json()["state"] == "failed", 30, lambda: str(wang.c.get(url).json()))
    job = wang.c.get(url).json()
    assert "exports" in job["error"] and job["download"] is None and job["files"] == []
    assert wang.c.get(url + "/download").status_code == 404
    assert ("export_failed", "wang") in [(a, u) for a, u, _ in audit_actions(env["engine"])]
    (env["data"] / "exports").unlink()
    assert wang.export(cameras=["lobby"], start=T0 + 1, end=T0 + 4)["state"] == "done"


def test_command_line_exports_cases_and_releases_show_in_the_page_once(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import main
    from dashboard import exports_import
    from history.schema import export_jobs
    from pipeline.export.job import os_user

    wang, li, boss = Op(env["app"], "wang"), Op(env["app"], "li"), Op(env["app"], "boss")
    page_job = wang.export(cameras=["lobby"], start=T0 + 1, end=T0 + 4)
    conf = str(env["cfg"].path)

    def cli(*argv: str) -> dict[str, Any]:
        assert main(["export", "-c", conf, *argv]) == 0
        return json.loads(capsys.readouterr().out) if "--json" in argv else {}
    a = cli("--camera", "lobby", "--start", str(T0 + 2), "--end", str(T0 + 12), "--case", "CLI case",
            "--description", "from the console", "--json")
    b = cli("--camera", "square", "--start", str(T0 + 2), "--end", str(T0 + 8), "--zip", "--json")
    me = exports_import.cli_user(os_user())

    def ids(op: Op) -> dict[str, dict[str, Any]]:
        return {j["export_id"]: j for j in op.c.get("/api/exports").json()["exports"]}
    mine = ids(wang)  # a CLI export changes holds.json: the next read imports it, 30 s throttle or not
    assert set(mine) == {page_job["export_id"], a["id"]}, "square (G2) is not wang's to see"
    job = mine[a["id"]]
    assert job["user"] == me and job["state"] == "done" and job["case"] == "CLI case" and job["cameras"] == ["lobby"]
    assert job["start"] == pytest.approx(T0 + 2) and job["id"] == f"cli-{a['id']}" and not job["can_release"]
    assert {f["name"] for f in job["files"]} == {"lobby.mp4", "manifest.txt", "manifest.json", "manifest.sig"}
    z = wang.c.get(job["download"])
    (env["tmp"] / "cli.zip").write_bytes(z.content)
    assert z.status_code == 200 and verify(env["tmp"] / "cli.zip").ok
    assert mine[page_job["export_id"]]["user"] == "wang", "the page's own row is left as it was"
    assert set(ids(li)) == {b["id"]} and ids(li)[b["id"]]["download"]
    assert set(ids(boss)) == {page_job["export_id"], a["id"], b["id"]}
    assert li.c.get(job["download"]).status_code == 404
    (case,) = wang.c.get("/api/cases").json()
    assert case["name"] == "CLI case" and case["created_by"] == me and case["description"] == "from the console"
    assert case["exports"] == [a["id"]] and li.c.get("/api/cases").json() == []
    log = audit_actions(env["engine"])
    cli_rows = [(act, u, d or {}) for act, u, d in log if act in ("export_cli", "case_cli")]
    assert sorted((act, u, d.get("export_id")) for act, u, d in cli_rows) == sorted(
        [("export_cli", me, a["id"]), ("export_cli", me, b["id"]), ("case_cli", me, None)])
    assert all(d["os_user"] == os_user() for _, _, d in cli_rows)

    # `sharpeye export release` of the CLI export and of the page's: both rows say released
    cli("release", a["id"], page_job["export_id"])
    mine = ids(wang)
    assert mine[a["id"]]["state"] == mine[page_job["export_id"]]["state"] == "released"
    assert mine[a["id"]]["released_by"] == "cli" and ids(li)[b["id"]]["state"] == "done"
    released = [str((d or {}).get("export_id"))
                for act, _, d in audit_actions(env["engine"]) if act == "export_release_cli"]
    assert sorted(released) == sorted([a["id"], page_job["export_id"]])

    # every later read scans again (no throttle) and adds nothing
    monkeypatch.setattr(exports_import, "SCAN_EVERY_S", 0.0)
    with env["engine"].connect() as conn:
        before = conn.execute(select(export_jobs.c.id, export_jobs.c.state)).all()
    n_log = len(audit_actions(env["engine"]))
    for op in (wang, li, boss, wang):
        op.c.get("/api/exports")
        op.c.get("/api/cases")
    with env["engine"].connect() as conn:
        assert sorted(conn.execute(select(export_jobs.c.id, export_jobs.c.state)).all()) == sorted(before)
    assert len(audit_actions(env["engine"])) == n_log and len(before) == 3
