"""The zone and line editor: saves into streams.yaml keeping its comments and every other camera's bytes,
refuses what `sharpeye check` refuses (FILE:LINE, file untouched), engineers only, CSRF, audit; a running
worker applies the saved zone; and an engineer drags a corner in headless Chromium.

Real files, a real Redis, SQLite for the history database, a real worker on a generated clip.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cli.args import validate_config
from dashboard.app import create_app
from dashboard.users import add_user
from history import open_database
from history.schema import actions
from pipeline.config import load_config
from tests.support.config import line_of

PW = "correct horse battery"

HEAD = """\
# Zone editor test config: every comment here must survive an edit.
data_dir: data
timezone: Asia/Shanghai
{extra}
grid_cells:
  G1:
    name: Xinhua Street   # the first cell
    officer: {{name: Wang Wei, phone: "13800000001"}}
  G2:
    name: Station Square
    officer: {{name: Li Na, phone: "13800000002"}}

cameras:
  # the lobby, watched day and night
"""
LOBBY = """\
  lobby:
    name: Lobby camera
    source: {source}     # sub-stream
    grid_cell: G1
    zones:
      floor:              # the floor of the room
        polygon: [[0.1, 0.5], [0.9, 0.5], [0.9, 0.95], [0.1, 0.95]]
    lines:
      door: {{a: [0.2, 0.3], b: [0.8, 0.3], direction: left_to_right}}   # the door sill

    # rules of the lobby
    rules:
      intruder:
        kind: intrusion
        zone: floor
        severity: high
"""
REST = """\
  gate:
    name:   School gate      # odd spacing: ruamel would write "name: School gate"
    source: rtsp://127.0.0.1:9/gate
    grid_cell: G1
    zones:
      path:
        polygon:
          - [0.0, 0.0]
          - [0.5, 0.0]
          - [0.5, 0.5]
    alert_labels:
        - person          # deeper than ruamel indents
  # the square belongs to the other cell
  square:
    name: Station square
    source: rtsp://127.0.0.1:9/square
    grid_cell: G2
