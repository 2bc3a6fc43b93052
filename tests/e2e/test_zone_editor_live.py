"""The zone editor with a running worker and in Chromium: a saved zone reaches the worker within seconds
through its config reload; an engineer drags a polygon corner in the page and streams.yaml changes
(the editor's file edits and scopes are tested in tests/integration/test_zone_editor.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cli.args import validate_config
from dashboard.app import create_app
from dashboard.users import add_user
from history import open_database
from pipeline.config import load_config
from pipeline.publish import bus
from tests.integration.test_zone_editor import PW, body, config_text, login
from tests.support.waits import wait_for

pytestmark = pytest.mark.e2e


# ------------------------------------------------------------------------------------------ a running worker

def test_a_running_worker_applies_the_saved_zone_within_seconds(tmp_path: Path, redis_url: str) -> None:
    from pipeline.runtime.worker import Worker
    from tests.support.media import make_clip

    clip = make_clip(tmp_path / "lobby.mp4", seconds=6)
    prefix = f"zonesw{time.monotonic_ns()}"
    path = tmp_path / "streams.yaml"
    path.write_text(config_text(f"bus: {{prefix: {prefix}}}\nrecordings: {{enabled: false}}", source=str(clip))
                    .replace("  gate:", "  gate:\n    enabled: false", 1)
                    .replace("  square:", "  square:\n    enabled: false", 1))
    cfg = load_config(path)
    engine = open_database(cfg)
    add_user(engine, "eng", PW, "engineer", ["G1"])
    worker = Worker(cfg, redis_url)
    worker.start(watch_config=True)
    try:
        wait_for(lambda: worker.cameras["lobby"].source.state.name == "STREAMING", 20, "the lobby streaming")
        app = create_app(cfg, redis_url, engine)
        env = {"app": app}
        c, csrf = login(env, "eng")
        # the picture comes through the worker's live seam (the camera is not opened a second time)
        frame = wait_for_frame(c)
        assert frame["source"] == "live" and frame["image"].startswith("data:image/jpeg;base64,/9j/")
        geo = c.get("/api/zones/lobby").json()
        geo["zones"].append({"name": "doorway", "was": None, "polygon": [[0.4, 0.1], [0.6, 0.1], [0.6, 0.4]]})
        old_rt = worker.cameras["lobby"]
        r = c.post("/api/zones/lobby", json=body(geo), headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        t0 = time.monotonic()
        took = wait_for(lambda: "doorway" in worker.cfg.cameras["lobby"].zones
                        and "doorway" in worker.cameras["lobby"].analytics.cam.zones, 10,
                        "the worker to reload the config with the new zone")
        assert worker.cameras["lobby"] is not old_rt  # the camera restarted with its new zones
        r_bus = bus.connect(redis_url)
        state = json.loads(r_bus.hget(bus.BusKeys(prefix).prefix_key("config"), "shard0"))
        assert state["problems"] == [] and state["time"] >= time.time() - (time.monotonic() - t0) - 1
        print(f"\nzone saved -> worker reloaded it in {took:.2f} s (config poll every 2 s)")
    finally:
        worker.stop()
        engine.dispose()


def wait_for_frame(c: TestClient) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def live() -> bool:
        out.update(c.get("/api/zones/lobby/frame").json())
        return out["source"] == "live"
    wait_for(live, 20, lambda: f"a live picture, got {out.get('source')}", interval=0.5)
    return out


# ------------------------------------------------------------------------------------------ the page

def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Press the mouse at ``start`` (page pixels), move to ``end`` in 5 steps, release."""
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=5)
    page.mouse.up()