"""


def config_text(extra: str = "", source: str = "rtsp://127.0.0.1:9/lobby") -> str:
    return HEAD.format(extra=extra) + LOBBY.format(source=source) + REST


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"zones{time.monotonic_ns()}"
    path = tmp_path / "streams.yaml"
    path.write_text(config_text(f"bus: {{prefix: {prefix}}}"))
    cfg = load_config(path)
    engine = open_database(cfg)
    add_user(engine, "eng", PW, "engineer", ["G1"], "Zhang Gong")
    add_user(engine, "eng2", PW, "engineer", ["G2"])
    add_user(engine, "op", PW, "operator", ["G1"])
    add_user(engine, "boss", PW, "admin", ["*"])
    app = create_app(cfg, redis_url, engine)
    yield {"path": path, "engine": engine, "app": app, "prefix": prefix}
    engine.dispose()


def login(env: dict[str, Any], name: str) -> tuple[TestClient, str]:
    c = TestClient(env["app"], base_url="http://testserver", follow_redirects=False)
    r = c.post("/api/login", json={"username": name, "password": PW})
    assert r.status_code == 200, r.text
    return c, r.json()["csrf"]


def engineer_geometry(env: dict[str, Any], camera: str) -> tuple[TestClient, str, dict[str, Any]]:
    """The engineer's client and CSRF token, and the camera's geometry as the page loads it."""
    c, csrf = login(env, "eng")
    return c, csrf, c.get(f"/api/zones/{camera}").json()


def body(geo: dict[str, Any]) -> dict[str, Any]:
    """What the page sends: the loaded geometry (names kept as `was`), possibly changed."""
    return {"version": geo["version"],
            "zones": [{"name": z["name"], "was": z.get("was", z["name"]), "polygon": z["polygon"]}
                      for z in geo["zones"]],
            "lines": [{"name": ln["name"], "was": ln.get("was", ln["name"]), "a": ln["a"], "b": ln["b"],
                       "direction": ln["direction"]} for ln in geo["lines"]],
            "masks": geo["masks"], "motion_masks": geo["motion_masks"]}


def audit_rows(env: dict[str, Any], action: str) -> list[Any]:
    with env["engine"].connect() as conn:
        return conn.execute(select(actions).where(actions.c.action == action).order_by(actions.c.id)).all()


def block(text: str, start: str, end: str | None) -> str:
    a = text.index(start)
    return text[a:text.index(end, a)] if end else text[a:]


# ------------------------------------------------------------------------------------------ the API

def test_save_keeps_comments_and_other_cameras_byte_identical(env: dict[str, Any]) -> None:
    path: Path = env["path"]
    original = path.read_bytes()
    c, csrf, geo = engineer_geometry(env, "lobby")
    assert [z["name"] for z in geo["zones"]] == ["floor"] and geo["lines"][0]["direction"] == "left_to_right"
    assert geo["rules"] == [{"id": "intruder", "kind": "intrusion", "zone": "floor", "line": None, "labels": None}]
    geo["zones"][0]["polygon"][1] = [0.85, 0.45]
    geo["zones"].append({"name": "bench", "was": None, "polygon": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]})
    geo["lines"][0]["direction"] = "both"
    geo["masks"] = [[[0.6, 0.05], [0.7, 0.05], [0.7, 0.15]]]
    r = c.post("/api/zones/lobby", json=body(geo), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] is True
    text = path.read_text()
    before = original.decode()
    # everything outside the lobby is byte-identical, the odd spacing of the gate included
    assert text.startswith(before[:before.index("  lobby:")])
    assert text.endswith(before[before.index("  gate:"):])
    lobby = block(text, "  lobby:", "  gate:")
    for comment in ("# sub-stream", "# the floor of the room", "# the door sill", "# rules of the lobby"):
        assert comment in lobby, lobby
    assert "polygon: [[0.1, 0.5], [0.85, 0.45], [0.9, 0.95], [0.1, 0.95]]" in lobby
    assert "bench:\n        polygon: [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]" in lobby
    assert re.search(r"door: \{a: \[0.2, 0.3\], b: \[0.8, 0.3\], direction: both\} +# the door sill\n", lobby)
    # a new key goes before the comment above `rules:` (the comment is about the rules)
    assert re.search(r"\n    masks:\n +- \[\[0.6, 0.05\], \[0.7, 0.05\], \[0.7, 0.15\]\]\n\n    # rules of the lobby\n"
                     r"    rules:", lobby), lobby
    cfg = validate_config(str(path))  # what `sharpeye check` runs
    assert set(cfg.cameras["lobby"].zones) == {"floor", "bench"} and cfg.cameras["lobby"].masks
    assert (path.parent / "streams.yaml.bak").read_bytes() == original
    assert r.json()["version"] == c.get("/api/zones/lobby").json()["version"] != geo["version"]
    # the audit log has who, which camera, the geometry before and after, and the diff
    (row,) = audit_rows(env, "edit_zones")
    data = json.loads(row.data)
    assert row.username == "eng" and row.grid_cell_id == "G1" and data["camera"] == "lobby"
    assert data["before"]["zones"][0]["polygon"][1] == [0.9, 0.5] and data["after"]["zones"][0]["polygon"][1] == [
        0.85, 0.45]
    assert "+        polygon: [[0.1, 0.5], [0.85, 0.45]" in data["diff"]
    # the same again changes nothing and writes nothing
    mtime = path.stat().st_mtime_ns
    geo2 = c.get("/api/zones/lobby").json()
    r = c.post("/api/zones/lobby", json=body(geo2), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["changed"] is False and path.stat().st_mtime_ns == mtime
    assert len(audit_rows(env, "edit_zones")) == 1


def test_a_block_style_polygon_and_renames_keep_the_rest_of_the_file(env: dict[str, Any]) -> None:
    path: Path = env["path"]
    before = path.read_text()
    c, csrf, geo = engineer_geometry(env, "gate")
    geo["zones"][0]["polygon"][2] = [0.6, 0.55]
    geo["zones"][0].update(name="walkway", was="path")  # renamed: stays where it was, with its comments
    r = c.post("/api/zones/gate", json=body(geo), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    text = path.read_text()
    assert text.startswith(before[:before.index("    zones:\n      path:")])
    assert text.endswith(before[before.index("    alert_labels:\n        - person"):])
    assert "      walkway:\n" in text and "[0.6, 0.55]" in text and "path:" not in block(text, "  gate:", "  square:")
    assert "    name:   School gate      # odd spacing" in text
    validate_config(str(path))
    # a deleted line and a new one on the lobby: its comment lines stay in place
    geo = c.get("/api/zones/lobby").json()
    geo["lines"] = [{"name": "fence", "was": None, "a": [0.0, 0.2], "b": [1.0, 0.2], "direction": "right_to_left"}]
    r = c.post("/api/zones/lobby", json=body(geo), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    lobby = block(path.read_text(), "  lobby:", "  gate:")
    assert "door" not in lobby and "fence:" in lobby and "direction: right_to_left" in lobby
    assert "\n\n    # rules of the lobby\n    rules:" in lobby
    assert load_config(path).cameras["lobby"].lines["fence"].direction == "right_to_left"


def test_an_invalid_polygon_is_refused_with_file_line_and_the_file_is_untouched(env: dict[str, Any]) -> None:
    path: Path = env["path"]
    original, mtime = path.read_bytes(), path.stat().st_mtime_ns
    c, csrf, geo = engineer_geometry(env, "lobby")
    poly_line = line_of(path, "polygon: [[0.1, 0.5]")
    cases = [
        ([[0.1, 0.5], [0.9, 0.95], [0.9, 0.5], [0.1, 0.95]], "polygon edges cross each other"),  # a bow tie
        ([[0.1, 0.5], [0.9, 0.5]], "at least 3 points"),
        ([[0.1, 0.5], [1.5, 0.5], [0.9, 0.95]], "less than or equal to 1"),
    ]
    for poly, words in cases:
        geo["zones"][0]["polygon"] = poly
        r = c.post("/api/zones/lobby", json=body(geo), headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail["code"] == "config_invalid"
        assert any(p.startswith(f"{path}:{poly_line}: cameras.lobby.zones.floor.polygon") and words in p
                   for p in detail["problems"]), detail["problems"]
        assert detail["excerpt"][str(poly_line)].strip().startswith("polygon: ")
    # a zone a rule still uses cannot go: the rule's line is named
    geo["zones"] = []
    r = c.post("/api/zones/lobby", json=body(geo), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422
    problems = r.json()["detail"]["problems"]
    assert any("cameras.lobby.rules.intruder" in p and "floor" in p and p.startswith(f"{path}:") for p in problems)
    assert path.read_bytes() == original and path.stat().st_mtime_ns == mtime
    assert not (path.parent / "streams.yaml.bak").exists()
    assert not list(path.parent.glob(".streams.yaml.*")), "a temporary file was left behind"
    assert audit_rows(env, "edit_zones") == []
    # two zones of one name are refused before the file is even read
    geo = c.get("/api/zones/lobby").json()
    geo["zones"].append(dict(geo["zones"][0], was=None))
    r = c.post("/api/zones/lobby", json=body(geo), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 400 and r.json()["detail"]["code"] == "duplicate_name"


def test_operators_are_refused_and_engineers_see_their_cells_only(env: dict[str, Any]) -> None:
    path: Path = env["path"]
    original = path.read_bytes()
    op, op_csrf = login(env, "op")
    geo = login(env, "eng")[0].get("/api/zones/lobby").json()
    assert op.get("/zones").status_code == 403
    for url in ("/api/zones", "/api/zones/lobby", "/api/zones/lobby/frame"):
        r = op.get(url)
        assert r.status_code == 403 and r.json()["detail"]["code"] == "forbidden_role", url
    r = op.post("/api/zones/lobby", json=body(geo), headers={"X-CSRF-Token": op_csrf})
    assert r.status_code == 403
    eng2, eng2_csrf = login(env, "eng2")  # an engineer of G2
    assert eng2.get("/zones").status_code == 200
    assert [cam["id"] for cam in eng2.get("/api/zones").json()["cameras"]] == ["square"]
    assert eng2.get("/api/zones/lobby").status_code == 404
    assert eng2.post("/api/zones/lobby", json=body(geo), headers={"X-CSRF-Token": eng2_csrf}).status_code == 404
    boss, _ = login(env, "boss")
    assert [cam["id"] for cam in boss.get("/api/zones").json()["cameras"]] == ["lobby", "gate", "square"]
    assert path.read_bytes() == original


def test_a_save_needs_the_csrf_token_and_the_version_it_was_loaded_from(env: dict[str, Any]) -> None:
    path: Path = env["path"]
    original = path.read_bytes()
    c, csrf, geo = engineer_geometry(env, "lobby")
    geo["zones"][0]["polygon"][0] = [0.2, 0.5]
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
        r = c.post("/api/zones/lobby", json=body(geo), headers=headers)
        assert r.status_code == 403 and r.json()["detail"]["code"] == "csrf"
    assert path.read_bytes() == original
    path.write_text(original.decode() + "# edited on the server meanwhile\n")
    r = c.post("/api/zones/lobby", json=body(geo), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and r.json()["detail"]["code"] == "config_changed"
    assert path.read_bytes() == original + b"# edited on the server meanwhile\n"


def test_the_picture_is_the_newest_snapshot_without_a_worker(env: dict[str, Any]) -> None:
    c, _ = login(env, "eng")
    assert c.get("/api/zones/lobby/frame").json() == {"source": "none", "image": None, "time": None}
    snaps = env["path"].parent / "data" / "snapshots" / "lobby"
    (snaps / "2024-01-01").mkdir(parents=True)
    (snaps / "2024-01-02").mkdir()
    (snaps / "2024-01-01" / "old.jpg").write_bytes(b"\xff\xd8old")
    (snaps / "2024-01-02" / "new.jpg").write_bytes(b"\xff\xd8new")
    f = c.get("/api/zones/lobby/frame").json()
    assert f["source"] == "snapshot" and f["image"] == "data:image/jpeg;base64,/9huZXc="
    assert audit_rows(env, "view_snapshot")[-1].username == "eng"


# ------------------------------------------------------------------------------------------ the splice, generated edits

def _polygon(draw: Any) -> list[list[float]]:
    """A convex polygon (never self-intersecting) inside the picture, 4-decimal coordinates."""
    import math

    from hypothesis import strategies as st

    cx, cy = draw(st.floats(0.15, 0.85)), draw(st.floats(0.15, 0.85))
    n = draw(st.integers(3, 7))
    return [[round(cx + 0.1 * math.cos(2 * math.pi * k / n), 4), round(cy + 0.1 * math.sin(2 * math.pi * k / n), 4)]
            for k in range(n)]


def test_generated_edits_land_exactly_and_leave_every_other_line_alone() -> None:
    """Random edits of every camera of the test config and the demo config (CRLF too): the file reads back as the
    edit asked, other cameras and sections read back unchanged, and the lines outside the camera keep their bytes."""
    import yaml
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dashboard.routes.zones import GeometryIn
    from pipeline.config.edit import edit_camera, geometry

    root = Path(__file__).resolve().parents[2]
    texts = [config_text("bus: {prefix: x}"), config_text().replace("\n", "\r\n"), (root / "streams.yaml").read_text()]

    @st.composite
    def case(draw: Any) -> tuple[str, str, dict[str, Any]]:
        text = draw(st.sampled_from(texts))
        data = yaml.safe_load(text)
        cid = draw(st.sampled_from(sorted(data["cameras"])))
        g = geometry(data["cameras"][cid])
        zones = [dict(z, was=z["name"]) for z in g["zones"]]
        lines = [dict(ln, was=ln["name"]) for ln in g["lines"]]
        masks, motion = g["masks"], g["motion_masks"]
        for op in draw(st.lists(st.sampled_from(["move", "add_zone", "drop_zone", "rename", "add_line", "drop_line",
                                                 "mask", "motion", "drop_mask"]), min_size=1, max_size=4)):
            if op == "move" and zones:
                z = draw(st.sampled_from(zones))
                z["polygon"] = _polygon(draw)
            elif op == "add_zone":
                zones.append({"name": f"z{len(zones)}x", "was": None, "polygon": _polygon(draw)})
            elif op == "drop_zone" and zones:
                zones.pop(draw(st.integers(0, len(zones) - 1)))
            elif op == "rename" and zones:
                zones[0]["name"] = zones[0]["name"] + "_2"
            elif op == "add_line":
                a, b = _polygon(draw)[:2]
                lines.append({"name": f"l{len(lines)}x", "was": None, "a": a, "b": b,
                              "direction": draw(st.sampled_from(["both", "left_to_right", "right_to_left"]))})
            elif op == "drop_line" and lines:
                lines.pop()
            elif op == "mask":
                masks = masks + [_polygon(draw)]
            elif op == "motion":
                motion = motion + [_polygon(draw)]
            elif op == "drop_mask" and masks:
                masks = masks[1:]
        return text, cid, {"version": "0" * 64, "zones": zones, "lines": lines, "masks": masks, "motion_masks": motion}

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(case())
    def check(c: tuple[str, str, dict[str, Any]]) -> None:
        text, cid, geo = c
        out = edit_camera(text, cid, GeometryIn.model_validate(geo))
        before, after = yaml.safe_load(text), yaml.safe_load(out)
        got = geometry(after["cameras"][cid])
        assert [(z["name"], z["polygon"]) for z in got["zones"]] == [(z["name"], z["polygon"]) for z in geo["zones"]]
        assert [(ln["name"], ln["a"], ln["b"], ln["direction"]) for ln in got["lines"]] == [
            (ln["name"], ln["a"], ln["b"], ln["direction"]) for ln in geo["lines"]]
        assert got["masks"] == geo["masks"] and got["motion_masks"] == geo["motion_masks"]
        assert {k: v for k, v in after.items() if k != "cameras"} == {k: v for k, v in before.items() if k != "cameras"}
        for other in before["cameras"]:
            if other != cid:
                assert after["cameras"][other] == before["cameras"][other]
        old, new = text.splitlines(True), out.splitlines(True)
        ends = [i for i, ln in enumerate(old) if re.match(r"  [\w-]+:", ln)] + [len(old)]
        start = next(i for i, ln in enumerate(old) if ln.rstrip() == f"  {cid}:")
        stop = ends[ends.index(start) + 1]
        tail = len(old) - stop
        assert new[:start] == old[:start] and new[len(new) - tail:] == old[stop:]
        assert out.count("\r\n") == out.count("\n") or "\r\n" not in text

    check()


def test_zones_shared_through_a_yaml_anchor_are_not_edited() -> None:
    """An alias shares one object: moving a corner for one camera would move it for the other as well."""
    from dashboard.routes.zones import GeometryIn
    from pipeline.config.edit import edit_camera

    gate_zones = "    zones:\n      path:\n        polygon:\n" + "".join(
        f"          - {p}\n" for p in ("[0.0, 0.0]", "[0.5, 0.0]", "[0.5, 0.5]"))
    text = config_text().replace("    zones:\n      floor:", "    zones: &shared\n      floor:", 1).replace(
        gate_zones, "    zones: *shared\n", 1)
    assert "*shared" in text
    geo = GeometryIn(version="0" * 64, zones=[{"name": "floor", "polygon": [[0.1, 0.5], [0.9, 0.5], [0.5, 0.9]]}])
    with pytest.raises(ValueError, match="anchor"):
        edit_camera(text, "gate", geo)