def test_an_engineer_drags_a_corner_in_the_browser_and_the_file_changes(tmp_path: Path, redis_url: str) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, artefacts
    from tests.support.dashboard import browser_login, dashboard_process

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium not installed at {CHROMIUM} (scripts/setup installs it)")
    path = tmp_path / "streams.yaml"
    path.write_text(config_text(f"bus: {{prefix: zonesb{time.monotonic_ns()}}}"))
    original = path.read_text()
    engine = open_database(load_config(path))
    add_user(engine, "eng", PW, "engineer", ["G1"], locale="en")
    engine.dispose()
    with dashboard_process(path, redis_url, tmp_path) as dash:
        base = dash.base
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser_login(browser, base, "eng", "/zones#camera=lobby", password=PW)
            page.goto(base + "/zones#camera=lobby")
            page.locator('#z-canvas[data-ready="true"][data-picture]').wait_for(timeout=10_000)
            assert page.locator("#z-list li").count() == 2  # the floor and the door
            box = page.locator("#z-canvas").bounding_box()
            assert box is not None

            def at(x: float, y: float) -> tuple[float, float]:
                return box["x"] + x * box["width"], box["y"] + y * box["height"]

            # deleting the zone the intrusion rule uses: the page warns, the server refuses with FILE:LINE
            page.click('#z-list li[data-kind="zone"] button.delete')
            assert "intruder" in page.locator("#z-warnings").inner_text()
            page.click("#z-save")
            page.locator('#z-status[data-state="invalid"]').wait_for(timeout=10_000)
            problems = page.locator("#z-problems li").all_inner_texts()
            assert any(p.startswith(f"{path}:") and "cameras.lobby.rules.intruder" in p for p in problems), problems
            page.screenshot(path=str(artefacts() / "zones-refused.png"))
            assert path.read_text() == original
            page.click("#z-revert")
            page.locator('#z-canvas[data-ready="true"]').wait_for(timeout=10_000)
            assert page.locator('#z-list li[data-kind="zone"]').count() == 1

            # a corner dragged: select the floor, then drag its corner (0.9, 0.5) to about (0.8, 0.4)
            page.mouse.click(*at(0.5, 0.7))
            drag(page, at(0.9, 0.5), at(0.8, 0.4))  # in 5 steps of (-0.02, -0.02)
            page.locator('#z-status[data-state="dirty"]').wait_for(timeout=5000)
            moved = page.evaluate("() => window.__zones.shapes[0].points[1]")
            assert abs(moved[0] - 0.8) < 0.01 and abs(moved[1] - 0.4) < 0.01, moved
            # a bow tie (its corner dragged across the opposite edge) cannot even be sent
            drag(page, at(0.1, 0.95), at(0.95, 0.45))
            assert page.locator('#z-list li[data-kind="zone"] .err').count() == 1 and page.is_disabled("#z-save")
            page.click("#z-revert")
            page.locator('#z-canvas[data-ready="true"]').wait_for(timeout=10_000)
            assert page.locator('#z-status[data-state="idle"]').count() == 1
            page.mouse.click(*at(0.5, 0.7))
            drag(page, at(0.9, 0.5), at(moved[0], moved[1]))
            moved = page.evaluate("() => window.__zones.shapes[0].points[1]")
            # a new zone: its corners clicked, Enter to finish, then named
            page.click("#z-add-zone")
            for x, y in ((0.05, 0.05), (0.15, 0.05), (0.15, 0.2)):
                page.mouse.click(*at(x, y))
            page.keyboard.press("Enter")
            page.locator('#z-list li[data-kind="zone"] input.name').nth(1).fill("bench")
            bench = page.evaluate("() => window.__zones.shapes.find(s => s.name === 'bench').points")
            assert len(bench) == 3 and abs(bench[2][1] - 0.2) < 0.01, bench
            page.screenshot(path=str(artefacts() / "zones-editor.png"))
            page.click("#z-save")
            page.locator('#z-status[data-state="saved"]').wait_for(timeout=10_000)
            browser.close()
        text = path.read_text()
        corner = f"[{moved[0]:g}, {moved[1]:g}]"
        assert f"polygon: [[0.1, 0.5], {corner}, [0.9, 0.95], [0.1, 0.95]]" in text, text
        new_zone = "      bench:\n        polygon: [" + ", ".join(f"[{x:g}, {y:g}]" for x, y in bench) + "]\n"
        assert new_zone in text, text
        # nothing else changed, comments included
        assert text.replace(corner, "[0.9, 0.5]", 1).replace(new_zone, "", 1) == original
        validate_config(str(path))
